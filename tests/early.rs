//! Early boot for real, in private mount namespaces: prepare-root against
//! directory sysroots written by `treeboot deploy`, side by side with
//! Debian's ostree-prepare-root; remount; the generator; the binaries' links.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin(name: &str) -> PathBuf {
    Path::new(treeboot_bin()).with_file_name(name)
}

/// A sysroot with testos/v1 deployed; returns (scratch, sysroot, cmdline file).
fn deployed(tag: &str) -> (Scratch, PathBuf, PathBuf) {
    let s = Scratch::new(tag);
    let root = sysroot_with_commits(&s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    let entry = std::fs::read_dir(root.join("boot/loader/entries")).unwrap().next().unwrap().unwrap().path();
    let opts = std::fs::read_to_string(entry).unwrap().lines().find_map(|l| l.strip_prefix("options ").map(String::from)).unwrap();
    let cmdline = s.join("cmdline");
    std::fs::write(&cmdline, format!("BOOT_IMAGE=/vmlinuz {opts} quiet\n")).unwrap();
    (s, root, cmdline)
}

/// [`initramfs_ns`] with nothing more in the environment.
fn ns(s: &Scratch, root: &Path, script: &str) -> (bool, String, String) {
    initramfs_ns(s, root, &[], script)
}

/// Mounts under $MNT as (source relative to the sysroot, target relative to
/// $MNT, ro|rw), printed by the script below, parsed here.
const LIST_MOUNTS: &str = r#"awk -v m="$MNT" -v s="$S" '$5 == m || index($5, m "/") == 1 { src=$4; sub("^" s, "", src); tgt=$5; sub("^" m, "", tgt); if (src == "") src = "/"; if (tgt == "") tgt = "/"; split($6, o, ","); t = ""; for (i = 7; i < NF; i++) if ($i == "-") { if ($(i+1) == "overlay" || $(i+1) == "tmpfs") t = " " $(i+1); break }; print "MOUNT " src " " tgt " " o[1] t }' /proc/self/mountinfo"#;

fn mounts(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.lines().filter_map(|l| l.strip_prefix("MOUNT ")).map(String::from).collect();
    v.sort();
    v
}

#[test]
fn prepare_root_builds_the_deployment_root() {
    let (s, root, cmdline) = deployed("pr");
    let dep = deployment_dir(&root, 0);
    let rel = dep.strip_prefix(&root).unwrap().display().to_string();
    let (ok, out, err) = ns(&s, &root, &format!(r#"
"$PR" --no-bind-var --cmdline {} "$MNT"
{LIST_MOUNTS}
touch "$MNT/usr/x" 2>&1 | grep -q 'Read-only file system' && echo "usr: EROFS"
touch "$MNT/etc/written" && echo "etc: writable"
test -d "$MNT/sysroot/ostree/deploy" && echo "sysroot: the physical root"
test -e "$MNT/usr/lib/os-release" && echo "root: the deployment"
cp /run/ostree-booted {}/booted
cat /run/treeboot/prepared-root
test -e /run/ostree/initramfs-mount-var && echo "ostree-system-generator: told to stand aside"
"#, cmdline.display(), s.path.display()));
    assert!(ok, "{out}\n{err}");
    // The markers: this root is treeboot's, and ostree-boot's generator, if
    // installed, writes nothing (docs/coexistence.md).
    assert!(out.contains(&format!("/{rel}\n")), "{out}");
    assert!(out.contains("ostree-system-generator: told to stand aside"), "{out}");
    assert!(out.contains("usr: EROFS") && out.contains("etc: writable") && out.contains("sysroot: the physical root") && out.contains("root: the deployment"), "{out}");
    assert_eq!(
        mounts(&out),
        vec!["/ /sysroot rw".to_string(), format!("/{rel} / rw"), format!("/{rel}/usr /usr ro")],
        "{out}"
    );
    // /run/ostree-booted names the deployment, for status and remount.
    use std::os::unix::fs::MetadataExt;
    let b = treeboot::formats::runstate::Booted::parse(&std::fs::read(s.join("booted")).unwrap()).unwrap();
    let m = std::fs::metadata(&dep).unwrap();
    assert_eq!(b.backing_root_device_inode, Some((m.dev(), m.ino())));
    assert!(!b.sysroot_ro);
    // Nothing is left mounted outside the namespace, and the etc write stayed in the deployment.
    assert!(dep.join("etc/written").exists());
}

#[test]
fn same_mounts_as_debian_ostree_prepare_root() {
    let (s, root, cmdline) = deployed("prdiff");
    let ours = ns(&s, &root, &format!("\"$PR\" --no-bind-var --cmdline {} \"$MNT\"\n{LIST_MOUNTS}\n", cmdline.display()));
    assert!(ours.0, "{}\n{}", ours.1, ours.2);
    // Debian's 2022.7 reads /proc/cmdline only: give it ours.
    let theirs = ns(&s, &root, &format!("mount --bind {} /proc/cmdline\n/usr/lib/ostree/ostree-prepare-root \"$MNT\"\n{LIST_MOUNTS}\ntest -e /run/ostree-booted && echo BOOTED\n", cmdline.display()));
    assert!(theirs.0, "{}\n{}", theirs.1, theirs.2);
    assert!(theirs.1.contains("BOOTED"));
    // 2022.7 also binds /boot here; treeboot leaves /boot to the generator's
    // boot.mount, as newer libostree does. Everything else is the same.
    let theirs_mounts: Vec<String> = mounts(&theirs.1).into_iter().filter(|m| !m.contains(" /boot ")).collect();
    assert_eq!(mounts(&ours.1), theirs_mounts);
}

#[test]
fn prepare_root_conf_options() {
    let (s, root, cmdline) = deployed("prconf");
    let dep = deployment_dir(&root, 0);
    let conf = dep.join("etc/ostree/prepare-root.conf");
    let run_with = |text: &str, script: &str| {
        write(&conf, text);
        let r = ns(&s, &root, &format!("\"$PR\" --no-bind-var --cmdline {} \"$MNT\"\n{LIST_MOUNTS}\n{script}", cmdline.display()));
        assert!(r.0, "{text}: {}\n{}", r.1, r.2);
        r
    };
    // sysroot.readonly: /sysroot read-only, /etc a writable mount of its own.
    let (_, out, _) = run_with("[sysroot]\nreadonly=true\n", "touch \"$MNT/sysroot/x\" 2>/dev/null || echo 'sysroot: EROFS'\ntouch \"$MNT/etc/y\" && echo 'etc: writable'\n");
    assert!(out.contains("sysroot: EROFS") && out.contains("etc: writable"), "{out}");
    assert!(mounts(&out).iter().any(|m| m.ends_with(" /sysroot ro")), "{out}");
    assert!(mounts(&out).iter().any(|m| m.ends_with(" /etc rw")), "{out}");
    // etc.transient: writes to /etc land in a tmpfs, not in the deployment.
    let (_, out, _) = run_with("[etc]\ntransient=true\n", "echo t > \"$MNT/etc/transient-file\" && echo 'etc: writable'\nod -c /run/ostree-booted | head -c 0\n");
    assert!(out.contains("etc: writable"), "{out}");
    assert!(!dep.join("etc/transient-file").exists(), "the write went to the deployment");
    assert!(mounts(&out).contains(&"/ /etc rw overlay".to_string()), "{out}");
    // root.transient: / is writable, nothing reaches the disk.
    let (_, out, _) = run_with("[root]\ntransient=true\n", "touch \"$MNT/usr/new\" && echo 'usr: writable'\n");
    assert!(out.contains("usr: writable"), "{out}");
    assert!(!dep.join("usr/new").exists());
    std::fs::remove_file(&conf).unwrap();
}

#[test]
fn bad_input_leaves_no_mount_behind() {
    let (s, root, cmdline) = deployed("prbad");
    let dep = deployment_dir(&root, 0);
    let rel = dep.strip_prefix(&root).unwrap().display().to_string();
    let good = std::fs::read_to_string(&cmdline).unwrap();
    let link = good.split_whitespace().find(|a| a.starts_with("ostree=")).unwrap().trim_start_matches("ostree=").to_string();
    // A link that leaves the sysroot, and a deployment without usr/.
    std::fs::create_dir_all(root.join("ostree/boot.9/testos")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("ostree/boot.9/testos/escape")).unwrap();
    std::os::unix::fs::symlink("../../../../..", root.join("ostree/boot.9/testos/up")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("ostree/boot.9/testos/notdeploy")).unwrap();
    let fake = root.join(format!("ostree/deploy/testos/deploy/{}.7", "a".repeat(64)));
    std::fs::create_dir_all(fake.join("etc")).unwrap();
    std::os::unix::fs::symlink(format!("../../deploy/testos/deploy/{}.7", "a".repeat(64)), root.join("ostree/boot.9/testos/nousr")).unwrap();
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        ("root=x quiet".into(), None, "no ostree= argument"),
        ("ostree=/ostree/boot.1/testos/nonexistent/0".into(), None, "does not exist"),
        (format!("ostree=/{rel}"), None, "is not a symlink"),
        ("ostree=/ostree/boot.9/testos/escape".into(), None, "leaves the sysroot"),
        ("ostree=/ostree/boot.9/testos/up".into(), None, "leaves the sysroot"),
        ("ostree=/ostree/boot.9/testos/notdeploy".into(), None, "not a deployment in ostree/deploy/"),
        ("ostree=/etc/passwd".into(), None, "not a /ostree/boot.N/... path"),
        ("ostree=/ostree/boot.9/testos/nousr".into(), None, "has no /usr"),
        (format!("ostree={link}"), Some("[sysroot]\nreadonly=maybe\n"), "[sysroot] readonly=\"maybe\" is not a boolean"),
        (format!("ostree={link}"), Some("[composefs]\nenabled=yes\n"), "the deployment has no image"),
    ];
    for (cmd, conf, expect) in cases {
        std::fs::write(&cmdline, format!("{cmd}\n")).unwrap();
        let conf_path = dep.join("etc/ostree/prepare-root.conf");
        match conf {
            Some(c) => write(&conf_path, c),
            None => {
                let _ = std::fs::remove_file(&conf_path);
            }
        }
        let (ok, out, err) = ns(&s, &root, &format!("set +e\n\"$PR\" --no-bind-var --cmdline {} \"$MNT\"\necho \"exit=$?\"\n{LIST_MOUNTS}\ntest -e /run/ostree-booted && echo LEFT-BOOTED\ntrue\n", cmdline.display()));
        assert!(ok, "{out}\n{err}");
        assert!(out.contains("exit=1"), "{cmd}: {out}");
        assert!(err.contains(expect), "{cmd}: expected {expect:?} in {err}");
        // Only the bind of the sysroot that the test itself made.
        assert_eq!(mounts(&out), vec!["/ / rw".to_string()], "{cmd}: mounts left behind");
        assert!(!out.contains("LEFT-BOOTED"), "{cmd}");
    }
    let _ = std::fs::remove_file(dep.join("etc/ostree/prepare-root.conf"));
}

#[test]
fn remount_makes_the_configured_mounts_writable() {
    let s = Scratch::new("remount");
    let r = s.join("root");
    for d in ["sysroot", "var", "etc", "src"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    let rec = |ro: bool| {
        let b = treeboot::formats::runstate::Booted { sysroot_ro: ro, ..Default::default() };
        let f = s.join(&format!("booted-{ro}"));
        std::fs::write(&f, b.serialize()).unwrap();
        f
    };
    let script = |rec: &Path| format!(r#"
mount -t tmpfs tmpfs /run
cp {} /run/ostree-booted
for d in sysroot var etc; do mount --bind {r}/src {r}/$d; mount -o remount,bind,ro {r}/$d; done
"$RM" --root {r}
for d in sysroot var etc; do touch {r}/$d/f 2>/dev/null && echo "$d rw" || echo "$d ro"; done
"#, rec.display(), r = r.display());
    let go = |sc: String| {
        let out = Command::new("unshare").args(["-m", "--propagation", "private", "bash", "-c", &sc]).env("RM", bin("treeboot-remount")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = go(script(&rec(false)));
    assert_eq!(out, "sysroot rw\nvar rw\netc ro\n");
    let out = go(script(&rec(true)));
    assert_eq!(out, "sysroot ro\nvar rw\netc rw\n");
}

fn generate(cmdline: &str, root: &Path, out: &Path) -> BTreeMapish {
    use cap_std_ext::cap_std::{ambient_authority, fs::Dir};
    std::fs::create_dir_all(out).unwrap();
    let r = Dir::open_ambient_dir(root, ambient_authority()).unwrap();
    let o = Dir::open_ambient_dir(out, ambient_authority()).unwrap();
    treeboot::early::generator::generate(cmdline, &r, &o).unwrap();
    snapshot(out)
}
type BTreeMapish = std::collections::BTreeMap<String, String>;

#[test]
fn generator_golden_and_idempotent() {
    let s = Scratch::new("gen");
    let root = s.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let c = "BOOT_IMAGE=/x root=LABEL=root ostree=/ostree/boot.1/fcos/0ec7/0 quiet";
    let out = s.join("out");
    let first = generate(c, &root, &out);
    let var = std::fs::read_to_string(out.join("var.mount")).unwrap();
    assert_eq!(var, "# Generated by treeboot-generator\n[Unit]\nDocumentation=https://github.com/treeboot/treeboot/blob/main/docs/commands/treeboot-generator.md\nConditionKernelCommandLine=!systemd.volatile\nBefore=local-fs.target\n\n[Mount]\nWhere=/var\nWhat=/sysroot/ostree/deploy/fcos/var\nOptions=bind,slave,shared\n");
    assert_eq!(first["local-fs.target.requires/var.mount"], "link -> ../var.mount");
    assert_eq!(first["local-fs.target.wants/treeboot-remount.service"], "link -> /usr/lib/systemd/system/treeboot-remount.service");
    assert_eq!(first["multi-user.target.wants/treeboot-boot-complete.service"], "link -> /usr/lib/systemd/system/treeboot-boot-complete.service");
    assert!(!first.contains_key("boot.mount"));
    // /sysroot outlives a soft reboot into the same root.
    assert!(first["sysroot.mount.d/50-treeboot.conf"].contains("[Unit]") && first["sysroot.mount.d/50-treeboot.conf"].contains("DefaultDependencies=no"), "{first:?}");
    assert_eq!(generate(c, &root, &out), first, "a second run changes nothing");
    // /boot on the root file system: boot.mount.
    std::fs::create_dir_all(root.join("sysroot/boot")).unwrap();
    std::os::unix::fs::symlink("loader.1", root.join("sysroot/boot/loader")).unwrap();
    let out2 = s.join("out2");
    let g = generate(c, &root, &out2);
    assert!(g["boot.mount"].contains("What=/sysroot/boot"), "{g:?}");
    // fstab mounting /var and /boot: neither unit.
    write(&root.join("etc/fstab"), "# static\nUUID=a /var ext4 defaults 0 2\nUUID=b /boot ext4 defaults 0 2\n");
    let out3 = s.join("out3");
    let g = generate(c, &root, &out3);
    assert!(!g.contains_key("var.mount") && !g.contains_key("boot.mount"), "{g:?}");
    // No ostree=: nothing at all.
    let out4 = s.join("out4");
    assert!(generate("root=/dev/sda1 quiet", &root, &out4).is_empty());
}

/// With ostree-boot installed, one generator writes the units: treeboot's
/// for a root treeboot-prepare-root prepared, ostree-system-generator's for
/// one ostree-prepare-root prepared (which told treeboot's nothing).
#[test]
fn generator_beside_ostree_system_generator() {
    let s = Scratch::new("gen-ostree");
    let root = s.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    write(&root.join("usr/lib/systemd/system-generators/ostree-system-generator"), "#!/bin/sh\n");
    let c = "root=LABEL=root ostree=/ostree/boot.1/debian/0ec7/0";
    let out = s.join("out");
    assert!(generate(c, &root, &out).is_empty(), "ostree-prepare-root's root: nothing from treeboot");
    write(&root.join("run/treeboot/prepared-root"), "/ostree/deploy/debian/deploy/x.0\n");
    let g = generate(c, &root, &s.join("out2"));
    assert!(g["var.mount"].contains("What=/sysroot/ostree/deploy/debian/var"), "{g:?}");
    assert!(g.contains_key("local-fs.target.wants/treeboot-remount.service"), "{g:?}");
}

#[test]
fn early_binaries_link_only_libc() {
    for b in ["treeboot-prepare-root", "treeboot-remount", "treeboot-generator"] {
        let out = run(Command::new("readelf").arg("-d").arg(bin(b)));
        for l in out.lines().filter(|l| l.contains("(NEEDED)")) {
            assert!(l.contains("libc.so") || l.contains("libgcc_s") || l.contains("ld-linux"), "{b}: {l}");
        }
    }
}

/// treeboot-prepare-root linked statically, as PID 1 mode needs (the
/// physical root has no libc); built here as `make static` builds it.
fn static_prepare_root() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_static_prepare_root).clone()
}

fn build_static_prepare_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = "x86_64-unknown-linux-gnu";
    let out = Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .current_dir(dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--locked", "--no-default-features", "--bin", "treeboot-prepare-root", "--target", target, "--target-dir", "target/static"])
        .output()
        .unwrap();
    assert!(out.status.success(), "building the static prepare-root: {}", String::from_utf8_lossy(&out.stderr));
    let bin = dir.join(format!("target/static/{target}/debug/treeboot-prepare-root"));
    let elf = run(Command::new("readelf").arg("-d").arg(&bin));
    assert!(!elf.contains("(NEEDED)"), "the PID 1 binary must need no shared library:\n{elf}");
    bin
}

/// Copy `bin` into `root` at the same path, with the libraries `ldd` names.
fn install_with_libs(root: &Path, bin: &str) {
    let mut files = vec![bin.to_string()];
    let ldd = run(Command::new("ldd").arg(bin));
    files.extend(ldd.split_whitespace().filter(|w| w.starts_with('/')).map(String::from));
    for f in files {
        let dest = root.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dest).unwrap();
    }
}

/// Boot "without an initramfs": in new PID and mount namespaces, chroot into
/// the physical root (which holds only the static prepare-root, a command
/// line file and the kernel's /dev) and run prepare-root as PID 1, as the
/// kernel runs `init=`. Returns (exit status, stdout, stderr).
fn boot_as_pid1(root: &Path, pr: &Path, extra_args: &str) -> (i32, String, String) {
    std::fs::copy(pr, root.join("treeboot-prepare-root")).unwrap();
    let script = format!(
        "set -eu\nmount --bind \"$S\" \"$S\"\nmount --bind /dev \"$S/dev\"\nexec chroot \"$S\" /treeboot-prepare-root --cmdline /cmdline {extra_args}"
    );
    let out = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--propagation", "private", "bash", "-c", &script])
        .env("S", root)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(root.join("treeboot-prepare-root"));
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn pid1_mode_pivots_into_the_deployment_and_execs_init() {
    let pr = static_prepare_root();
    let (s, root, cmdline) = deployed("pid1");
    let dep = deployment_dir(&root, 0);
    std::fs::copy(&cmdline, root.join("cmdline")).unwrap();
    // The deployment's init: a shell script that reports what it finds (the
    // deployment root is immutable, as ostree makes it: lift that meanwhile).
    run(Command::new("chattr").arg("-i").arg(&dep));
    for b in ["/bin/sh", "/bin/cat", "/bin/cp", "/bin/mount"] {
        install_with_libs(&dep, b);
    }
    write(&dep.join("sbin/init"), r#"#!/bin/sh
echo "init: pid $$, args: $*"
mount -t proc proc /proc
cat /proc/self/mountinfo
echo x > /usr/probe 2>/dev/null && echo "usr: writable" || echo "usr: read-only"
echo x > /etc/probe && echo "etc: writable"
echo x > /var/probe && echo "var: writable"
test -d /sysroot/ostree/deploy && echo "sysroot: the physical root"
test -c /dev/null && echo "dev: the kernel's"
cp /run/ostree-booted /var/booted
"#);
    std::fs::set_permissions(dep.join("sbin/init"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    run(Command::new("chattr").arg("+i").arg(&dep));
    let (code, out, err) = boot_as_pid1(&root, &pr, "single");
    assert_eq!(code, 0, "{out}\n{err}");
    for want in ["init: pid 1, args: single", "usr: read-only", "etc: writable", "var: writable", "sysroot: the physical root", "dev: the kernel's"] {
        assert!(out.contains(want), "{want:?} missing:\n{out}\n{err}");
    }
    // The mount table init saw: (mount point, ro|rw, fs type).
    let mut seen: Vec<(String, String, String)> = out
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(" - ")?;
            let f: Vec<&str> = a.split(' ').collect();
            let opts = f.get(5)?.split(',').next()?.to_string();
            Some((f.get(4)?.to_string(), opts, b.split(' ').next()?.to_string()))
        })
        .filter(|(t, _, _)| t != "/proc")
        .collect();
    seen.sort();
    let targets: Vec<(&str, &str)> = seen.iter().map(|(t, o, _)| (t.as_str(), o.as_str())).collect();
    assert_eq!(
        targets,
        vec![("/", "rw"), ("/dev", "rw"), ("/run", "rw"), ("/sysroot", "rw"), ("/usr", "ro"), ("/var", "rw")],
        "{out}"
    );
    assert!(seen.iter().any(|(t, _, ty)| t == "/run" && ty == "tmpfs"), "{seen:?}");
    // /var was the stateroot's, /etc the deployment's, and the record names
    // the deployment; the physical root's own /run was not written.
    let var = root.join("ostree/deploy/testos/var");
    assert!(var.join("probe").exists() && dep.join("etc/probe").exists());
    use std::os::unix::fs::MetadataExt;
    let b = treeboot::formats::runstate::Booted::parse(&std::fs::read(var.join("booted")).unwrap()).unwrap();
    let m = std::fs::metadata(&dep).unwrap();
    assert_eq!(b.backing_root_device_inode, Some((m.dev(), m.ino())));
    assert!(!root.join("run/ostree-booted").exists());
    drop(s);
}

#[test]
fn pid1_mode_failure_names_the_cause_and_changes_nothing() {
    let pr = static_prepare_root();
    let (_s, root, _cmdline) = deployed("pid1bad");
    std::fs::write(root.join("cmdline"), "root=LABEL=root quiet\n").unwrap();
    let before = snapshot(&root);
    let (code, out, err) = boot_as_pid1(&root, &pr, "");
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("no ostree= argument") && err.contains("PID 1"), "{err}");
    assert_unchanged("a failed PID 1 prepare-root", &before, &root);
}
