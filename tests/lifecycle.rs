//! Every verb on directory sysroots, checking the tree that results; bad
//! input gets an error naming the file and leaves the sysroot as it was.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn versions(root: &Path) -> Vec<String> {
    status_json(root)["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_str().unwrap().to_string())
        .collect()
}

fn two_deployments(s: &Scratch) -> std::path::PathBuf {
    let root = sysroot_with_commits(s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    run(tb(&root).args(["deploy", "testos/v2"]));
    root
}

#[test]
fn status_lists_deployments_in_boot_order() {
    let s = Scratch::new("status");
    let root = two_deployments(&s);
    let st = status_json(&root);
    let d = &st["deployments"];
    assert_eq!(d[0]["version"], "2.0");
    assert_eq!(d[0]["index"], 0);
    assert_eq!(d[0]["stateroot"], "testos");
    assert_eq!(d[0]["refspec"], "testos/v2");
    assert_eq!(d[0]["serial"], 0);
    for k in ["booted", "pending", "rollback", "staged", "pinned"] {
        assert_eq!(d[0][k], false, "{k}");
    }
    assert_eq!(d[1]["version"], "1.0");
    let human = run(tb(&root).arg("status"));
    assert!(human.starts_with("  0 testos "), "{human}");
    assert!(human.contains("Version: 2.0") && human.contains("origin refspec: testos/v1"), "{human}");
    // Boot version flipped twice: loader.0 is live.
    assert_eq!(std::fs::read_link(root.join("boot/loader")).unwrap(), Path::new("loader.0"));
    assert_eq!(entries(&root), vec!["ostree-1.conf", "ostree-2.conf"], "named as ostree 2024.5 and later name them");
}

#[test]
fn set_default_and_rollback() {
    let s = Scratch::new("setdef");
    let root = two_deployments(&s);
    run(tb(&root).args(["set-default", "1"]));
    assert_eq!(versions(&root), vec!["1.0", "2.0"]);
    run(tb(&root).arg("rollback"));
    assert_eq!(versions(&root), vec!["2.0", "1.0"]);
    assert_eq!(ostree_status_names(&root), treeboot_status_names(&root));
    let err = run_fail(tb(&root).args(["set-default", "5"]));
    assert!(err.contains("no deployment with index 5"), "{err}");
}

/// A deploy says what it drops from the list, and that a commit it deploys
/// again was already there (rather than replacing the rollback silently).
#[test]
fn deploy_says_what_it_replaces() {
    let s = Scratch::new("says");
    let root = two_deployments(&s);
    let names = treeboot_status_names(&root);
    let out = run(tb(&root).args(["deploy", "testos/v2"]));
    assert!(out.contains(&format!("is already deployed as {}: deploying it again as", names[0])), "{out}");
    assert!(out.contains(&format!("Removed deployment testos {}: no longer listed", names[1])), "{out}");
    assert_eq!(versions(&root), ["2.0", "2.0"]);
    let out = run(tb(&root).args(["deploy", "--retain", "testos/v3"]));
    assert!(!out.contains("Removed deployment") && !out.contains("already deployed"), "{out}");
}

#[test]
fn undeploy_pin_and_cleanup() {
    let s = Scratch::new("undeploy");
    let root = two_deployments(&s);
    run(tb(&root).args(["pin", "1"]));
    let origin = std::fs::read_to_string(root.join(status_json(&root)["deployments"][1]["origin_path"].as_str().unwrap())).unwrap();
    assert!(origin.contains("[libostree-transient]\npinned=true\n"), "{origin}");
    assert!(status_json(&root)["deployments"][1]["pinned"].as_bool().unwrap());
    // A pinned deployment survives a deploy that would drop it.
    run(tb(&root).args(["deploy", "testos/v3"]));
    assert_eq!(versions(&root), vec!["3.0", "2.0", "1.0"]);
    run(tb(&root).args(["pin", "--unpin", "2"]));
    let old_dir = deployment_dir(&root, 2);
    run(tb(&root).args(["undeploy", "2"]));
    assert_eq!(versions(&root), vec!["3.0", "2.0"]);
    assert!(!old_dir.exists(), "undeploy removes the directory");
    // An orphan left by an interrupted run is removed by cleanup.
    let orphan = root.join("ostree/deploy/testos/deploy/".to_string() + &"ab".repeat(32) + ".0");
    std::fs::create_dir_all(orphan.join("usr")).unwrap();
    let out = run(tb(&root).arg("cleanup"));
    assert!(out.contains("Removed 1 deployment(s)"), "{out}");
    assert!(!orphan.exists());
    assert!(!root.join("boot/loader.1").exists(), "the old boot version is gone");
}

#[test]
fn kargs_append_replace_delete() {
    let s = Scratch::new("kargs");
    let root = two_deployments(&s);
    run(tb(&root).args(["kargs", "--append", "console=ttyS0", "--append", "quiet"]));
    assert_eq!(run(tb(&root).arg("kargs")).trim(), "root=LABEL=root console=ttyS0 quiet");
    run(tb(&root).args(["kargs", "--replace", "root=LABEL=other", "--delete", "quiet"]));
    assert_eq!(run(tb(&root).arg("kargs")).trim(), "root=LABEL=other console=ttyS0");
    // Only deployment 0 changed.
    assert_eq!(run(tb(&root).args(["kargs", "--deployment", "1"])).trim(), "root=LABEL=root");
    let err = run_fail(tb(&root).args(["kargs", "--delete", "nosuch"]));
    assert!(err.contains("nosuch"), "{err}");
    let err = run_fail(tb(&root).args(["kargs", "--delete", "ostree"]));
    assert!(err.contains("ostree="), "{err}");
    assert_eq!(ostree_status_names(&root), treeboot_status_names(&root));
}

#[test]
fn etc_diff_previews_local_changes() {
    let s = Scratch::new("etcdiff");
    let root = two_deployments(&s);
    let etc = deployment_dir(&root, 0).join("etc");
    write(&etc.join("motd"), "mine\n");
    write(&etc.join("new.conf"), "n\n");
    std::fs::remove_file(etc.join("removeme")).unwrap();
    let out = run(tb(&root).args(["etc", "diff"]));
    assert!(out.contains("M    /etc/motd (content)"), "{out}");
    assert!(out.contains("A    /etc/new.conf"), "{out}");
    assert!(out.contains("D    /etc/removeme"), "{out}");
    assert!(out.contains("1 modified, 1 added, 1 removed"), "{out}");
    let j: serde_json::Value = serde_json::from_str(&run(tb(&root).args(["etc", "diff", "--json"]))).unwrap();
    assert_eq!(j["modified"], 1);
    assert_eq!(j["changes"].as_array().unwrap().len(), 3);
}

#[test]
fn secret_files_are_created_private() {
    // strace the deploy: the 0600 file must be created with mode 0 and only
    // then get its final mode, so no one else can open it in between.
    let s = Scratch::new("secret");
    let root = two_deployments(&s);
    let etc = deployment_dir(&root, 0).join("etc");
    write(&etc.join("shadow-secret"), "hash\n");
    std::fs::set_permissions(etc.join("shadow-secret"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let log = s.join("strace.log");
    run(Command::new("strace")
        .args(["-f", "-o"])
        .arg(&log)
        .args(["-e", "trace=openat,fchmod"])
        .arg(treeboot_bin())
        .arg("--sysroot")
        .arg(&root)
        .args(["deploy", "testos/v3"]));
    let t = std::fs::read_to_string(&log).unwrap();
    let create = t.lines().find(|l| l.contains("\"shadow-secret\"") && l.contains("O_CREAT")).expect("the copy was traced");
    assert!(create.trim_end().ends_with(", 000) = 5") || create.contains(", 000)"), "created with a wider mode: {create}");
    assert!(t.contains("fchmod(") && t.contains("0600"), "final mode set by fchmod");
}

/// `treeboot ARGS` fails with `expect` in its message and the sysroot is
/// as in `before`.
fn fails_and_changes_nothing(root: &Path, before: &std::collections::BTreeMap<String, String>, args: &[&str], expect: &str) {
    let err = run_fail(tb(root).args(args));
    assert!(err.contains(expect), "{args:?}: expected {expect:?} in:\n{err}");
    assert_unchanged(&format!("{args:?}"), before, root);
}

#[test]
fn bad_input_is_named_and_nothing_changes() {
    let s = Scratch::new("bad");
    let root = two_deployments(&s);
    let before = snapshot(&root);
    let check = |args: &[&str], expect: &str| fails_and_changes_nothing(&root, &before, args, expect);
    check(&["deploy", "testos/nosuch"], "unknown ref \"testos/nosuch\"");
    check(&["deploy", "--os", "nosuchos", "testos/v1"], "stateroot \"nosuchos\" does not exist");
    check(&["undeploy", "7"], "no deployment with index 7");
    check(&["deploy", "--karg", "a=\"b", "testos/v1"], "unbalanced double quote");

    // A commit without a kernel, and one with two.
    let repo = root.join("ostree/repo");
    commit_tree(&s, &repo, "testos/nokernel", "A", "nk", "nk", |t| std::fs::remove_dir_all(t.join("usr/lib/modules")).unwrap());
    commit_tree(&s, &repo, "testos/twokernels", "A", "tk", "tk", |t| write(&t.join("usr/lib/modules/6.2.0-other/vmlinuz"), "k2"));
    // A FIPS HMAC without its kernel.
    commit_tree(&s, &repo, "testos/hmaconly", "A", "ho", "ho", |t| {
        let k = t.join("usr/lib/modules/6.1.0-test");
        std::fs::remove_file(k.join("vmlinuz")).unwrap();
        write(&k.join(".vmlinuz.hmac"), "hmac\n");
    });
    let before = snapshot(&root);
    let check = |args: &[&str], expect: &str| fails_and_changes_nothing(&root, &before, args, expect);
    check(&["deploy", "testos/nokernel"], "has no kernel");
    check(&["deploy", "testos/twokernels"], "2 kernels (6.1.0-test, 6.2.0-other)");
    check(&["deploy", "testos/hmaconly"], "usr/lib/modules/6.1.0-test/.vmlinuz.hmac exists, but there is no kernel beside it");
}

/// What a corruption case does to a sysroot.
type Breaker = Box<dyn Fn(&Path)>;

#[test]
fn corrupt_files_get_errors_naming_them() {
    let cases: Vec<(&str, Breaker, &str)> = vec![
        ("corrupt origin", Box::new(|root: &Path| {
            let o = root.join(status_json(root)["deployments"][0]["origin_path"].as_str().unwrap());
            std::fs::write(&o, b"\x00\x01junk").unwrap();
        }), ".origin: line 1"),
        ("entry with junk", Box::new(|root: &Path| {
            let e = root.join("boot/loader/entries/ostree-2.conf");
            let mut t = std::fs::read_to_string(&e).unwrap();
            t.push_str("\u{1}\u{2} garbage\n");
            std::fs::write(&e, t).unwrap();
        }), "ostree-2.conf: line 6"),
        ("entry without ostree=", Box::new(|root: &Path| {
            let e = root.join("boot/loader/entries/ostree-1.conf");
            let t = std::fs::read_to_string(&e).unwrap();
            let t: String = t.lines().map(|l| if l.starts_with("options") { "options root=x\n".to_string() } else { format!("{l}\n") }).collect();
            std::fs::write(&e, t).unwrap();
        }), "no ostree= kernel argument"),
        ("dangling boot link", Box::new(|root: &Path| {
            let d = deployment_dir(root, 1);
            Command::new("chattr").arg("-i").arg(&d).status().unwrap();
            std::fs::rename(&d, d.with_extension("moved")).unwrap();
        }), "does not exist (dangling link"),
        ("missing /boot", Box::new(|root: &Path| {
            std::fs::rename(root.join("boot"), root.join("boot.away")).unwrap();
        }), "/boot does not exist"),
    ];
    for (what, break_it, expect) in cases {
        let s = Scratch::new("corrupt");
        let root = two_deployments(&s);
        break_it(&root);
        let before = snapshot(&root);
        for args in [&["status"][..], &["deploy", "testos/v3"][..], &["cleanup"][..]] {
            let err = run_fail(tb(&root).args(args));
            assert!(err.contains(expect), "{what}: {args:?}: expected {expect:?} in:\n{err}");
        }
        assert_unchanged(what, &before, &root);
    }
}

#[test]
fn writers_wait_for_ostree_lock() {
    let s = Scratch::new("lock");
    let root = two_deployments(&s);
    // Hold ostree/lock the way libostree does (an OFD lock) from another process.
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg("import fcntl,os,struct,sys,time\nfd=os.open(sys.argv[1],os.O_RDWR|os.O_CREAT,0o600)\nfcntl.fcntl(fd,fcntl.F_OFD_SETLKW,struct.pack('hhqqi',fcntl.F_WRLCK,0,0,0,0))\nprint('locked',flush=True)\ntime.sleep(3)\n")
        .arg(root.join("ostree/lock"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let start = std::time::Instant::now();
    let out = tb(&root).args(["pin", "0"]).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("Waiting for another writer to release ostree/lock (held by pid {} (", holder.id())), "{err}");
    let said = err.lines().find(|l| l.starts_with("Waiting")).unwrap();
    assert!(said.contains("python3 -c import fcntl") && said.ends_with("...))..."), "one short line naming the holder: {said}");
    // It could only finish after the holder let go (3 s).
    assert!(start.elapsed() >= std::time::Duration::from_secs(2), "did not wait");
    holder.wait().unwrap();
}

/// `[sysroot] boot-counting-tries` in the repository config (ostree
/// 2025.3): a new entry is named `ostree-N+TRIES.conf`; what the boot
/// loader later does to the name (systemd-boot counts tries down as
/// `+LEFT-DONE`, systemd-bless-boot drops the suffix) is kept when the list
/// is rewritten; a bad value refuses the write before anything changes.
#[test]
fn boot_counting_tries_name_new_entries() {
    let s = Scratch::new("tries");
    let root = sysroot_with_commits(&s);
    let config = root.join("ostree/repo/config");
    let plain = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{plain}\n[sysroot]\nboot-counting-tries=3\n")).unwrap();
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    assert_eq!(entries(&root), ["ostree-1+3.conf"]);
    run(tb(&root).arg("verify"));
    // The boot loader used one try.
    let dir = std::fs::canonicalize(root.join("boot/loader/entries")).unwrap();
    std::fs::rename(dir.join("ostree-1+3.conf"), dir.join("ostree-1+2-1.conf")).unwrap();
    assert_eq!(versions(&root), ["1.0"]);
    run(tb(&root).args(["deploy", "testos/v2"]));
    assert_eq!(entries(&root), ["ostree-1+2-1.conf", "ostree-2+3.conf"]);
    assert_eq!(versions(&root), ["2.0", "1.0"]);
    // Blessed: no suffix, and none comes back.
    let dir = std::fs::canonicalize(root.join("boot/loader/entries")).unwrap();
    std::fs::rename(dir.join("ostree-2+3.conf"), dir.join("ostree-2.conf")).unwrap();
    run(tb(&root).args(["deploy", "testos/v3"]));
    assert_eq!(entries(&root), ["ostree-1.conf", "ostree-2+3.conf"]);
    assert_eq!(versions(&root), ["3.0", "2.0"]);
    run(tb(&root).arg("verify"));
    // ostree reads the list the same way.
    assert_eq!(ostree_status_names(&root), treeboot_status_names(&root));
    // A value libostree refuses is refused, naming the file.
    std::fs::write(&config, format!("{plain}\n[sysroot]\nboot-counting-tries=9\n")).unwrap();
    let before = snapshot(&root);
    fails_and_changes_nothing(&root, &before, &["deploy", "testos/v1"], "ostree/repo/config: [sysroot] boot-counting-tries=9: not a number from 0 to 5");
    // Off again: counters dropped from the names.
    std::fs::write(&config, &plain).unwrap();
    run(tb(&root).args(["deploy", "testos/v1"]));
    assert_eq!(entries(&root), ["ostree-1.conf", "ostree-2.conf"]);
}

/// bless and mark-bad by hand: the entry's name is what systemd-boot and
/// systemd-bless-boot would make of it, written through a full swap; status
/// shows the counters.
#[test]
fn bless_and_mark_bad_by_hand() {
    let s = Scratch::new("bless");
    let root = sysroot_with_commits(&s);
    let config = root.join("ostree/repo/config");
    let plain = std::fs::read_to_string(&config).unwrap();
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    let err = run_fail(tb(&root).args(["mark-bad", "0"]));
    assert!(err.contains("boot counting is off ([sysroot] boot-counting-tries in ostree/repo/config)"), "{err}");
    assert!(run(tb(&root).args(["bless", "0"])).contains("Deployment 0 is not being counted: nothing to bless"));
    std::fs::write(&config, format!("{plain}\n[sysroot]\nboot-counting-tries=3\n")).unwrap();
    run(tb(&root).args(["deploy", "testos/v3"]));
    assert_eq!(entries(&root), ["ostree-1.conf", "ostree-2+3.conf"]);
    let st = status_json(&root);
    assert_eq!((st["deployments"][0]["boot_tries_left"].as_u64(), st["deployments"][0]["boot_tries_done"].as_u64()), (Some(3), Some(0)));
    assert!(st["deployments"][1]["boot_tries_left"].is_null(), "the old entry is not counted");
    assert!(run(tb(&root).arg("status")).contains("    Boot tries: 3 left, 0 failed (being assessed)\n"));
    // Two tries failed, then the admin marks it bad: +0-2.
    let dir = std::fs::canonicalize(root.join("boot/loader/entries")).unwrap();
    std::fs::rename(dir.join("ostree-2+3.conf"), dir.join("ostree-2+1-2.conf")).unwrap();
    let bv = status_json(&root)["bootversion"].as_u64().unwrap();
    assert!(run(tb(&root).args(["mark-bad", "0"])).contains("Deployment 0 is marked bad"));
    assert_eq!(entries(&root), ["ostree-1.conf", "ostree-2+0-2.conf"]);
    assert_ne!(status_json(&root)["bootversion"].as_u64().unwrap(), bv, "a full swap: new entries");
    assert!(run(tb(&root).arg("status")).contains("(boot assessment failed)"));
    assert!(run(tb(&root).args(["mark-bad", "0"])).contains("marked bad already"));
    run(tb(&root).arg("verify"));
    // Deploying the bad commit again is allowed, with a warning.
    let again = s.join("again");
    copy_sysroot(&root, &again);
    let o = tb(&again).args(["deploy", "testos/v3"]).output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("whose boot assessment failed (2 failed tries, entry ostree-2+0-2.conf): deploying it again"), "{}", String::from_utf8_lossy(&o.stderr));
    // Blessed: the counter goes, and the versions stay where they were.
    let j: serde_json::Value = serde_json::from_str(&run(tb(&root).args(["--json", "bless", "0"]))).unwrap();
    assert_eq!((j["changed"].as_bool(), j["bad"].as_bool()), (Some(true), Some(false)));
    assert_eq!(entries(&root), ["ostree-1.conf", "ostree-2.conf"]);
    assert_eq!(versions(&root), ["3.0", "1.0"]);
    assert_eq!(ostree_status_names(&root), treeboot_status_names(&root), "ostree reads the list the same way");
    let err = run_fail(tb(&root).args(["bless"]));
    assert!(err.contains("not booted from a deployment"), "{err}");
}

#[test]
fn a_write_that_swapped_succeeds_when_cleanup_meets_something_odd() {
    let s = Scratch::new("oddcleanup");
    let root = sysroot_with_commits(&s);
    run(tb(&root).args(["deploy", "testos/v1"]));
    // An orphan deployment cleanup cannot remove: a file in it is immutable.
    let orphan = root.join(format!("ostree/deploy/testos/deploy/{}.5", "e".repeat(64)));
    write(&orphan.join("usr/stuck"), "immutable\n");
    run(Command::new("chattr").arg("+i").arg(orphan.join("usr/stuck")));
    let out = tb(&root).args(["deploy", "testos/v2"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = Command::new("chattr").arg("-i").arg(orphan.join("usr/stuck")).output();
    assert!(out.status.success(), "the deploy swapped: it must succeed: {err}");
    assert!(err.contains("warning") && err.contains(&format!("{}.5", "e".repeat(64))), "the problem is said, with the path: {err}");
    assert_eq!(versions(&root), vec!["2.0", "1.0"]);
    run(tb(&root).arg("verify"));
    // Once the admin fixed it, the next cleanup removes it.
    run(tb(&root).arg("cleanup"));
    assert!(!orphan.exists());
}

/// Origins that are not a refspec show as what they are; ostree reads the
/// same sysroot ("<unknown origin type>" for both).
#[test]
fn status_names_container_image_and_unknown_origins() {
    let s = Scratch::new("origins");
    let root = two_deployments(&s);
    let st = status_json(&root);
    let origin = |i: usize| root.join(st["deployments"][i]["origin_path"].as_str().unwrap());
    write(&origin(0), "[origin]\ncontainer-image-reference=ostree-unverified-registry:quay.io/fedora/fedora-bootc:41\n");
    write(&origin(1), "[rpmostree]\nrequested-packages=vim;\n");
    let st = status_json(&root);
    let d = &st["deployments"];
    assert!(d[0]["refspec"].is_null(), "a container image is not a refspec");
    assert_eq!(d[0]["container_image_reference"], "ostree-unverified-registry:quay.io/fedora/fedora-bootc:41");
    assert!(d[1]["refspec"].is_null() && d[1]["container_image_reference"].is_null() && d[1]["has_origin"] == true);
    let human = run(tb(&root).arg("status"));
    assert!(human.contains("origin: container image ostree-unverified-registry:quay.io/fedora/fedora-bootc:41"), "{human}");
    assert!(human.contains("origin: <unknown origin type>"), "{human}");
    let theirs = run(ostree_admin(&root).arg("status"));
    assert_eq!(theirs.matches("origin: <unknown origin type>").count(), 2, "{theirs}");
}
