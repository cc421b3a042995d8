//! Helpers shared by the integration tests: trees with a kernel, commits,
//! sysroots made by treeboot or by Debian's `ostree admin`, snapshots of
//! whole sysroots for comparison.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn treeboot_bin() -> &'static str {
    env!("CARGO_BIN_EXE_treeboot")
}

/// A temporary directory that is removed even when it holds immutable
/// deployment roots.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let base = std::env::var("TREEBOOT_TEST_TMP").unwrap_or_else(|_| "/var/tmp".into());
        let path = tempfile::Builder::new()
            .prefix(&format!("treeboot-{tag}-"))
            .tempdir_in(base)
            .unwrap()
            .keep();
        Scratch { path }
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-R").arg("-i").arg(&self.path).output();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn show(cmd: &Command, out: &Output) -> String {
    format!(
        "{:?} exited {}\nstdout:\n{}\nstderr:\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run and require success; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{}", show(cmd, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run and require failure; returns stderr.
pub fn run_fail(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(!out.status.success(), "expected failure: {}", show(cmd, &out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn tb(sysroot: &Path) -> Command {
    let mut c = Command::new(treeboot_bin());
    c.arg("--sysroot").arg(sysroot);
    c
}

pub fn ostree_admin(sysroot: &Path) -> Command {
    let mut c = Command::new("ostree");
    c.arg("admin").arg(format!("--sysroot={}", sysroot.display()));
    c
}

/// An ostree the differential tests compare treeboot with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// Debian bookworm's ostree 2022.7, on the host. It writes the entry
    /// names of before 2024.5, so treeboot is run with
    /// `OSTREE_SYSROOT_OPTS=bootloader-naming-1` beside it.
    Bookworm,
    /// Debian trixie's ostree 2025.2, in a trixie root that
    /// `hack/ostree-reference` builds once and caches outside the clone,
    /// run by `hack/ostree-reference-run`; treeboot with its defaults.
    Trixie,
}

pub const REFERENCES: [Reference; 2] = [Reference::Bookworm, Reference::Trixie];

fn hack(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("hack").join(script)
}

/// The trixie root, built on first use (once for all tests: the script
/// holds a lock while it builds).
fn trixie_root() -> &'static Path {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| PathBuf::from(run(Command::new(hack("ostree-reference")).arg("trixie")).trim()))
}

/// A `mkcomposefs` for `TREEBOOT_MKCOMPOSEFS`: trixie's (libcomposefs
/// 1.0.8), run in the trixie root (bookworm has no composefs package). It
/// reads the dump on stdin and writes the image on stdout, so the chroot
/// needs nothing mounted.
pub fn mkcomposefs(s: &Scratch) -> PathBuf {
    let p = s.join("mkcomposefs");
    write(&p, &format!("#!/bin/sh\nexec chroot {} mkcomposefs \"$@\"\n", trixie_root().display()));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

impl Reference {
    pub fn name(self) -> &'static str {
        match self {
            Reference::Bookworm => "ostree 2022.7 (bookworm)",
            Reference::Trixie => "ostree 2025.2 (trixie)",
        }
    }

    /// `ostree admin` of this reference on `sysroot`.
    pub fn admin(self, sysroot: &Path) -> Command {
        match self {
            Reference::Bookworm => ostree_admin(sysroot),
            Reference::Trixie => {
                let mut c = Command::new(hack("ostree-reference-run"));
                c.arg(trixie_root()).arg(sysroot).args(["ostree", "admin", "--sysroot=/mnt/sysroot"]);
                c
            }
        }
    }

    /// treeboot on `sysroot`, asked for the names this reference writes.
    pub fn treeboot(self, sysroot: &Path) -> Command {
        let mut c = tb(sysroot);
        if self == Reference::Bookworm {
            c.env("OSTREE_SYSROOT_OPTS", "bootloader-naming-1");
        }
        c
    }

    /// The `$csum.$serial` names in this reference's `ostree admin status` order.
    pub fn status_names(self, sysroot: &Path) -> Vec<String> {
        status_names_of(&run(self.admin(sysroot).arg("status")))
    }
}

pub fn write(p: &Path, content: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A small OS tree: a kernel and initramfs, os-release, /usr/etc defaults.
pub fn make_tree(dir: &Path, kernel: &str, variant: &str) {
    write(&dir.join("usr/lib/modules/6.1.0-test/vmlinuz"), &format!("kernel {kernel}\n"));
    write(&dir.join("usr/lib/modules/6.1.0-test/initramfs.img"), &format!("initramfs {kernel}\n"));
    write(
        &dir.join("usr/lib/os-release"),
        "NAME=\"Test OS\"\nID=testos\nPRETTY_NAME=\"Test OS 1\"\n",
    );
    write(&dir.join("usr/bin/hello"), &format!("hello {variant}\n"));
    write(&dir.join("usr/etc/motd"), &format!("welcome to {variant}\n"));
    write(&dir.join("usr/etc/hostname"), "testos\n");
    write(&dir.join("usr/etc/removeme"), "the admin removes this\n");
    write(&dir.join("usr/etc/ssh/sshd_config"), &format!("# {variant}\nPermitRootLogin no\n"));
    write(&dir.join("usr/etc/default-only/file"), "untouched\n");
    let _ = std::fs::remove_file(dir.join("usr/etc/localtime"));
    std::os::unix::fs::symlink("../usr/share/zoneinfo/UTC", dir.join("usr/etc/localtime")).unwrap();
    std::fs::create_dir_all(dir.join("var/lib")).unwrap();
    // Mount points and the links every ostree-style OS tree carries.
    for d in ["sysroot", "boot", "proc", "sys", "dev", "run", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let _ = std::fs::remove_file(dir.join("ostree"));
    std::os::unix::fs::symlink("sysroot/ostree", dir.join("ostree")).unwrap();
}

/// Commit `tree` on `branch` with a `version`; returns the checksum.
pub fn commit(repo: &Path, branch: &str, tree: &Path, version: &str) -> String {
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["commit", "-b", branch, "-s", version])
        .arg(format!("--add-metadata-string=version={version}"))
        .arg(format!("--tree=dir={}", tree.display()))
        .arg("--timestamp=2026-01-01T00:00:00Z"))
    .trim()
    .to_string()
}

/// A tree as `make_tree(kernel, variant)` makes it, changed by `edit`, in
/// `tree-{variant}` of the scratch dir, committed to `repo` on `branch` with
/// `version`; returns the checksum.
pub fn commit_tree(s: &Scratch, repo: &Path, branch: &str, kernel: &str, variant: &str, version: &str, edit: impl FnOnce(&Path)) -> String {
    let t = s.join(&format!("tree-{variant}"));
    make_tree(&t, kernel, variant);
    edit(&t);
    commit(repo, branch, &t, version)
}

/// A sysroot made with treeboot, stateroot `testos`, commits `testos/v1`,
/// `testos/v2`, `testos/v3` (v3 has a new kernel).
pub fn sysroot_with_commits(s: &Scratch) -> PathBuf {
    let root = s.join("sysroot");
    run(Command::new(treeboot_bin()).arg("init-fs").arg(&root));
    run(tb(&root).args(["os-init", "testos"]));
    let repo = root.join("ostree/repo");
    for (v, k) in [("1.0", "A"), ("2.0", "A"), ("3.0", "B")] {
        commit_tree(s, &repo, &format!("testos/v{}", &v[..1]), k, v, v, |_| {});
    }
    root
}

/// Copy a sysroot (hardlinks and all) with cp -a.
pub fn copy_sysroot(from: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// A description of every file of a sysroot, keyed by relative path:
/// type, mode, owner, symlink target or content (small files) or size.
/// Skips repository internals that differ by timing only.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for n in names {
        let p = dir.join(&n);
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel == "ostree/lock"
            || rel == "ostree/repo/.lock"
            || rel.starts_with("ostree/repo/objects")
            || rel.starts_with("ostree/repo/tmp")
            || rel.starts_with("ostree/repo/state")
        {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        let mode = m.permissions().mode() & 0o7777;
        let desc = if m.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            format!("dir {mode:o} {}:{}", m.uid(), m.gid())
        } else if m.is_file() && m.len() < 4096 {
            format!("file {mode:o} {}:{} {:?}", m.uid(), m.gid(), std::fs::read_to_string(&p).unwrap_or_default())
        } else {
            format!("file {mode:o} {}:{} size {}", m.uid(), m.gid(), m.len())
        };
        out.insert(rel, desc);
        if m.is_dir() && !m.file_type().is_symlink() {
            walk(root, &p, out);
        }
    }
}

/// Lines that differ between two snapshots, for assertion messages.
pub fn snapshot_diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => d.push(format!("only in ostree's: {k} ({v})")),
            Some(w) if w != v => d.push(format!("differs: {k}\n   ostree:   {v}\n   treeboot: {w}")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            d.push(format!("only in treeboot's: {k} ({v})"));
        }
    }
    d
}

