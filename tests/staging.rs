//! Stage now, finalize at shutdown: run for real in a private mount
//! namespace with a private /run where /run/ostree-booted names a deployment
//! of a directory sysroot.

mod common;
use common::*;
use std::path::Path;

fn booted_on_v1(s: &Scratch) -> std::path::PathBuf {
    let root = sysroot_with_commits(s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    root
}

fn versions(root: &Path) -> Vec<String> {
    status_json(root)["deployments"].as_array().unwrap().iter().map(|d| d["version"].as_str().unwrap().to_string()).collect()
}

fn assert_ok(r: (bool, String, String)) -> (String, String) {
    assert!(r.0, "script failed:\nstdout:\n{}\nstderr:\n{}", r.1, r.2);
    (r.1, r.2)
}

#[test]
fn stage_then_finalize_keeps_edits_made_in_between() {
    let s = Scratch::new("stage");
    let root = booted_on_v1(&s);
    let etc = deployment_dir(&root, 0).join("etc");
    let (out, _) = assert_ok(in_booted_namespace(&root, 0, &format!(r#"
$TB --sysroot $S stage --json testos/v3 > /tmp/stage.json.$$
cat /tmp/stage.json.$$; rm /tmp/stage.json.$$
echo "--- status"
$TB --sysroot $S status --json
echo "--- kernel"
ls $S/boot/ostree
test -e /run/ostree/staged-deployment
test -e /run/reboot-required
echo "edited after staging" > {etc}/motd
echo "new after staging" > {etc}/late.conf
# Same size, mtime put back: only the inode's ctime shows the change, and
# the stage-time diff cache must not hide it.
printf 'xestos\n' > {etc}/hostname
touch -r {etc}/ssh/sshd_config {etc}/hostname
test -s /run/treeboot/etc-diff-cache
echo "--- finalize"
$TB --sysroot $S finalize-staged
test ! -e /run/ostree/staged-deployment
"#, etc = etc.display())));
    // What stage printed: one JSON document, then status with the staged one first.
    let staged: serde_json::Value = serde_json::from_str(out.split("--- status").next().unwrap()).unwrap();
    assert_eq!(staged["version"], "3.0");
    assert_eq!(staged["locked"], false);
    let st: serde_json::Value = serde_json::from_str(out.split("--- status").nth(1).unwrap().split("--- kernel").next().unwrap()).unwrap();
    assert_eq!(st["deployments"][0]["staged"], true);
    assert_eq!(st["deployments"][0]["index"], 0);
    assert_eq!(st["deployments"][1]["booted"], true);
    assert_eq!(st["deployments"][1]["index"], 1);
    // The new kernel was in /boot before finalize ran.
    let kernels = out.split("--- kernel").nth(1).unwrap().split("--- finalize").next().unwrap();
    assert_eq!(kernels.lines().filter(|l| l.starts_with("testos-")).count(), 2, "{kernels}");
    // After finalize: v3 is the default, v1 kept as rollback, edits carried over.
    assert_eq!(versions(&root), vec!["3.0", "1.0"]);
    let new_etc = deployment_dir(&root, 0).join("etc");
    assert_eq!(std::fs::read_to_string(new_etc.join("motd")).unwrap(), "edited after staging\n");
    assert_eq!(std::fs::read_to_string(new_etc.join("late.conf")).unwrap(), "new after staging\n");
    assert_eq!(std::fs::read_to_string(new_etc.join("hostname")).unwrap(), "xestos\n");
    assert_eq!(run(tb(&root).arg("kargs")).trim(), "root=LABEL=root");
    assert!(!root.join("boot/ostree/finalize-failure.stamp").exists());
    assert_eq!(ostree_status_names(&root), treeboot_status_names(&root));
}

#[test]
fn locked_finalization_changes_nothing_until_unlocked() {
    let s = Scratch::new("locked");
    let root = booted_on_v1(&s);
    assert_ok(in_booted_namespace(&root, 0, r#"
$TB --sysroot $S stage --lock-finalization testos/v2
out=$($TB --sysroot $S status); grep -q "finalization locked" <<<"$out"
before=$(cd $S && find boot ostree/boot.* -printf '%p %l\n' | sort | md5sum)
out=$($TB --sysroot $S finalize-staged 2>&1)
grep -qi "not finalizing, deployment is locked" <<<"$out" || { echo "no locked message: $out"; exit 1; }
after=$(cd $S && find boot ostree/boot.* -printf '%p %l\n' | sort | md5sum)
[ "$before" = "$after" ]
test -e /run/ostree/staged-deployment
# The legacy lock file is honoured too.
$TB --sysroot $S lock-finalization --unlock
touch /run/ostree/staged-deployment-locked
$TB --sysroot $S finalize-staged
test -e /run/ostree/staged-deployment
rm /run/ostree/staged-deployment-locked
$TB --sysroot $S finalize-staged
"#));
    assert_eq!(versions(&root), vec!["2.0", "1.0"]);
}

#[test]
fn finalize_with_nobody_reading_its_output_still_applies_the_update() {
    // At shutdown finalize-staged writes to journald's stream; if that is
    // gone, its writes fail with EPIPE. systemd starts it with SIGPIPE
    // ignored (IgnoreSIGPIPE=yes): the lines are lost, the update is not.
    // A local edit made after staging gives the merge something to say.
    let s = Scratch::new("epipe");
    let root = booted_on_v1(&s);
    let etc = deployment_dir(&root, 0).join("etc");
    assert_ok(in_booted_namespace(&root, 0, &format!(r#"
$TB --sysroot $S stage testos/v2
echo "edited after staging" > {etc}/motd
mkfifo {etc}/a-fifo
python3 -c '
import os, subprocess, sys
r, w = os.pipe()
os.close(r)
sys.exit(subprocess.call(sys.argv[1:], stdout=w, stderr=w, restore_signals=False))
' $TB --sysroot $S finalize-staged
test ! -e /run/ostree/staged-deployment
"#, etc = etc.display())));
    assert_eq!(versions(&root), vec!["2.0", "1.0"]);
    let new_etc = deployment_dir(&root, 0).join("etc");
    assert_eq!(std::fs::read_to_string(new_etc.join("motd")).unwrap(), "edited after staging\n");
    assert!(!root.join("boot/ostree/finalize-failure.stamp").exists());
}

#[test]
fn conflict_refuses_staging_and_leaves_nothing() {
    let s = Scratch::new("conflict");
    let root = booted_on_v1(&s);
    // The admin has a file where the new defaults have a directory.
    commit_tree(&s, &root.join("ostree/repo"), "testos/conflict", "A", "conflict", "4.0", |t| {
        write(&t.join("usr/etc/sudoers.d/README"), "now a directory\n")
    });
    write(&deployment_dir(&root, 0).join("etc/sudoers.d"), "local file\n");
    let before = snapshot(&root);
    let r = in_booted_namespace(&root, 0, r#"
set +e
$TB --sysroot $S stage testos/conflict
echo "exit=$?"
test ! -e /run/ostree/staged-deployment && echo "nothing staged"
"#);
    assert!(r.1.contains("exit=4"), "exit code 4 for a conflict: {} {}", r.1, r.2);
    assert!(r.1.contains("nothing staged"));
    assert!(r.2.contains("/etc/sudoers.d") && r.2.contains("where the new defaults have a directory"), "{}", r.2);
    assert_unchanged("a refused stage", &before, &root);
}

#[test]
fn not_booted_refuses_with_exit_3() {
    let s = Scratch::new("notbooted");
    let root = booted_on_v1(&s);
    let out = tb(&root).args(["stage", "testos/v2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not booted from a deployment"));
}

#[test]
fn finalize_failure_keeps_old_default_and_is_reported() {
    let s = Scratch::new("ffail");
    let root = booted_on_v1(&s);
    let before_loader = std::fs::read_link(root.join("boot/loader")).unwrap();
    let etc = deployment_dir(&root, 0).join("etc");
    // The admin creates, after staging, a file where v4 has a directory:
    // the re-merge at shutdown must fail.
    commit_tree(&s, &root.join("ostree/repo"), "testos/late", "A", "late", "4.0", |t| write(&t.join("usr/etc/late.d/README"), "a directory\n"));
    let r = in_booted_namespace(&root, 0, &format!(r#"
$TB --sysroot $S stage testos/late
echo "local" > {etc}/late.d
set +e
$TB --sysroot $S finalize-staged
echo "exit=$?"
test ! -e /run/ostree/staged-deployment && echo "record removed"
"#, etc = etc.display()));
    assert!(r.1.contains("exit=1") && r.1.contains("record removed"), "{} {}", r.1, r.2);
    assert_eq!(std::fs::read_link(root.join("boot/loader")).unwrap(), before_loader, "the old default stays");
    assert_eq!(versions(&root), vec!["1.0"]);
    let stamp = std::fs::read_to_string(root.join("boot/ostree/finalize-failure.stamp")).unwrap();
    assert!(stamp.contains("/etc/late.d"), "{stamp}");
    // status shows it, boot-complete reports it once and fails the unit.
    let st = status_json(&root);
    assert!(st["finalize_failure"].as_str().unwrap().contains("late.d"));
    assert!(run(tb(&root).arg("status")).contains("did not apply the staged deployment"));
    let err = run_fail(tb(&root).arg("boot-complete"));
    assert!(err.contains("/etc/late.d"), "{err}");
    assert!(!root.join("boot/ostree/finalize-failure.stamp").exists());
    run(tb(&root).arg("boot-complete"));
    // The orphan is removed by the next cleanup.
    run(tb(&root).arg("cleanup"));
    assert_eq!(std::fs::read_dir(root.join("ostree/deploy/testos/deploy")).unwrap().count(), 2);
}

#[test]
fn missing_kernel_at_finalize_fails_cleanly() {
    // Gone from /boot and from the deployment's tree: nothing to copy.
    let s = Scratch::new("nokernel");
    let root = booted_on_v1(&s);
    let r = in_booted_namespace(&root, 0, r#"
$TB --sysroot $S stage --json testos/v3 > /dev/null
st=$($TB --sysroot $S status --json)
rm -rf $S/boot/ostree/testos-$(echo "$st" | python3 -c 'import json,sys; print(json.load(sys.stdin)["deployments"][0]["bootcsum"])')
rm $S/$(echo "$st" | python3 -c 'import json,sys; print(json.load(sys.stdin)["deployments"][0]["deploy_path"])')/usr/lib/modules/*/vmlinuz
set +e
$TB --sysroot $S finalize-staged
echo "exit=$?"
"#);
    assert!(r.1.contains("exit=1"), "{} {}", r.1, r.2);
    assert!(r.2.contains("Installing the kernel of the staged deployment") && r.2.contains("no kernel"), "{}", r.2);
    assert_eq!(versions(&root), vec!["1.0"]);
    assert!(root.join("boot/ostree/finalize-failure.stamp").exists());
}

#[test]
fn reboot_without_finalize_keeps_old_default_and_cleanup_removes_orphan() {
    let s = Scratch::new("noreboot");
    let root = booted_on_v1(&s);
    assert_ok(in_booted_namespace(&root, 0, "$TB --sysroot $S stage testos/v3\n"));
    // The namespace (and its /run) is gone: as after a reboot without finalize.
    assert_eq!(versions(&root), vec!["1.0"]);
    assert_eq!(std::fs::read_dir(root.join("ostree/deploy/testos/deploy")).unwrap().count(), 4, "orphan dir + origin");
    let out = run(tb(&root).arg("cleanup"));
    assert!(out.contains("Removed 1 deployment(s), 1 kernel dir(s)"), "{out}");
    assert_eq!(std::fs::read_dir(root.join("ostree/deploy/testos/deploy")).unwrap().count(), 2);
}

#[test]
fn deploy_or_undeploy_drops_the_staged_deployment() {
    let s = Scratch::new("drop");
    let root = booted_on_v1(&s);
    assert_ok(in_booted_namespace(&root, 0, r#"
$TB --sysroot $S stage testos/v2
out=$($TB --sysroot $S undeploy 0); grep -q Deleted <<<"$out"
test ! -e /run/ostree/staged-deployment
$TB --sysroot $S stage testos/v2
out=$($TB --sysroot $S deploy testos/v3); grep -q "Dropped the staged deployment" <<<"$out"
test ! -e /run/ostree/staged-deployment
$TB --sysroot $S status --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["deployments"]; assert not any(x["staged"] for x in d), d'
# The staged deployment cannot be pinned or set as default.
$TB --sysroot $S stage testos/v2
if $TB --sysroot $S pin 0; then echo "pinned the staged deployment"; exit 1; fi
if $TB --sysroot $S set-default 0; then echo "set the staged deployment as default"; exit 1; fi
$TB --sysroot $S undeploy 0
"#));
    assert_eq!(versions(&root), vec!["3.0", "1.0"]);
    // No orphan left.
    assert_eq!(std::fs::read_dir(root.join("ostree/deploy/testos/deploy")).unwrap().count(), 4);
}

#[test]
fn bad_staged_files_are_reported_and_change_nothing_else() {
    use treeboot::formats::gvariant::Value;
    let s = Scratch::new("badstaged");
    let root = booted_on_v1(&s);
    let good = {
        assert_ok(in_booted_namespace(&root, 0, &format!("$TB --sysroot $S stage testos/v2\ncp /run/ostree/staged-deployment {}\n", s.join("good").display())));
        std::fs::read(s.join("good")).unwrap()
    };
    run(tb(&root).arg("cleanup"));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "the file is empty"),
        // Read as glib reads it: what is left has no target.
        ("truncated", good[..good.len() / 3].to_vec(), "no \"target\" deployment"),
        ("unknown deployment", Value::vardict(vec![("target", Value::vardict(vec![("name", Value::string(format!("{}.0", "e".repeat(64)))), ("osname", Value::string("testos")), ("bootcsum", Value::string("f".repeat(64)))]))]).encode(), "does not exist"),
        ("wrong types", Value::vardict(vec![("target", Value::U64(3))]).encode(), "target is t, not a{sv}"),
        ("locked not a boolean", Value::vardict(vec![("target", Value::vardict(vec![("name", Value::string(format!("{}.0", "e".repeat(64)))), ("osname", Value::string("testos")), ("bootcsum", Value::string("f".repeat(64)))])), ("locked", Value::string("yes"))]).encode(), "locked is s, not b"),
    ];
    for (what, bytes, expect) in cases {
        let f = s.join("bad");
        std::fs::write(&f, &bytes).unwrap();
        let before = snapshot(&root);
        let r = in_booted_namespace(&root, 0, &format!(r#"
mkdir -p /run/ostree; cp {} /run/ostree/staged-deployment
set +e
$TB --sysroot $S finalize-staged
echo "exit=$?"
test ! -e /run/ostree/staged-deployment && echo "record removed"
"#, f.display()));
        assert!(r.1.contains("exit=1") && r.1.contains("record removed"), "{what}: {} {}", r.1, r.2);
        assert!(r.2.contains("/run/ostree/staged-deployment") && r.2.contains(expect), "{what}: {}", r.2);
        let stamp = root.join("boot/ostree/finalize-failure.stamp");
        assert!(std::fs::read_to_string(&stamp).unwrap().contains(expect), "{what}: stamp");
        std::fs::remove_file(&stamp).unwrap();
        assert_unchanged(what, &before, &root);
    }
}

/// What `status --json` says is staged: the deployment's `checksum.serial`.
fn staged_name(status: &serde_json::Value) -> Option<String> {
    status["deployments"].as_array().unwrap().iter().find(|d| d["staged"] == true).map(|d| format!("{}.{}", d["checksum"].as_str().unwrap(), d["serial"]))
}

#[test]
fn cleanup_keeps_what_the_staged_deployment_needs() {
    let s = Scratch::new("stagedprune");
    let root = booted_on_v1(&s);
    let repo = root.join("ostree/repo");
    let v3 = run(std::process::Command::new("ostree").arg(format!("--repo={}", repo.display())).args(["rev-parse", "testos/v3"])).trim().to_string();
    // Staged by checksum, and the branch deleted (as a front-end that
    // pulled by checksum does): no ref but the staged deployment names v3.
    let (out, _) = assert_ok(in_booted_namespace(&root, 0, &format!(r#"
$TB --sysroot $S stage {v3}
ostree --repo=$S/ostree/repo refs --delete testos/v3
$TB --sysroot $S cleanup
echo "--- after cleanup"
$TB --sysroot $S status --json
echo "--- end"
ostree --repo=$S/ostree/repo ls {v3} /usr/bin/hello
ostree --repo=$S/ostree/repo cat {v3} /usr/bin/hello
$TB --sysroot $S finalize-staged
"#)));
    let after: serde_json::Value = serde_json::from_str(out.split("--- after cleanup").nth(1).unwrap().split("--- end").next().unwrap()).unwrap();
    assert!(staged_name(&after).unwrap().starts_with(&v3), "still staged after cleanup: {after}");
    assert!(out.contains("hello 3.0"), "the staged commit's objects are still in the repository: {out}");
    // The finalized deployment boots v3, with its kernel.
    assert_eq!(versions(&root), vec!["3.0", "1.0"]);
    run(tb(&root).arg("verify"));
    // Its commit is now kept by the deployment refs, as libostree keeps it.
    run(tb(&root).arg("cleanup"));
    run(std::process::Command::new("ostree").arg(format!("--repo={}", repo.display())).args(["fsck", "--quiet"]));
    run(std::process::Command::new("ostree").arg(format!("--repo={}", repo.display())).args(["cat", &v3, "/usr/bin/hello"]));
}

#[test]
fn a_failed_restage_keeps_the_staged_deployment() {
    let s = Scratch::new("restagefail");
    let root = booted_on_v1(&s);
    let repo = root.join("ostree/repo");
    // Two updates that cannot be staged: an /etc conflict, and no kernel.
    commit_tree(&s, &repo, "testos/conflict", "A", "conflict", "4.0", |t| write(&t.join("usr/etc/sudoers.d/README"), "now a directory\n"));
    commit_tree(&s, &repo, "testos/nokernel", "A", "nokernel", "5.0", |t| std::fs::remove_dir_all(t.join("usr/lib/modules")).unwrap());
    write(&deployment_dir(&root, 0).join("etc/sudoers.d"), "local file\n");
    let (out, err) = assert_ok(in_booted_namespace(&root, 0, r#"
$TB --sysroot $S stage testos/v3
before=$(md5sum < /run/ostree/staged-deployment)
set +e
$TB --sysroot $S stage testos/conflict; echo "conflict exit=$?"
$TB --sysroot $S stage testos/nokernel; echo "nokernel exit=$?"
set -e
[ "$(md5sum < /run/ostree/staged-deployment)" = "$before" ] && echo "record unchanged"
echo "--- status"
$TB --sysroot $S status --json
echo "--- end"
$TB --sysroot $S finalize-staged
"#));
    assert!(out.contains("conflict exit=4"), "{out} {err}");
    assert!(out.contains("nokernel exit=1"), "{out} {err}");
    assert!(err.contains("no kernel") || err.contains("kernel"), "{err}");
    assert!(out.contains("record unchanged"), "{out}");
    let st: serde_json::Value = serde_json::from_str(out.split("--- status").nth(1).unwrap().split("--- end").next().unwrap()).unwrap();
    assert_eq!(st["deployments"][0]["staged"], true);
    assert_eq!(st["deployments"][0]["version"], "3.0");
    // The update staged first is what shutdown applies.
    assert_eq!(versions(&root), vec!["3.0", "1.0"]);
    run(tb(&root).arg("verify"));
    // Nothing of the refused stages is left behind (v1, v3 and their origins).
    assert_eq!(std::fs::read_dir(root.join("ostree/deploy/testos/deploy")).unwrap().count(), 4);
}

#[test]
fn a_restage_replaces_the_staged_deployment_and_removes_it() {
    let s = Scratch::new("restage");
    let root = booted_on_v1(&s);
    let (out, _) = assert_ok(in_booted_namespace(&root, 0, r#"
$TB --sysroot $S stage --json testos/v3 | python3 -c 'import json,sys; d=json.load(sys.stdin); print("first", d["deployment"], d["bootcsum"])'
ls $S/boot/ostree | sed 's/^/kernel /'
$TB --sysroot $S stage testos/v2 2>&1
echo "--- status"
$TB --sysroot $S status --json
echo "--- end"
ls $S/boot/ostree | sed 's/^/after kernel /'
$TB --sysroot $S finalize-staged
"#));
    let first = out.lines().find_map(|l| l.strip_prefix("first ")).unwrap();
    let (v3_name, v3_boot) = first.split_once(' ').unwrap();
    assert!(out.contains(&format!("Replaced the staged deployment {v3_name}")), "{out}");
    assert!(out.contains(&format!("kernel testos-{v3_boot}")), "v3's kernel was installed at stage time: {out}");
    assert!(!out.contains(&format!("after kernel testos-{v3_boot}")), "the replaced stage's kernel is removed: {out}");
    let st: serde_json::Value = serde_json::from_str(out.split("--- status").nth(1).unwrap().split("--- end").next().unwrap()).unwrap();
    assert_eq!(st["deployments"][0]["version"], "2.0");
    assert!(!root.join(format!("ostree/deploy/testos/deploy/{v3_name}")).exists(), "the replaced deployment is removed");
    assert!(!root.join(format!("ostree/deploy/testos/deploy/{v3_name}.origin")).exists());
    assert_eq!(versions(&root), vec!["2.0", "1.0"]);
    run(tb(&root).arg("verify"));
}

#[test]
fn a_new_default_drops_the_staged_deployment_as_ostree_does() {
    let s = Scratch::new("stagedrollback");
    let root = booted_on_v1(&s);
    run(tb(&root).args(["deploy", "testos/v2"]));
    // Booted on v1 (now index 1 of the list), v2 pending, v3 staged.
    let (out, _) = assert_ok(in_booted_namespace(&root, 1, r#"
$TB --sysroot $S stage testos/v3
$TB --sysroot $S status --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["deployments"]; print("before", [(x["version"], x["staged"]) for x in d])'
$TB --sysroot $S rollback
test ! -e /run/ostree/staged-deployment && echo "record gone"
$TB --sysroot $S status --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["deployments"]; print("after", [(x["version"], x["staged"]) for x in d])'
# undeploy of another index keeps it, as ostree admin undeploy does.
$TB --sysroot $S stage testos/v3
$TB --sysroot $S undeploy 2
test -e /run/ostree/staged-deployment && echo "still staged after undeploy"
"#));
    assert!(out.contains("before [('3.0', True), ('2.0', False), ('1.0', False)]"), "{out}");
    assert!(out.contains("Dropped the staged deployment"), "{out}");
    assert!(out.contains("record gone"), "{out}");
    assert!(out.contains("after [('1.0', False), ('2.0', False)]"), "{out}");
    assert!(out.contains("still staged after undeploy"), "{out}");
    run(tb(&root).arg("verify"));
}

/// ostree (`ostree admin deploy --stage`) leaves the new kernel in the
/// deployment's tree and copies it into /boot at finalize time: a
/// staged deployment whose kernel directory is not in /boot yet is
/// finalized with it, and boots.
#[test]
fn a_stage_without_its_kernel_in_boot_is_finalized_with_it() {
    let s = Scratch::new("stagekernel");
    let root = booted_on_v1(&s);
    let r = in_booted_namespace(&root, 0, r#"
$TB --sysroot $S stage testos/v3
b=$($TB --sysroot $S status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["deployments"][0]["bootcsum"])')
rm -r "$S/boot/ostree/testos-$b"
echo "bootcsum=$b"
$TB --sysroot $S finalize-staged
"#);
    let (out, _) = assert_ok(r);
    let b = out.lines().find_map(|l| l.strip_prefix("bootcsum=")).unwrap();
    let kdir = root.join(format!("boot/ostree/testos-{b}"));
    let names: Vec<String> = std::fs::read_dir(&kdir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n.starts_with("vmlinuz-")), "no kernel in {}: {names:?}", kdir.display());
    assert_eq!(versions(&root), vec!["3.0", "1.0"]);
    run(tb(&root).arg("verify"));
}
