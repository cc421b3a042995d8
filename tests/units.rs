//! The systemd units in systemd/ pass `systemd-analyze verify`, and the
//! /boot hold of the finalize unit really holds /boot.

mod common;
use common::*;
use std::process::Command;

#[test]
fn units_verify() {
    let s = Scratch::new("units");
    let bin = std::path::Path::new(treeboot_bin()).parent().unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd")).unwrap() {
        let p = e.unwrap().path();
        if !matches!(p.extension().and_then(|x| x.to_str()), Some("service" | "timer")) {
            continue;
        }
        // systemd-analyze checks that ExecStart= binaries exist: point the
        // copies at the binaries just built.
        let text = std::fs::read_to_string(&p).unwrap()
            .replace("/usr/bin/treeboot", &bin.join("treeboot").display().to_string())
            .replace("/usr/lib/treeboot/", &format!("{}/", bin.display()));
        let dst = s.join(p.file_name().unwrap().to_str().unwrap());
        std::fs::write(&dst, text).unwrap();
        n += 1;
    }
    assert!(n >= 3);
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(std::fs::read_dir(&s.path).unwrap().map(|e| e.unwrap().path()))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify:\n{err}");
}

#[test]
fn hold_keeps_boot_busy_until_terminated() {
    let s = Scratch::new("hold");
    let root = sysroot_with_commits(&s);
    let mut child = tb(&root).args(["finalize-staged", "--hold"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", child.id())).unwrap();
    assert_eq!(cwd, root.join("boot"));
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success());
}
