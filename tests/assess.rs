//! Boot assessment on a GRUB sysroot, in directories and private mount
//! namespaces: GRUB's counter in grubenv (set here with grub-editenv, as
//! GRUB's `save_env` leaves it), status, the rewrite rules, the permanent
//! rollback of `assess-boot`, blessing. The boot suite runs the same on a
//! real GRUB (kola-tests/11-assess-panic, 12-assess-check).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dep(root: &Path, i: usize) -> serde_json::Value {
    status_json(root)["deployments"][i].clone()
}

/// A GRUB sysroot (a /boot/grub directory) with boot counting on (2 tries):
/// v1 deployed and blessed, then v2 deployed, counted.
fn counted_update(s: &Scratch) -> PathBuf {
    let root = sysroot_with_commits(s);
    std::fs::create_dir_all(root.join("boot/grub")).unwrap();
    let config = root.join("ostree/repo/config");
    let plain = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{plain}\n[sysroot]\nboot-counting-tries=2\n")).unwrap();
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    run(tb(&root).args(["bless", "0"]));
    run(tb(&root).args(["deploy", "testos/v2"]));
    assert_eq!(entries(&root), ["ostree-1.conf", "ostree-2+2.conf"]);
    root
}

fn grubenv(root: &Path) -> PathBuf {
    root.join("boot/grub/grubenv")
}

fn editenv(root: &Path, args: &[&str]) -> String {
    run(Command::new("grub-editenv").arg(grubenv(root)).args(args))
}

fn var(root: &Path, i: usize) -> String {
    let d = dep(root, i);
    let csum = d["checksum"].as_str().unwrap();
    format!("treeboot_tries_{}_{}", &csum[..16], d["serial"])
}

/// What GRUB reads: the generated menu counts down the update's variable,
/// and the block it saves into exists before the entry is live.
#[test]
fn the_menu_counts_in_grubenv() {
    let s = Scratch::new("assess-menu");
    let root = counted_update(&s);
    let env = std::fs::read(grubenv(&root)).unwrap();
    assert_eq!(env.len(), 1024, "GRUB's save_env writes in place: exactly 1024 bytes");
    let v = var(&root, 0);
    let cfg = std::fs::read_to_string(root.join("boot/loader/grub.cfg")).unwrap();
    assert!(cfg.contains(&format!("load_env {v}")) && cfg.contains(&format!("save_env {v}")), "{cfg}");
    // The counted entry is the first; the blessed one is not counted.
    assert_eq!(cfg.matches("save_env").count(), 1);
    let check = Command::new("grub-script-check").arg(root.join("boot/loader/grub.cfg")).output().unwrap();
    assert!(check.status.success(), "grub-script-check: {}", String::from_utf8_lossy(&check.stderr));
    // Debian's own variables in the block are kept by every rewrite.
    editenv(&root, &["set", "recordfail=1"]);
    run(tb(&root).args(["kargs", "--append", "quiet"]));
    assert!(editenv(&root, &["list"]).contains("recordfail=1"));
}

/// Each try GRUB took shows in status; a rewrite of the list (here a
/// kargs edit) writes the count into the entry's name and never resets it.
#[test]
fn grub_tries_show_and_survive_rewrites() {
    let s = Scratch::new("assess-tries");
    let root = counted_update(&s);
    let v = var(&root, 0);
    assert_eq!((dep(&root, 0)["boot_tries_left"].as_u64(), dep(&root, 0)["boot_tries_done"].as_u64()), (Some(2), Some(0)));
    assert_eq!(dep(&root, 0)["boot_assessment"], "assessing");
    assert_eq!(dep(&root, 1)["boot_assessment"], "blessed");
    editenv(&root, &["set", &format!("{v}=1")]);
    assert_eq!((dep(&root, 0)["boot_tries_left"].as_u64(), dep(&root, 0)["boot_tries_done"].as_u64()), (Some(1), Some(1)));
    assert!(run(tb(&root).arg("status")).contains("    Boot tries: 1 left, 1 failed (being assessed)\n"));
    run(tb(&root).args(["kargs", "--deployment", "0", "--append", "quiet"]));
    assert_eq!(entries(&root), ["ostree-1.conf", "ostree-2+1-1.conf"], "the count is in the name now");
    assert_eq!((dep(&root, 0)["boot_tries_left"].as_u64(), dep(&root, 0)["boot_tries_done"].as_u64()), (Some(1), Some(1)), "not counted twice");
    editenv(&root, &["set", &format!("{v}=0")]);
    assert_eq!(dep(&root, 0)["boot_assessment"], "failed");
    assert!(run(tb(&root).arg("status")).contains("    Boot tries: 0 left, 2 failed (boot assessment failed)\n"));
    run(tb(&root).arg("verify"));
    // libostree reads the same list.
    assert_eq!(ostree_status_names(&root), treeboot_status_names(&root));
}

