//! `treeboot verify`: check that a sysroot is bootable, reporting every
//! violation with its file, without stopping at the first.
//!
//! What the model's loader finds, every problem rather than the first
//! (`Sysroot::inspect_at`): each entry parses, has `options` with a valid
//! `ostree=` that resolves through `ostree/boot.N.M` to an existing
//! deployment, no deployment is listed twice, one default, every origin
//! parses. Then what booting needs beyond the model: `boot/loader` and
//! `ostree/boot.N` exist, each entry's `linux`/`initrd` (and `devicetree`,
//! `aboot`, `fdtdir`) exist under
//! `/boot`, each deployment has `usr/`, GRUB's menu exists when
//! `/boot/grub` does. Leftovers of an interrupted run (`*.tmp` links, the
//! other boot version, unreferenced deployments, `.tmp-*` kernel dirs) are
//! notes: harmless, removed by cleanup. Reads only; takes no lock.

use std::collections::HashSet;

use anyhow::Result;
use camino::Utf8Path;
use cap_std_ext::cap_std::{self, fs::Dir};
use cap_std_ext::dirext::CapStdExtDirExt;
use serde::Serialize;

use crate::bootloader::fat::{self, LoaderLayout};
use crate::formats::names::parse_deploy_name;
use crate::fsutil;
use crate::sysroot::{RunState, Sysroot};

/// `treeboot verify --json`: every problem found.
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub errors: Vec<String>,
    pub notes: Vec<String>,
    pub deployments: usize,
    pub default: Option<String>,
}

impl Report {
    pub fn bootable(&self) -> bool {
        self.errors.is_empty()
    }
}

fn link_target(dir: &Dir, p: &str) -> Option<String> {
    dir.read_link_contents(p).ok().map(|t| t.to_string_lossy().into_owned())
}

pub fn verify(path: &Utf8Path) -> Result<Report> {
    let root = match Dir::open_ambient_dir(path, cap_std::ambient_authority()) {
        Ok(d) => d,
        Err(e) => {
            return Ok(Report { errors: vec![format!("{path}: {e}")], ..Default::default() });
        }
    };
    verify_at(root, path, RunState::open_ambient()?)
}

/// Verify the sysroot `root` (named `path` in messages): what the model's
/// loader finds (`Sysroot::inspect_at`, which reports every unreadable
/// entry instead of stopping), then what booting needs beyond the model.
pub fn verify_at(root: Dir, path: &Utf8Path, run: RunState) -> Result<Report> {
    let mut r = Report::default();
    let Some(sub) = links(&root, path, &mut r)? else {
        return Ok(r);
    };
    match Sysroot::inspect_at(root, path, run) {
        Ok(s) => beyond_the_model(&s, sub, r),
        Err(e) => {
            r.errors.push(format!("{e:#}"));
            Ok(r)
        }
    }
}

/// The same checks on a model already loaded (strictly: `status` uses this,
/// so that it reads the sysroot once).
pub fn check(s: &Sysroot) -> Result<Report> {
    let mut r = Report::default();
    match links(&s.root, &s.path, &mut r)? {
        Some(sub) => beyond_the_model(s, sub, r),
        None => Ok(r),
    }
}

/// `boot/loader` and `ostree/boot.N`, which the loader reads leniently
/// (missing means 0) but a boot needs: Some(sub-boot version, None when
/// `ostree/boot.N` is missing) to go on, None when nothing else can be
/// checked. Problems go into `r`.
fn links(root: &Dir, path: &Utf8Path, r: &mut Report) -> Result<Option<Option<u32>>> {
    let Some(bv) = boot_version(root, path, r)? else {
        return Ok(None);
    };
    Ok(match link_target(root, &format!("ostree/boot.{bv}")).as_deref() {
        Some(t) if t == format!("boot.{bv}.0") => Some(Some(0)),
        Some(t) if t == format!("boot.{bv}.1") => Some(Some(1)),
        Some(t) => {
            r.errors.push(format!("{path}/ostree/boot.{bv}: points to {t:?}, not boot.{bv}.0 or boot.{bv}.1"));
            None
        }
        None => {
            r.errors.push(format!("{path}/ostree/boot.{bv}: missing; the entries' ostree= cannot resolve"));
            Some(None)
        }
    })
}

