//! `treeboot health-check` on a root directory: required, wanted, green and
//! red scripts in greenboot's layout and treeboot's, a hanging check
//! stopped at its timeout, scripts others could change refused.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn script(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    write(&p, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn check(root: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let o = Command::new(treeboot_bin()).args(["--json", "health-check", "--root"]).arg(root).args(args).output().unwrap();
    let doc = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    (o.status.code().unwrap(), doc, String::from_utf8_lossy(&o.stderr).into_owned())
}

fn outcomes(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["scripts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let o = &s["outcome"];
            let word = o.as_str().map(String::from).unwrap_or_else(|| o.as_object().unwrap().keys().next().unwrap().clone());
            (s["path"].as_str().unwrap().to_string(), word)
        })
        .collect()
}

#[test]
fn healthy_then_red_when_a_required_check_fails() {
    let s = Scratch::new("health");
    let r = s.join("root");
    let marks = s.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    script(&r, "usr/lib/greenboot/check/required.d/10-disk.sh", "echo disk ok");
    script(&r, "etc/treeboot/check/required.d/20-app", "exit 0");
    script(&r, "etc/greenboot/check/wanted.d/30-optional.sh", "echo not great >&2; exit 3");
    script(&r, "etc/greenboot/green.d/50-green.sh", &format!("touch {}/green", marks.display()));
    script(&r, "usr/lib/greenboot/red.d/50-red.sh", &format!("touch {}/red", marks.display()));
    let (code, doc, _) = check(&r, &[]);
    assert_eq!(code, 0, "a failing wanted check is not fatal: {doc}");
    assert_eq!(doc["healthy"], true);
    assert_eq!(
        outcomes(&doc),
        [
            ("/usr/lib/greenboot/check/required.d/10-disk.sh".into(), "passed".into()),
            ("/etc/treeboot/check/required.d/20-app".into(), "passed".into()),
            ("/etc/greenboot/check/wanted.d/30-optional.sh".into(), "failed".into()),
            ("/etc/greenboot/green.d/50-green.sh".into(), "passed".into()),
        ]
    );
    assert_eq!(doc["scripts"][0]["output"], "disk ok\n");
    assert_eq!(doc["scripts"][2]["outcome"]["failed"]["exit_code"], 3);
    assert!(marks.join("green").exists() && !marks.join("red").exists());

    // An /etc script replaces the image's of the same name; it fails.
    std::fs::remove_file(marks.join("green")).unwrap();
    script(&r, "etc/greenboot/check/required.d/10-disk.sh", "echo disk full >&2; exit 1");
    let (code, doc, _) = check(&r, &[]);
    assert_eq!(code, 1);
    assert_eq!(doc["healthy"], false);
    assert!(marks.join("red").exists() && !marks.join("green").exists(), "red scripts run, not green");
    let human = Command::new(treeboot_bin()).args(["health-check", "--root"]).arg(&r).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&human.stdout), String::from_utf8_lossy(&human.stderr));
    assert!(out.contains("Unhealthy: 1 of 2 required check(s) failed; 1 red script(s) run"), "{out}");
    assert!(err.contains("/etc/greenboot/check/required.d/10-disk.sh: disk full"), "its output is shown: {err}");
    assert!(err.contains("warning: required check /etc/greenboot/check/required.d/10-disk.sh failed with exit status 1"), "{err}");
}

#[test]
fn hanging_checks_stop_and_unsafe_ones_are_refused() {
    let s = Scratch::new("health-hang");
    let r = s.join("root");
    // The check and a child it started both hang.
    script(&r, "etc/greenboot/check/required.d/10-hang.sh", "sleep 3607 & sleep 3607");
    let t = std::time::Instant::now();
    let (code, doc, _) = check(&r, &["--timeout", "1"]);
    assert!(t.elapsed().as_secs() < 10, "stopped at the timeout");
    assert_eq!(code, 1);
    assert_eq!(outcomes(&doc), [("/etc/greenboot/check/required.d/10-hang.sh".into(), "timed-out".into())]);
    let leftover = Command::new("pgrep").args(["-f", "sleep 3607"]).output().unwrap();
    assert!(leftover.stdout.is_empty(), "the check's process group was stopped");

    std::fs::remove_file(r.join("etc/greenboot/check/required.d/10-hang.sh")).unwrap();
    script(&r, "etc/greenboot/check/required.d/20-open.sh", "exit 0");
    std::fs::set_permissions(r.join("etc/greenboot/check/required.d/20-open.sh"), std::fs::Permissions::from_mode(0o757)).unwrap();
    let (code, doc, _) = check(&r, &[]);
    assert_eq!(code, 1, "a refused required check fails the boot");
    assert_eq!(doc["scripts"][0]["outcome"]["refused"]["reason"], "the script is writable by others (mode 0757)");
    std::fs::set_permissions(r.join("etc/greenboot/check/required.d/20-open.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(r.join("etc/greenboot/check/required.d/20-open.sh"), Some(65534), None).unwrap();
    let (_, doc, _) = check(&r, &[]);
    assert_eq!(doc["scripts"][0]["outcome"]["refused"]["reason"], "the script is owned by uid 65534, not root");

    // Nothing to check: healthy.
    let empty = s.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, doc, _) = check(&empty, &[]);
    assert_eq!((code, doc["healthy"].as_bool()), (0, Some(true)));
}