/// The boot after GRUB fell back (v1 booted, v2 spent): assess-boot makes
/// the rollback the default, keeps v2 marked bad with why and when; a
/// second run changes nothing; bless forgets the failure.
#[test]
fn assess_boot_makes_the_rollback_permanent() {
    let s = Scratch::new("assess-rollback");
    let root = counted_update(&s);
    let v = var(&root, 0);
    let name = format!("{}.{}", dep(&root, 0)["checksum"].as_str().unwrap(), dep(&root, 0)["serial"]);
    editenv(&root, &["set", &format!("{v}=0")]);
    let state = s.join("state");
    write(&state.join(format!("health-failed/{name}")), "2026-12-03T01:02:03Z\nrequired check /usr/lib/greenboot/check/required.d/50-app exited with status 1\n");
    let (ok, out, err) = in_booted_namespace(&root, 1, &format!("$TB --sysroot $S --json assess-boot --state-dir {}\n", state.display()));
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["outcome"], "rolled-back", "{j}");
    assert_eq!(j["failed"][0]["deployment"], name.as_str());
    assert_eq!(j["failed"][0]["tries"], 2);
    assert_eq!(dep(&root, 0)["version"], "1.0", "the rollback is the default");
    let d = dep(&root, 1);
    assert_eq!((d["version"].as_str(), d["boot_assessment"].as_str()), (Some("2.0"), Some("failed")));
    assert_eq!(d["boot_failure"]["tries"], 2);
    assert_eq!(d["boot_failure"]["time"], "2026-12-03T01:02:03Z");
    assert!(d["boot_failure"]["reason"].as_str().unwrap().contains("50-app exited with status 1"), "{d}");
    assert_eq!(entries(&root), ["ostree-1+0-2.conf", "ostree-2.conf"], "the failed one is second, spent");
    assert!(!state.join(format!("health-failed/{name}")).exists(), "the reason moved into the origin");
    let origin = std::fs::read_to_string(root.join(d["origin_path"].as_str().unwrap())).unwrap();
    assert!(origin.contains("[libostree-transient]\ntreeboot-boot-failed=2026-12-03T01:02:03Z\n"), "{origin}");
    let text = run(tb(&root).arg("status"));
    assert!(text.contains("Boot assessment failed at 2026-12-03T01:02:03Z after 2 tries: tries ran out; the last failed boot: required check"), "{text}");
    run(tb(&root).arg("verify"));
    assert_eq!(ostree_status_names(&root), treeboot_status_names(&root));
    // Booted the default now: nothing more.
    let before = snapshot(&root);
    let (ok, out, err) = in_booted_namespace(&root, 0, "$TB --sysroot $S --json assess-boot --state-dir /nonexistent\n");
    assert!(ok, "{err}");
    assert!(out.contains("\"booted-default\""), "{out}");
    assert_unchanged("a second assess-boot", &before, &root);
    // A new deployment of the failed commit is said; the record is not inherited.
    let again = s.join("again");
    copy_sysroot(&root, &again);
    let o = tb(&again).args(["deploy", "testos/v2"]).output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("whose boot assessment failed (2 failed tries"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dep(&again, 0)["boot_failure"].is_null(), "the new deployment starts clean");
    assert_eq!(dep(&again, 0)["boot_tries_left"], 2);
    // Making the failed one the default again is allowed, with a word: its
    // entry is spent, so the boot loader would pass it over.
    let again2 = s.join("again2");
    copy_sysroot(&root, &again2);
    let o = tb(&again2).args(["set-default", "1"]).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("failed its boot assessment (2 tries: tries ran out") && err.contains("spent") && err.contains("`treeboot bless 0` makes it boot"), "{err}");
    // The admin blesses it: counter and record gone, its grubenv variable too.
    run(tb(&root).args(["bless", "1"]));
    let d = dep(&root, 1);
    assert!(d["boot_failure"].is_null() && d["boot_assessment"] == "blessed", "{d}");
    assert!(!editenv(&root, &["list"]).contains(&v), "the blessed deployment's counter left grubenv");
}

/// Booted by choice (the default still has tries): nothing changes. And
/// without a counted default, or not booted, neither.
#[test]
fn assess_boot_leaves_a_chosen_boot_alone() {
    let s = Scratch::new("assess-choice");
    let root = counted_update(&s);
    editenv(&root, &["set", &format!("{}=1", var(&root, 0))]);
    let before = snapshot(&root);
    let (ok, out, err) = in_booted_namespace(&root, 1, "$TB --sysroot $S assess-boot --state-dir /nonexistent\n");
    assert!(ok, "{err}");
    assert!(out.contains("other than the default was chosen at boot: nothing changed"), "{out}");
    assert_unchanged("assess-boot of a chosen boot", &before, &root);
    let out = run(tb(&root).arg("assess-boot"));
    assert!(out.contains("Not booted from a deployment"), "{out}");
    assert_unchanged("assess-boot, not booted", &before, &root);
}

/// health-check --reboot-on-failure records why only for a counted boot,
/// and says why it does not reboot otherwise.
#[test]
fn a_failed_check_on_an_uncounted_boot_does_not_reboot() {
    let s = Scratch::new("assess-health");
    let root = counted_update(&s);
    let checks = s.join("checks");
    write(&checks.join("etc/greenboot/check/required.d/10-fail"), "#!/bin/sh\nexit 3\n");
    run(Command::new("chmod").arg("755").arg(checks.join("etc/greenboot/check/required.d/10-fail")));
    let state = s.join("state");
    // Booted v1 (blessed): a failure is said, no reboot, nothing recorded.
    let (ok, _out, err) = in_booted_namespace(&root, 1, &format!(
        "$TB --sysroot $S health-check --root {} --reboot-on-failure --state-dir {}\n",
        checks.display(),
        state.display()
    ));
    assert!(!ok, "unhealthy: a failure exit");
    assert!(err.contains("is not being assessed (blessed, or boot counting off): not rebooting"), "{err}");
    assert!(!state.join("health-failed").exists());
}