/// The model's problems, then what booting needs beyond it.
fn beyond_the_model(s: &Sysroot, sub: Option<u32>, mut r: Report) -> Result<Report> {
    let (path, loader) = (&s.path, s.loader_rel());
    r.errors.extend(s.problems.iter().cloned());
    check_deployments(s, &mut r)?;
    if s.deployments.is_empty() && r.errors.is_empty() {
        r.errors.push(format!("{path}/{loader}/entries: no entries: nothing to boot"));
    }
    r.default = s.deployments.first().and_then(|d| d.entry_file.clone());
    r.deployments = s.deployments.len();
    if s.root.symlink_metadata_optional("boot/grub")?.is_some_and(|m| m.is_dir())
        && s.root.symlink_metadata_optional(format!("{loader}/grub.cfg"))?.is_none()
    {
        r.errors.push(format!("{path}/{loader}/grub.cfg: missing, but /boot/grub exists (GRUB would show no menu)"));
    }
    leftovers(s, sub, &mut r)?;
    Ok(r)
}

/// The boot version from `boot/loader`, or None (with the error) when there
/// is nothing a bootloader could read.
fn boot_version(root: &Dir, path: &Utf8Path, r: &mut Report) -> Result<Option<u32>> {
    if root.symlink_metadata_optional("boot")?.is_none() {
        r.errors.push(format!("{path}/boot: does not exist (is /boot mounted?)"));
        return Ok(None);
    }
    let boot = fsutil::open_subdir(root, path.as_str(), "boot")?;
    if LoaderLayout::detect(&boot)? == LoaderLayout::Directory {
        return Ok(match fat::read_bootversion(&boot, "loader") {
            Ok(Some(bv)) => Some(bv),
            Ok(None) => {
                r.errors.push(format!(
                    "{path}/boot/loader/{}: missing: no deployment list was written to this FAT /boot, nothing to boot",
                    fat::BOOTVERSION_FILE
                ));
                None
            }
            Err(e) => {
                r.errors.push(format!("{path}: {e:#}"));
                None
            }
        });
    }
    Ok(match link_target(root, "boot/loader").as_deref() {
        Some("loader.0") => Some(0),
        Some("loader.1") => Some(1),
        Some(other) => {
            r.errors.push(format!("{path}/boot/loader: points to {other:?}, not loader.0 or loader.1"));
            None
        }
        None => {
            r.errors.push(format!("{path}/boot/loader: missing: there is no deployment list, nothing to boot"));
            None
        }
    })
}

/// The note for an `aboot` image named in a deployment that is not there.
fn missing_deployment_aboot(s: &Sysroot, file: &str, p: &str) -> Result<Option<String>> {
    let present = s.root.symlink_metadata_optional(p.trim_start_matches('/'))?.is_some_and(|m| m.is_file());
    Ok((!present).then(|| {
        format!("{file}: aboot {p} does not exist in {} (libostree 2025.2 names one for every entry; only an aboot bootloader reads it)", s.path)
    }))
}