/// Assert that the sysroot at `root` is exactly as snapshotted in `before`.
pub fn assert_unchanged(what: &str, before: &BTreeMap<String, String>, root: &Path) {
    let d = snapshot_diff(before, &snapshot(root));
    assert!(d.is_empty(), "{what}: the sysroot changed:\n{}", d.join("\n"));
}

pub fn status_json(sysroot: &Path) -> serde_json::Value {
    serde_json::from_str(&run(tb(sysroot).args(["status", "--json"]))).unwrap()
}

/// The `$csum.$serial` names in `ostree admin status` order.
pub fn ostree_status_names(sysroot: &Path) -> Vec<String> {
    status_names_of(&run(ostree_admin(sysroot).arg("status")))
}

fn status_names_of(status: &str) -> Vec<String> {
    status
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches(['*', ' ']);
            let mut it = l.split_whitespace();
            let _os = it.next()?;
            let name = it.next()?;
            (name.len() > 64 && name.contains('.')).then(|| name.to_string())
        })
        .collect()
}

pub fn treeboot_status_names(sysroot: &Path) -> Vec<String> {
    status_json(sysroot)["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{}.{}", d["checksum"].as_str().unwrap(), d["serial"]))
        .collect()
}

/// The file names of the live BLS entries, sorted.
pub fn entries(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("boot/loader/entries"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Path of deployment `index` (from treeboot status).
pub fn deployment_dir(sysroot: &Path, index: usize) -> PathBuf {
    let st = status_json(sysroot);
    sysroot.join(st["deployments"][index]["deploy_path"].as_str().unwrap())
}

/// Run `script` in a private mount namespace where the sysroot `root` is
/// bind mounted at $MNT (`s/mnt`, as the initramfs mounts the real root at
/// /sysroot) and /run is a fresh tmpfs. $S is the sysroot, $PR
/// treeboot-prepare-root, $RM treeboot-remount, and `env` adds more.
/// Returns (success, stdout, stderr).
pub fn initramfs_ns(s: &Scratch, root: &Path, env: &[(&str, &Path)], script: &str) -> (bool, String, String) {
    let mnt = s.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let full = format!("set -eu\nmount -t tmpfs tmpfs /run\nmount --bind \"$S\" \"$MNT\"\n{script}");
    let bin = |name: &str| Path::new(treeboot_bin()).with_file_name(name);
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "bash", "-c", &full])
        .env("S", root)
        .env("MNT", &mnt)
        .env("PR", bin("treeboot-prepare-root"))
        .env("RM", bin("treeboot-remount"));
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Run a bash script in a private mount namespace with a fresh tmpfs on
/// /run, and `/run/ostree-booted` naming deployment `booted_index` of
/// `sysroot` (as prepare-root writes it). `$TB` is treeboot, `$S` the
/// sysroot. Returns (success, stdout, stderr).
///
/// The script runs under `set -euo pipefail`: never `$TB ... | grep -q`,
/// since grep leaves at its first match and treeboot's next line then ends
/// it with SIGPIPE, failing the pipeline at random. Capture the output
/// (`out=$($TB ...)`) and grep that.
pub fn in_booted_namespace(sysroot: &Path, booted_index: usize, script: &str) -> (bool, String, String) {
    use std::os::unix::fs::MetadataExt;
    let dep = deployment_dir(sysroot, booted_index);
    let m = std::fs::metadata(&dep).unwrap();
    let rec = treeboot::formats::runstate::Booted {
        backing_root_device_inode: Some((m.dev(), m.ino())),
        ..Default::default()
    };
    // One record file per sysroot: tests run namespaces in parallel.
    let bfile = sysroot.with_file_name(format!("{}.ostree-booted", sysroot.file_name().unwrap().to_string_lossy()));
    std::fs::write(&bfile, rec.serialize()).unwrap();
    let full = format!(
        "set -euo pipefail\nmount -t tmpfs tmpfs /run\ncp {} /run/ostree-booted\n{}",
        bfile.display(),
        script
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "bash", "-c", &full])
        .env("TB", treeboot_bin())
        .env("S", sysroot)
        .env("TREEBOOT_NO_SYSTEMCTL", "1")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
