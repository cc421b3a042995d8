//! `treeboot diff`: files of /usr and dpkg packages between two
//! deployments, as a person and a program read them.

mod common;
use common::*;
use std::path::Path;

const STATUS_V1: &str = "\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u5

Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1~deb12u2

Package: telnet
Status: install ok installed
Architecture: all
Version: 0.17+2.4-2

Package: vim
Status: install ok installed
Architecture: amd64
Version: 2:9.0.1378-2
";

const STATUS_V2: &str = "\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u5

Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.15-1~deb12u1

Package: curl
Status: install ok installed
Architecture: amd64
Version: 7.88.1-10+deb12u8

Package: vim
Status: install ok installed
Architecture: amd64
Version: 2:9.0.1378-1

Package: telnet
Status: deinstall ok config-files
Architecture: all
Version: 0.17+2.4-2
";

fn sysroot_with_packages(s: &Scratch, status_path: &str) -> std::path::PathBuf {
    let root = s.join("sysroot");
    run(std::process::Command::new(treeboot_bin()).arg("init-fs").arg(&root));
    run(tb(&root).args(["os-init", "testos"]));
    let repo = root.join("ostree/repo");
    commit_tree(s, &repo, "testos/v1", "A", "one", "1.0", |t: &Path| {
        write(&t.join(status_path), STATUS_V1);
        write(&t.join("usr/bin/telnet"), "telnet\n");
    });
    commit_tree(s, &repo, "testos/v2", "A", "two", "2.0", |t: &Path| {
        write(&t.join(status_path), STATUS_V2);
        write(&t.join("usr/bin/curl"), "curl\n");
    });
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    run(tb(&root).args(["deploy", "testos/v2"]));
    root
}

#[test]
fn packages_and_files_between_two_deployments() {
    let s = Scratch::new("diff");
    let root = sysroot_with_packages(&s, "var/lib/dpkg/status");
    // Not booted: from the previous deployment (1) to the default (0).
    let j: serde_json::Value = serde_json::from_str(&run(tb(&root).args(["diff", "--json"]))).unwrap();
    assert_eq!((j["from_index"].as_u64(), j["to_index"].as_u64()), (Some(1), Some(0)), "{j}");
    let p = &j["packages"];
    assert_eq!(p["database"], "dpkg");
    let names = |k: &str| p[k].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(names("upgraded"), ["openssl"]);
    assert_eq!(p["upgraded"][0]["from"], "3.0.11-1~deb12u2");
    assert_eq!(p["upgraded"][0]["to"], "3.0.15-1~deb12u1");
    assert_eq!(names("downgraded"), ["vim"], "2:9.0.1378-1 is older than -2");
    assert_eq!(names("added"), ["curl"]);
    assert_eq!(names("removed"), ["telnet"], "config-files only is not installed");
    let files: Vec<(String, String)> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap().to_string(), f["path"].as_str().unwrap().to_string()))
        .collect();
    for want in [("added", "/usr/bin/curl"), ("removed", "/usr/bin/telnet"), ("modified", "/usr/bin/hello"), ("modified", "/usr/etc/motd")] {
        assert!(files.contains(&(want.0.to_string(), want.1.to_string())), "{want:?} not in {files:?}");
    }
    assert!(!files.iter().any(|f| f.1.contains("modules")), "the same kernel is no change: {files:?}");

    let human = run(tb(&root).arg("diff"));
    assert!(human.contains("Upgraded:\n  openssl 3.0.11-1~deb12u2 -> 3.0.15-1~deb12u1\n"), "{human}");
    assert!(human.contains("Added:\n  curl 7.88.1-10+deb12u8\n"), "{human}");
    assert!(human.contains("Removed:\n  telnet 0.17+2.4-2\n"), "{human}");
    assert!(human.contains("Files in /usr: "), "{human}");
    assert!(!human.contains("/usr/bin/curl"), "files listed only with --verbose: {human}");
    assert!(run(tb(&root).args(["diff", "--verbose"])).contains("A    /usr/bin/curl"));

    // The other way round, named explicitly.
    let j: serde_json::Value = serde_json::from_str(&run(tb(&root).args(["--json", "diff", "0", "1"]))).unwrap();
    assert_eq!(j["packages"]["added"][0]["name"], "telnet");
    assert_eq!(j["packages"]["downgraded"][0]["name"], "openssl");
    assert_eq!(j["packages"]["upgraded"][0]["name"], "vim");
}

#[test]
fn database_under_usr_and_trees_without_one() {
    let s = Scratch::new("diff-usr");
    let root = sysroot_with_packages(&s, "usr/share/dpkg/database/status");
    let j: serde_json::Value = serde_json::from_str(&run(tb(&root).args(["diff", "--json"]))).unwrap();
    assert_eq!(j["packages"]["added"][0]["name"], "curl", "{j}");
    assert!(j["files"].as_array().unwrap().iter().any(|f| f["path"] == "/usr/share/dpkg/database/status"));

    // Trees without a package database: files only, said plainly.
    let s = Scratch::new("diff-nodb");
    let root = sysroot_with_commits(&s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    run(tb(&root).args(["deploy", "testos/v3"]));
    let human = run(tb(&root).arg("diff"));
    assert!(human.contains("M    /usr/bin/hello"), "{human}");
    assert!(human.contains("/usr/lib/modules/6.1.0-test/vmlinuz"), "v3 has a new kernel: {human}");
    let j: serde_json::Value = serde_json::from_str(&run(tb(&root).args(["diff", "--json"]))).unwrap();
    assert!(j["packages"].is_null());

    // One deployment: nothing to compare, and the reason.
    let s = Scratch::new("diff-one");
    let root = sysroot_with_commits(&s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    let err = run_fail(tb(&root).arg("diff"));
    assert!(err.contains("treeboot diff compares two deployments; there is only one"), "{err}");
    let err = run_fail(tb(&root).args(["diff", "0", "4"]));
    assert!(err.contains("no deployment with index 4"), "{err}");
}