/// What the bootloader and the initramfs need of each listed deployment:
/// its kernel and initramfs in /boot, its `usr/`.
fn check_deployments(s: &Sysroot, r: &mut Report) -> Result<()> {
    let path = &s.path;
    for d in &s.deployments {
        let file = format!("{path}/{}/entries/{}", s.loader_rel(), d.entry_file.as_deref().unwrap_or("?"));
        let entry = d.entry.as_ref().expect("listed deployments have an entry");
        // Files in /boot the bootloader loads (fdtdir: a directory).
        for key in ["linux", "initrd", "devicetree", "aboot", "fdtdir"] {
            match entry.get(key) {
                // libostree 2025.2 names `aboot` in every entry, in the
                // deployment when /boot has none (fixed in 2025.3): only
                // Android's aboot reads it, and a missing one stops no
                // other bootloader.
                Some(p) if key == "aboot" && p.starts_with("/ostree/deploy/") => {
                    r.notes.extend(missing_deployment_aboot(s, &file, p)?);
                }
                Some(p) => {
                    let rel = format!("boot/{}", p.trim_start_matches('/'));
                    let m = s.root.symlink_metadata_optional(&rel)?;
                    if !m.is_some_and(|m| if key == "fdtdir" { m.is_dir() } else { m.is_file() }) {
                        r.errors.push(format!("{file}: {key} {p} does not exist in {path}/boot"));
                    }
                }
                None if key == "linux" => r.errors.push(format!("{file}: no `linux` line")),
                None => {}
            }
        }
        // Without an initramfs the kernel runs init= from the physical root.
        if entry.get("initrd").is_none() {
            match d.kargs.get("init") {
                None => r.errors.push(format!("{file}: no initrd and no init= argument: nothing would set up the deployment as the root")),
                Some(p) => {
                    let rel = p.trim_start_matches('/');
                    if !s.root.metadata(rel).is_ok_and(|m| m.is_file()) {
                        r.errors.push(format!("{file}: no initrd, and init={p} does not exist in {path}"));
                    }
                }
            }
        }
        if !s.root.symlink_metadata_optional(d.path().join("usr"))?.is_some_and(|m| m.is_dir()) {
            r.errors.push(format!("{file}: deployment {path}/{} has no usr/", d.path()));
        }
    }
    Ok(())
}

