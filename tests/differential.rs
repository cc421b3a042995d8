//! Differential tests: the same operations run with Debian's `ostree admin`
//! on one copy of a sysroot and with treeboot on another must give the same
//! trees (deployment names, origins, boot/loader, entries, ostree/boot.N
//! links, kernel directories, merged /etc, refs).

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// An operation spelled for each tool.
struct Op {
    what: &'static str,
    ostree: Vec<String>,
    treeboot: Vec<String>,
}

fn op(what: &'static str, ostree: &[&str], treeboot: &[&str]) -> Op {
    Op {
        what,
        ostree: ostree.iter().map(|s| s.to_string()).collect(),
        treeboot: treeboot.iter().map(|s| s.to_string()).collect(),
    }
}

/// Local /etc edits of the default deployment, applied identically to both.
fn edit_etc(sysroot: &Path) {
    let etc = deployment_dir(sysroot, 0).join("etc");
    write(&etc.join("motd"), "local motd\n");
    write(&etc.join("local.conf"), "added by the admin\n");
    std::fs::remove_file(etc.join("removeme")).unwrap();
    std::fs::create_dir_all(etc.join("private/deeper")).unwrap();
    std::fs::set_permissions(etc.join("private"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(etc.join("private/deeper"), std::fs::Permissions::from_mode(0o700)).unwrap();
    write(&etc.join("private/deeper/secret"), "s3cret\n");
    std::fs::set_permissions(etc.join("private/deeper/secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(etc.join("hostname"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(etc.join("ssh/sshd_config"), Some(0), Some(4)).unwrap();
    std::fs::remove_file(etc.join("localtime")).unwrap();
    std::os::unix::fs::symlink("../usr/share/zoneinfo/Europe/Paris", etc.join("localtime")).unwrap();
}

/// treeboot asked for the entry names Debian bookworm's ostree 2022.7
/// writes (before 2024.5), to compare trees with it.
fn tb_as_2022_7(root: &Path) -> Command {
    let mut c = tb(root);
    c.env("OSTREE_SYSROOT_OPTS", "bootloader-naming-1");
    c
}

fn compare(step: &str, a: &Path, b: &Path) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    let d = snapshot_diff(&sa, &sb);
    assert!(d.is_empty(), "after {step}, the trees differ:\n{}", d.join("\n"));
}

#[test]
fn same_tree_as_ostree_admin_through_a_lifecycle() {
    let s = Scratch::new("diff");
    let base = sysroot_with_commits(&s);
    // A version that PRETTY_NAME ("Test OS 1") already contains.
    commit_tree(&s, &base.join("ostree/repo"), "testos/one", "A", "one", "1", |_| {});
    let (a, b) = (s.join("by-ostree"), s.join("by-treeboot"));
    copy_sysroot(&base, &a);
    copy_sysroot(&base, &b);

    let steps = vec![
        op("first deploy", &["deploy", "--os=testos", "--karg=root=LABEL=root", "--karg-append=quiet", "testos/v1"], &["deploy", "--os", "testos", "--karg", "root=LABEL=root", "--karg-append", "quiet", "testos/v1"]),
        op("edit /etc", &[], &[]),
        op("second deploy (merge /etc)", &["deploy", "--os=testos", "testos/v2"], &["deploy", "--os", "testos", "testos/v2"]),
        op("deploy --not-as-default (new kernel)", &["deploy", "--os=testos", "--not-as-default", "testos/v3"], &["deploy", "--os", "testos", "--not-as-default", "testos/v3"]),
        op("pin 1", &["pin", "1"], &["pin", "1"]),
        op("deploy again keeps the pinned one", &["deploy", "--os=testos", "testos/v1"], &["deploy", "--os", "testos", "testos/v1"]),
        op("deploy the same commit twice (serial 1)", &["deploy", "--os=testos", "--retain", "testos/v1"], &["deploy", "--os", "testos", "--retain", "testos/v1"]),
        op("undeploy 2", &["undeploy", "2"], &["undeploy", "2"]),
        op("unpin", &["pin", "--unpin", "1"], &["pin", "--unpin", "1"]),
        op("os-init other", &["os-init", "other"], &["os-init", "other"]),
        op("second stateroot, not as default", &["deploy", "--os=other", "--not-as-default", "testos/v2"], &["deploy", "--os", "other", "--not-as-default", "testos/v2"]),
        op("deploy --karg-none", &["deploy", "--os=testos", "--karg-none", "testos/v3"], &["deploy", "--os", "testos", "--karg-none", "testos/v3"]),
        op("version already in the title", &["deploy", "--os=testos", "testos/one"], &["deploy", "--os", "testos", "testos/one"]),
        op("cleanup", &["cleanup"], &["cleanup"]),
    ];
    for st in &steps {
        if st.what == "edit /etc" {
            edit_etc(&a);
            edit_etc(&b);
        } else {
            run(ostree_admin(&a).args(&st.ostree));
            run(tb_as_2022_7(&b).args(&st.treeboot));
        }
        compare(st.what, &a, &b);
        assert_eq!(ostree_status_names(&a), ostree_status_names(&b), "after {}: ostree admin status differs", st.what);
        assert_eq!(ostree_status_names(&b), treeboot_status_names(&b), "after {}: treeboot and ostree disagree on the order", st.what);
    }
}

#[test]
fn ostree_reads_treeboot_and_treeboot_manages_ostree() {
    let s = Scratch::new("interop");
    let root = sysroot_with_commits(&s);
    // ostree writes, treeboot continues, ostree reads, and back again.
    run(ostree_admin(&root).args(["deploy", "--os=testos", "--karg=root=LABEL=root", "testos/v1"]));
    run(tb(&root).args(["deploy", "testos/v2"]));
    let st = status_json(&root);
    assert_eq!(st["deployments"].as_array().unwrap().len(), 2);
    assert_eq!(st["deployments"][0]["version"], "2.0");
    assert_eq!(st["deployments"][1]["version"], "1.0");
    assert_eq!(st["deployments"][0]["kargs"], "root=LABEL=root", "kernel arguments are inherited");
    assert_eq!(ostree_status_names(&root), treeboot_status_names(&root));
    run(ostree_admin(&root).args(["deploy", "--os=testos", "testos/v3"]));
    run(tb(&root).args(["undeploy", "1"]));
    assert_eq!(ostree_status_names(&root), treeboot_status_names(&root));
    let out = run(ostree_admin(&root).arg("status"));
    assert!(out.contains("Version: 3.0"), "{out}");
    // The lock is the same one: ostree admin must wait while treeboot holds it.
    run(tb(&root).arg("cleanup"));
}

#[test]
fn kargs_edit_matches_ostree_placement() {
    let s = Scratch::new("kargs");
    let base = sysroot_with_commits(&s);
    run(tb(&base).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    let (a, b) = (s.join("a"), s.join("b"));
    copy_sysroot(&base, &a);
    copy_sysroot(&base, &b);
    run(ostree_admin(&a).args(["kargs", "edit-in-place", "--append-if-missing=console=ttyS0,115200"]));
    run(tb(&b).args(["kargs", "--append", "console=ttyS0,115200"]));
    let opts = |root: &Path| {
        let e = std::fs::read_dir(root.join("boot/loader/entries")).unwrap().next().unwrap().unwrap().path();
        std::fs::read_to_string(e).unwrap().lines().find(|l| l.starts_with("options ")).unwrap().replace("boot.0", "boot.N").replace("boot.1", "boot.N")
    };
    assert_eq!(opts(&a), opts(&b));
    assert_eq!(ostree_status_names(&b), treeboot_status_names(&b));
    let _ = Command::new("true");
}

/// Kernel layouts libostree reads beyond the plain one: a `vmlinuz` that is
/// a symlink inside the tree, an initramfs named `initramfs`, the FIPS
/// `.vmlinuz.hmac`. Deployed by each tool: the same /boot.
#[test]
fn kernel_layouts_match_ostree() {
    let s = Scratch::new("klayout");
    let base = sysroot_with_commits(&s);
    commit_tree(&s, &base.join("ostree/repo"), "testos/fips", "F", "fips", "5.0", |t| {
        let k = t.join("usr/lib/modules/6.1.0-test");
        std::fs::rename(k.join("vmlinuz"), t.join("usr/lib/vmlinuz-real")).unwrap();
        std::os::unix::fs::symlink("../../vmlinuz-real", k.join("vmlinuz")).unwrap();
        std::fs::rename(k.join("initramfs.img"), k.join("initramfs")).unwrap();
        write(&k.join(".vmlinuz.hmac"), "hmac of the kernel\n");
    });
    let (a, b) = (s.join("by-ostree"), s.join("by-treeboot"));
    copy_sysroot(&base, &a);
    copy_sysroot(&base, &b);
    run(ostree_admin(&a).args(["deploy", "--os=testos", "--karg=root=LABEL=root", "testos/fips"]));
    run(tb_as_2022_7(&b).args(["deploy", "--os", "testos", "--karg", "root=LABEL=root", "testos/fips"]));
    // One known difference, filtered here and nowhere else: libostree
    // (2022.7, and install_into_boot in today's ostree-sysroot-deploy.c)
    // hardlinks the symlink itself into /boot when /boot is the same file
    // system, which leaves a relative link that dangles there (and with a
    // separate /boot it opens the source with O_NOFOLLOW and fails).
    // treeboot copies the kernel the link points to.
    let (mut sa, mut sb) = (snapshot(&a), snapshot(&b));
    let kernel_key = sa.keys().find(|k| k.starts_with("boot/ostree/testos-") && k.ends_with("/vmlinuz-6.1.0-test")).unwrap().clone();
    assert_eq!(sa.remove(&kernel_key).unwrap(), "link -> ../../vmlinuz-real", "ostree's /boot has the dangling link");
    assert!(sb.remove(&kernel_key).unwrap().starts_with("file 644 0:0 \"kernel F"), "treeboot's /boot has the kernel");
    let d = snapshot_diff(&sa, &sb);
    assert!(d.is_empty(), "the trees differ beyond the kernel link:\n{}", d.join("\n"));
    let kdir = std::fs::read_dir(b.join("boot/ostree")).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&kdir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, [".vmlinuz-6.1.0-test.hmac", "initramfs-6.1.0-test.img", "vmlinuz-6.1.0-test"]);
    assert!(std::fs::symlink_metadata(kdir.join("vmlinuz-6.1.0-test")).unwrap().is_file(), "/boot holds the kernel, not a link");
    run(tb(&b).arg("verify"));
}

/// A commit without an initramfs boots through prepare-root as init=:
/// libostree writes `init=/ostree/boot.N/.../usr/lib/ostree/ostree-prepare-root`
/// and rewrites it when the boot version changes; so does treeboot.
#[test]
fn a_kernel_without_initramfs_boots_prepare_root_as_init() {
    let s = Scratch::new("noinitrd");
    let base = sysroot_with_commits(&s);
    let repo = base.join("ostree/repo");
    let strip = |t: &Path| {
        std::fs::remove_file(t.join("usr/lib/modules/6.1.0-test/initramfs.img")).unwrap();
        write(&t.join("usr/lib/ostree/ostree-prepare-root"), "#!prepare-root\n");
    };
    commit_tree(&s, &repo, "testos/bare", "B", "bare", "6.0", strip);
    commit_tree(&s, &repo, "testos/bare2", "B", "bare2", "6.1", strip);
    let (a, b) = (s.join("by-ostree"), s.join("by-treeboot"));
    copy_sysroot(&base, &a);
    copy_sysroot(&base, &b);
    for (what, r) in [("deploy without initramfs", "testos/bare"), ("again: the boot version flips", "testos/bare2")] {
        run(ostree_admin(&a).args(["deploy", "--os=testos", "--karg=root=LABEL=root", r]));
        run(tb_as_2022_7(&b).args(["deploy", "--os", "testos", "--karg", "root=LABEL=root", r]));
        compare(what, &a, &b);
        run(tb(&b).arg("verify"));
    }
    // Back to a kernel with an initramfs. One known difference, filtered
    // here only: libostree (2022.7, and install_deployment_kernel today)
    // carries the old init= over into the new entry, pointing at the
    // previous deployment's prepare-root through a boot.N that no longer
    // exists; systemd in the initramfs would exec it after switch-root.
    // treeboot drops an init= of that form when there is an initramfs.
    run(ostree_admin(&a).args(["deploy", "--os=testos", "testos/v1"]));
    run(tb_as_2022_7(&b).args(["deploy", "--os", "testos", "testos/v1"]));
    let (mut sa, sb) = (snapshot(&a), snapshot(&b));
    let key = "boot/loader.1/entries/ostree-2-testos.conf".to_string();
    let theirs = sa.get(&key).unwrap().clone();
    let stale = theirs.split([' ', '\n']).find(|w| w.starts_with("init=/ostree/boot.0/")).expect("ostree keeps the stale init=").to_string();
    sa.insert(key.clone(), theirs.replace(&format!(" {stale}"), ""));
    let d = snapshot_diff(&sa, &sb);
    assert!(d.is_empty(), "the trees differ beyond the stale init=:\n{}", d.join("\n"));
    assert!(!sb[&key].contains("init="));
    run(tb(&b).arg("verify"));
    // Nothing to run as init: refused, nothing written.
    commit_tree(&s, &b.join("ostree/repo"), "testos/noinit", "N", "noinit", "7.0", |t| {
        std::fs::remove_file(t.join("usr/lib/modules/6.1.0-test/initramfs.img")).unwrap();
    });
    let before = snapshot(&b);
    let err = run_fail(tb(&b).args(["deploy", "--os", "testos", "testos/noinit"]));
    assert!(err.contains("has no initramfs") && err.contains("usr/lib/ostree/ostree-prepare-root"), "{err}");
    assert_unchanged("deploy without initramfs or prepare-root", &before, &b);
}

/// A `dtb/` directory of device trees (ostree#1900): part of the boot
/// checksum, copied whole into /boot, named by `fdtdir`, as libostree does.
#[test]
fn a_device_tree_directory_matches_ostree() {
    let s = Scratch::new("dtb");
    let base = sysroot_with_commits(&s);
    commit_tree(&s, &base.join("ostree/repo"), "testos/dtb", "D", "dtb", "8.0", |t| {
        let d = t.join("usr/lib/modules/6.1.0-test/dtb");
        write(&d.join("vendor/board-a.dtb"), "device tree a\n");
        write(&d.join("vendor/board-b.dtb"), "device tree b\n");
        write(&d.join("overlay.dtbo"), "overlay\n");
        std::os::unix::fs::symlink("vendor/board-a.dtb", d.join("default.dtb")).unwrap();
        std::fs::set_permissions(d.join("vendor"), std::fs::Permissions::from_mode(0o750)).unwrap();
    });
    let (a, b) = (s.join("by-ostree"), s.join("by-treeboot"));
    copy_sysroot(&base, &a);
    copy_sysroot(&base, &b);
    run(ostree_admin(&a).args(["deploy", "--os=testos", "--karg=root=LABEL=root", "testos/dtb"]));
    run(tb_as_2022_7(&b).args(["deploy", "--os", "testos", "--karg", "root=LABEL=root", "testos/dtb"]));
    compare("deploy with a dtb/ directory", &a, &b);
    let entry = std::fs::read_to_string(b.join("boot/loader/entries/ostree-1-testos.conf")).unwrap();
    assert!(entry.lines().last().unwrap().starts_with("fdtdir /ostree/testos-"), "{entry}");
    // The next deploy keeps it (its entry is rewritten for the new boot
    // version). Not compared: ostree 2022.7 copies the dtb/ directory again
    // for every deployment it lists and fails on its own symlink
    // ("Copying default.dtb: symlinkat: File exists").
    run(tb(&b).args(["deploy", "--os", "testos", "testos/v3"]));
    let entries: Vec<String> = std::fs::read_dir(b.join("boot/loader/entries")).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert_eq!(entries.iter().filter(|e| e.contains("\nfdtdir /ostree/testos-")).count(), 1, "{entries:?}");
    run(tb(&b).arg("verify"));
}
