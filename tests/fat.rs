//! The deployment list as a directory (`boot/loader/`), the layout of a
//! FAT /boot that systemd-boot reads (docs/fat-boot.md). The host has no
//! vfat, so these run on its own file system with `boot/loader/` made
//! first, as `bootctl install` leaves it; the layout follows what `loader`
//! is. Real FAT is the boot suite's (kola-tests/14-fat-lost-writes.sh and
//! the trixie-uefi-sdboot platform).

mod common;
use common::*;
use std::path::Path;

fn versions(root: &Path) -> Vec<String> {
    status_json(root)["deployments"].as_array().unwrap().iter().map(|d| d["version"].as_str().unwrap().to_string()).collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

/// A sysroot whose /boot has systemd-boot's `loader/`: its settings, its
/// random seed and another system's entry, which every swap must keep.
fn esp_sysroot(s: &Scratch) -> std::path::PathBuf {
    let root = sysroot_with_commits(s);
    write(&root.join("boot/loader/loader.conf"), "timeout 3\nconsole-mode keep\n");
    write(&root.join("boot/loader/random-seed"), "seed");
    write(&root.join("boot/loader/entries/memtest86+.conf"), "title Memtest86+\nefi /memtest86+/memtest.efi\n");
    root
}

#[test]
fn deploy_rollback_and_cleanup_keep_a_directory_list() {
    let s = Scratch::new("fat-lifecycle");
    let root = esp_sysroot(&s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    let boot = root.join("boot");
    assert!(boot.join("loader").is_dir() && !boot.join("loader").is_symlink(), "loader stays a directory");
    assert_eq!(std::fs::read_to_string(boot.join("loader/ostree-bootversion")).unwrap(), "1\n");
    run(tb(&root).args(["deploy", "testos/v3"]));
    assert_eq!(std::fs::read_to_string(boot.join("loader/ostree-bootversion")).unwrap(), "0\n");
    assert_eq!(versions(&root), ["3.0", "1.0"]);
    assert_eq!(names(&boot.join("loader/entries")), ["memtest86+.conf", "ostree-1.conf", "ostree-2.conf"]);
    let e = std::fs::read_to_string(boot.join("loader/entries/ostree-2.conf")).unwrap();
    assert!(e.contains("ostree=/ostree/boot.0/testos/") && e.contains("\nlinux /ostree/testos-"), "{e}");
    // Nothing but the list and the kernels: no symlinks (FAT has none), no
    // leftovers.
    assert_eq!(names(&boot), ["loader", "ostree"]);
    assert_eq!(names(&boot.join("loader")), ["entries", "loader.conf", "ostree-bootversion", "random-seed"]);
    assert_eq!(std::fs::read_to_string(boot.join("loader/loader.conf")).unwrap(), "timeout 3\nconsole-mode keep\n");
    let st = status_json(&root);
    assert_eq!(st["loader_dir"], "boot/loader");
    assert_eq!(st["deployments"][0]["entry_path"], "boot/loader/entries/ostree-2.conf");
    let v = run(tb(&root).arg("verify"));
    assert!(!v.contains("note:"), "{v}");

    run(tb(&root).arg("rollback"));
    assert_eq!(versions(&root), ["1.0", "3.0"]);
    assert_eq!(names(&boot.join("loader/entries")), ["memtest86+.conf", "ostree-1.conf", "ostree-2.conf"]);
    run(tb(&root).args(["undeploy", "1"]));
    assert_eq!(versions(&root), ["1.0"]);
    // v3's kernel (another bootcsum) went with it.
    assert_eq!(names(&boot.join("ostree")).len(), 1, "{:?}", names(&boot.join("ostree")));
    assert!(boot.join("loader/entries/memtest86+.conf").is_file());
    // libostree cannot read this layout (its boot/loader is a symlink).
    let o = ostree_admin(&root).arg("status").output().unwrap();
    assert!(!o.status.success(), "ostree admin status read a directory list: {}", String::from_utf8_lossy(&o.stdout));
}

/// What an interrupted swap leaves: a list half built in `loader.new`
/// (no `ostree-bootversion` yet) is noted by verify and removed by the
/// next swap or by cleanup; the live list is untouched.
#[test]
fn an_interrupted_swap_leaves_a_list_that_cleanup_removes() {
    let s = Scratch::new("fat-leftover");
    let root = esp_sysroot(&s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    let before = std::fs::read_dir(root.join("boot/loader/entries")).unwrap().count();
    write(&root.join("boot/loader.new/entries/ostree-1.conf"), "title half writ");
    let v = run(tb(&root).arg("verify"));
    assert!(v.contains("boot/loader.new: left by an interrupted run"), "{v}");
    let out = run(tb(&root).args(["cleanup", "--json"]));
    assert!(out.contains("boot/loader.new"), "{out}");
    assert!(!root.join("boot/loader.new").exists());
    assert_eq!(std::fs::read_dir(root.join("boot/loader/entries")).unwrap().count(), before);
    // And when a swap meets it, it goes first.
    write(&root.join("boot/loader.new/junk"), "x");
    run(tb(&root).args(["deploy", "testos/v2"]));
    assert!(!root.join("boot/loader.new").exists());
    assert_eq!(versions(&root), ["2.0", "1.0"]);
}

/// A damaged list: a junk `ostree-bootversion` is named, and a write
/// refuses rather than guessing which `ostree/boot.N` is live.
#[test]
fn a_junk_bootversion_file_is_named() {
    let s = Scratch::new("fat-junk");
    let root = esp_sysroot(&s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    write(&root.join("boot/loader/ostree-bootversion"), "7\n");
    let e = run_fail(tb(&root).arg("status"));
    assert!(e.contains("boot/loader/ostree-bootversion") && e.contains("\"7\""), "{e}");
    let before = snapshot(&root);
    let e = run_fail(tb(&root).args(["deploy", "testos/v2"]));
    assert!(e.contains("ostree-bootversion"), "{e}");
    assert_unchanged("a refused deploy", &before, &root);
    let o = tb(&root).arg("verify").output().unwrap();
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success() && v.contains("ostree-bootversion") && v.contains("not 0 or 1"), "{v}");
}