/// Notes: what an interrupted run left (harmless, removed by cleanup), and
/// the staged deployment.
fn leftovers(s: &Sysroot, sub: Option<u32>, r: &mut Report) -> Result<()> {
    let (root, path, bv) = (&s.root, &s.path, s.bootversion);
    let boot_names = match s.layout {
        LoaderLayout::Symlink => vec!["loader.tmp".to_string(), crate::bootloader::swap::LOADER_PREV.to_string(), format!("loader.{}", 1 - bv)],
        LoaderLayout::Directory => fat::build_names().collect(),
    };
    let names = boot_names.into_iter().map(|n| ("boot", n)).chain([("ostree", format!("boot.{}", 1 - bv))]);
    for (dir, name) in names {
        match root.symlink_metadata_optional(format!("{dir}/{name}")) {
            Ok(Some(_)) => r.notes.push(format!("{path}/{dir}/{name}: left by an interrupted run; harmless, removed by cleanup")),
            Ok(None) => {}
            // FAT: a directory whose cluster chain a cut left broken.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => r.notes.push(format!(
                "{path}/{dir}/{name}: left by an interrupted run, and unreadable (its FAT cluster chain is broken; `fsck.fat -a` repairs it); harmless: treeboot leaves it alone"
            )),
            Err(e) => return Err(e.into()),
        }
    }
    // FAT: second names of directories in use, which treeboot never
    // removes (that would free the clusters the other name still uses).
    for dir in ["boot", "boot/ostree"] {
        let Some(d) = root.open_dir_optional(dir)? else { continue };
        for n in fsutil::read_names(&d)? {
            let n = n.to_string_lossy();
            if n.starts_with(fat::LOST_PREFIX) {
                r.notes.push(format!(
                    "{path}/{dir}/{n}: moved aside by treeboot as a second name of a directory in use (a power cut during a rename on FAT); `fsck.fat -a` on /boot's device repairs it"
                ));
            }
        }
    }
    if let Some(o) = root.open_dir_optional("ostree")? {
        for n in fsutil::read_names(&o)? {
            let n = n.to_string_lossy();
            if n.ends_with(".tmp") || sub.is_some_and(|sub| n == format!("boot.{bv}.{}", 1 - sub)) {
                r.notes.push(format!("{path}/ostree/{n}: left by an interrupted run; harmless, removed by cleanup"));
            }
        }
    }
    let listed: HashSet<String> = s.deployments.iter().map(|d| d.path().to_string()).collect();
    let staged = s.staged.as_ref().map(|d| d.path().to_string());
    for os in s.stateroots()? {
        let rel = format!("ostree/deploy/{os}/deploy");
        let Some(dd) = root.open_dir_optional(&rel)? else { continue };
        for n in fsutil::read_names(&dd)? {
            let n = n.to_string_lossy().into_owned();
            let p = format!("{rel}/{n}");
            if parse_deploy_name(&n).is_none() || listed.contains(&p) {
                continue;
            }
            if staged.as_deref() == Some(p.as_str()) {
                r.notes.push(format!("{path}/{p}: the staged deployment (applied at shutdown)"));
            } else {
                r.notes.push(format!("{path}/{p}: not in the deployment list (left by an interrupted run, or staged on another boot: removed by cleanup)"));
            }
        }
    }
    if let Some(bo) = root.open_dir_optional("boot/ostree")? {
        for n in fsutil::read_names(&bo)? {
            let n = n.to_string_lossy();
            if n.starts_with(".tmp-") {
                r.notes.push(format!("{path}/boot/ostree/{n}: an interrupted kernel install; harmless, removed by cleanup"));
            }
        }
    }
    Ok(())
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    for e in &r.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    if r.bootable() {
        out.push_str(&format!(
            "ok: bootable; {} deployment(s), default entry {}\n",
            r.deployments,
            r.default.as_deref().unwrap_or("-")
        ));
    } else {
        out.push_str(&format!("NOT BOOTABLE: {} problem(s)\n", r.errors.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysroot::fixture::*;

    fn verify_fixture(f: &Fixture) -> Report {
        verify_at(f.root.try_clone().unwrap(), Utf8Path::new("/fixture"), RunState::at(f.run.try_clone().unwrap())).unwrap()
    }

    /// An entry without `initrd`: the kernel runs `init=`, which must exist.
    #[test]
    fn without_an_initramfs_init_must_be_there() {
        let f = Fixture::new(&[('a', '1')]);
        let entry = format!("boot/loader.1/entries/ostree-1-{OS}.conf");
        let plain: String = f.root.read_to_string(&entry).unwrap().lines().filter(|l| !l.starts_with("initrd")).map(|l| format!("{l}\n")).collect();
        f.root.write(&entry, &plain).unwrap();
        let e = verify_fixture(&f).errors.join("\n");
        assert!(e.contains("ostree-1-os.conf: no initrd and no init= argument"), "{e}");
        let p = format!("/ostree/boot.1/{OS}/{}/0/usr/lib/ostree/ostree-prepare-root", csum('1'));
        f.root.write(&entry, plain.replace("options root=LABEL=r", &format!("options root=LABEL=r init={p}"))).unwrap();
        let e = verify_fixture(&f).errors.join("\n");
        assert!(e.contains(&format!("no initrd, and init={p} does not exist in /fixture")), "{e}");
        let d = format!("ostree/deploy/{OS}/deploy/{}.0", csum('a'));
        f.root.create_dir_all(format!("{d}/usr/lib/ostree")).unwrap();
        f.root.write(format!("{d}/usr/lib/ostree/ostree-prepare-root"), "#!").unwrap();
        let r = verify_fixture(&f);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }

    /// A device tree, device tree directory or aboot image the entry names
    /// must be in /boot: without it the board does not boot.
    #[test]
    fn the_device_tree_and_aboot_files_an_entry_names_must_be_there() {
        let f = Fixture::new(&[('a', '1')]);
        let entry = format!("boot/loader.1/entries/ostree-1-{OS}.conf");
        let dir = format!("/ostree/{OS}-{}", csum('1'));
        let plain = f.root.read_to_string(&entry).unwrap();
        f.root
            .write(&entry, format!("{plain}devicetree {dir}/devicetree-6.1\naboot {dir}/aboot-6.1.img\nfdtdir {dir}/dtb\n"))
            .unwrap();
        let e = verify_fixture(&f).errors.join("\n");
        for key in ["devicetree", "aboot", "fdtdir"] {
            assert!(e.contains(&format!("ostree-1-os.conf: {key} {dir}/")) && e.contains("does not exist in /fixture/boot"), "{key}: {e}");
        }
        // What libostree 2025.2 writes into every entry: an aboot image
        // in the deployment, which need not exist. A note, not an error.
        let f2 = Fixture::new(&[('a', '1')]);
        let plain2 = f2.root.read_to_string(&entry).unwrap();
        let d = format!("/ostree/deploy/{OS}/deploy/{}.0/usr/lib/ostree-boot", csum('a'));
        f2.root.write(&entry, format!("{plain2}aboot {d}/aboot.img\nabootcfg {d}/aboot.cfg\n")).unwrap();
        let r2 = verify_fixture(&f2);
        assert!(r2.errors.is_empty(), "{:?}", r2.errors);
        assert!(r2.notes.iter().any(|n| n.contains("aboot.img does not exist")), "{:?}", r2.notes);
        // A file where fdtdir wants a directory is no better.
        f.root.write(format!("boot{dir}/devicetree-6.1"), "DT").unwrap();
        f.root.write(format!("boot{dir}/aboot-6.1.img"), "A").unwrap();
        f.root.write(format!("boot{dir}/dtb"), "not a directory").unwrap();
        let e = verify_fixture(&f).errors;
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("fdtdir"), "{e:?}");
        f.root.remove_file(format!("boot{dir}/dtb")).unwrap();
        f.root.create_dir(format!("boot{dir}/dtb")).unwrap();
        let r = verify_fixture(&f);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }

    #[test]
    fn a_good_sysroot_is_bootable_and_the_staged_deployment_a_note() {
        let f = Fixture::new(&[('a', '1'), ('b', '2')]);
        f.boot_into(&format!("{}.0", csum('a')));
        f.stage('c', '3', false);
        let r = verify_fixture(&f);
        assert!(r.bootable(), "{}", render(&r));
        assert_eq!(r.deployments, 2);
        assert_eq!(r.default.as_deref(), Some("ostree-2-os.conf"));
        assert!(r.notes.iter().any(|n| n.contains(&csum('c')) && n.contains("the staged deployment")), "{:?}", r.notes);
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let f = Fixture::new(&[('a', '1'), ('b', '2'), ('c', '3')]);
        // Entry 3 (a's) is junk, entry 2's deployment (b) is gone, entry
        // 1's kernel (c's) is missing: three problems, all reported.
        f.root.write("boot/loader.1/entries/ostree-3-os.conf", "title junk\nversion 3\n").unwrap();
        f.root.remove_dir_all(format!("ostree/deploy/{OS}/deploy/{}.0", csum('b'))).unwrap();
        f.root.remove_file(format!("boot/ostree/{OS}-{}/vmlinuz-6.1", csum('3'))).unwrap();
        let r = verify_fixture(&f);
        assert!(!r.bootable());
        let all = r.errors.join("\n");
        assert!(all.contains("ostree-3-os.conf: no `options` line"), "{all}");
        assert!(all.contains("ostree-2-os.conf") && all.contains("does not exist (dangling link"), "{all}");
        assert!(all.contains("ostree-1-os.conf: linux /ostree/") && all.contains("does not exist in /fixture/boot"), "{all}");
        assert_eq!(r.errors.len(), 3, "{all}");
        assert_eq!(r.deployments, 1, "the readable entry is still listed");
    }

    #[test]
    fn two_entries_with_one_version_make_the_default_ambiguous() {
        let f = Fixture::new(&[('a', '1'), ('b', '2')]);
        let e = f.root.read_to_string("boot/loader.1/entries/ostree-1-os.conf").unwrap();
        f.root.write("boot/loader.1/entries/ostree-1-os.conf", e.replace("version 1", "version 2")).unwrap();
        let r = verify_fixture(&f);
        assert!(r.errors.iter().any(|e| e.contains("the default is ambiguous")), "{:?}", r.errors);
    }
}
