//! `treeboot soft-reboot`: the next root is built for real in a private mount
//! namespace (with a private /run), checked as the new userspace would see
//! it, and handed over as treeboot-remount does after `systemctl
//! soft-reboot`; refusals change nothing.

mod common;
use common::*;

const REMOUNT: &str = env!("CARGO_BIN_EXE_treeboot-remount");

fn booted_on_v1(s: &Scratch) -> std::path::PathBuf {
    let root = sysroot_with_commits(s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    root
}

fn ns(root: &std::path::Path, script: &str) -> (String, String) {
    let (ok, out, err) = in_booted_namespace(root, 0, &script.replace("$REMOUNT", REMOUNT));
    assert!(ok, "script failed:\nstdout:\n{out}\nstderr:\n{err}");
    (out, err)
}

fn field<'a>(doc: &'a serde_json::Value, version: &str, key: &str) -> &'a serde_json::Value {
    let d = doc["deployments"].as_array().unwrap().iter().find(|d| d["version"] == version).unwrap();
    &d[key]
}

#[test]
fn a_staged_update_with_the_booted_kernel_soft_reboots_into_its_root() {
    let s = Scratch::new("soft");
    let root = booted_on_v1(&s);
    let etc = deployment_dir(&root, 0).join("etc");
    let (out, _) = ns(&root, &format!(r#"
# As on a booted system, where systemd makes every mount shared: the next
# root's mounts must not propagate into the sysroot.
mount --make-rshared /
$TB --sysroot $S stage testos/v2
echo "edited after staging" > {etc}/motd
$TB --sysroot $S status --json > /tmp/st1.$$
$TB --sysroot $S status > /tmp/st1.txt.$$
$TB --sysroot $S soft-reboot --prepare-only --json > /tmp/sr.$$
echo "--- status before"; cat /tmp/st1.$$
echo "--- text before"; cat /tmp/st1.txt.$$
echo "--- report"; cat /tmp/sr.$$
echo "--- status prepared"; $TB --sysroot $S status --json
echo "--- text prepared"; $TB --sysroot $S status
echo "--- next root"
rm -f /tmp/*.$$
findmnt -no TARGET /run/nextroot
touch /run/nextroot/usr/x 2>/dev/null && echo "usr: writable" || echo "usr: read-only"
touch /run/nextroot/etc/written && echo "etc: writable"
echo "motd: $(cat /run/nextroot/etc/motd)"
echo "hello: $(cat /run/nextroot/usr/bin/hello)"
test -d /run/nextroot/sysroot/ostree/deploy/testos && echo "sysroot: the physical root"
test -e /run/ostree/nextroot-booted && echo "record: written"
findmnt -rno TARGET | grep "^$S/" || echo "no mount below the sysroot"
test -e /run/ostree/initramfs-mount-var && echo "ostree generator: off"
# The drop-ins, written before the mounts: the next root's unit and, by
# the prefix drop-in, every unit below it.
for u in run-nextroot run-nextroot- run-treeboot-nextroot run-treeboot-nextroot-; do
    grep -q '^DefaultDependencies=no$' /run/systemd/system/$u.mount.d/50-treeboot-soft-reboot.conf && echo "kept: $u.mount"
done
test "$(ls /run/systemd/system | wc -l)" = 4 && echo "drop-ins: 4"
test ! -e /run/ostree/staged-deployment && echo "staged: finalized"
echo "--- switched"
$REMOUNT --root /run/nextroot
test ! -e /run/ostree/nextroot-booted && echo "record: promoted"
test -z "$(ls /run/systemd/system)" && echo "drop-ins: removed"
$TB --sysroot $S status --json
"#, etc = etc.display()));
    let part = |a: &str, b: &str| out.split(a).nth(1).unwrap().split(b).next().unwrap().to_string();
    let before: serde_json::Value = serde_json::from_str(&part("--- status before", "--- text before")).unwrap();
    assert_eq!(field(&before, "2.0", "staged"), true);
    assert_eq!(field(&before, "2.0", "soft_reboot_capable"), true, "{before}");
    assert!(field(&before, "1.0", "soft_reboot_capable").is_null(), "the booted one");
    assert!(part("--- text before", "--- report").contains("Soft reboot: possible"), "{out}");
    let report: serde_json::Value = serde_json::from_str(&part("--- report", "--- status prepared")).unwrap();
    assert_eq!(report["action"], "prepared");
    assert_eq!(report["finalized"], true);
    assert_eq!(report["default"], true);
    // Finalized: v2 is the default, v1 still booted; the next root is v2's.
    let prepared: serde_json::Value = serde_json::from_str(&part("--- status prepared", "--- text prepared")).unwrap();
    assert_eq!(field(&prepared, "2.0", "default"), true);
    assert_eq!(field(&prepared, "2.0", "soft_reboot_target"), true);
    assert_eq!(field(&prepared, "1.0", "booted"), true);
    let text = part("--- text prepared", "--- next root");
    assert!(text.contains("(pending, default, soft-reboot target)") && text.contains("Soft reboot: prepared"), "{text}");
    let next = part("--- next root", "--- switched");
    for want in ["/run/nextroot\n", "usr: read-only", "etc: writable", "motd: edited after staging", "hello: hello 2.0", "sysroot: the physical root", "record: written", "no mount below the sysroot", "ostree generator: off", "kept: run-nextroot.mount", "kept: run-nextroot-.mount", "kept: run-treeboot-nextroot.mount", "kept: run-treeboot-nextroot-.mount", "drop-ins: 4", "staged: finalized"] {
        assert!(next.contains(want), "{want:?} in:\n{next}");
    }
    // After the switch, treeboot-remount makes the record /run/ostree-booted.
    let after = part("--- switched", "\u{0}");
    assert!(after.contains("record: promoted") && after.contains("drop-ins: removed"), "{out}");
    let st: serde_json::Value = serde_json::from_str(after.split_once("drop-ins: removed").unwrap().1).unwrap();
    assert_eq!(field(&st, "2.0", "booted"), true, "{st}");
    assert_eq!(field(&st, "1.0", "booted"), false);
    assert_eq!(field(&st, "2.0", "soft_reboot_target"), false);
}

#[test]
fn another_kernel_is_refused_and_nothing_changes() {
    let s = Scratch::new("softk");
    let root = booted_on_v1(&s);
    let (out, _) = ns(&root, r#"
$TB --sysroot $S stage testos/v3
before=$(cd $S && find boot ostree/boot.* -printf '%p %l\n' | sort | md5sum)
set +e
$TB --sysroot $S soft-reboot --prepare-only 2>/tmp/err.$$
echo "exit=$?"
set -e
cat /tmp/err.$$; rm /tmp/err.$$
after=$(cd $S && find boot ostree/boot.* -printf '%p %l\n' | sort | md5sum)
[ "$before" = "$after" ] && echo "boot: unchanged"
test -e /run/ostree/staged-deployment && echo "still staged"
findmnt /run/nextroot >/dev/null || echo "no next root"
test ! -e /run/ostree/nextroot-booted && echo "no record"
$TB --sysroot $S status
echo "--- nothing staged"
$TB --sysroot $S undeploy 0 >/dev/null
set +e
$TB --sysroot $S soft-reboot --prepare-only 2>&1
echo "exit=$?"
echo "--- locked"
$TB --sysroot $S stage --lock-finalization testos/v2 2>/dev/null
$TB --sysroot $S soft-reboot --prepare-only 2>&1
echo "exit=$?"
findmnt /run/nextroot >/dev/null || echo "no next root"
"#);
    for want in ["exit=7", "cannot soft-reboot into testos/", "its kernel or initramfs differs from the booted one", "boot: unchanged", "still staged", "no next root", "no record", "Soft reboot: not possible, its kernel or initramfs differs"] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let (tail, locked) = out.split("--- nothing staged").nth(1).unwrap().split_once("--- locked").unwrap();
    assert!(locked.contains("is locked: `treeboot lock-finalization --unlock` first") && locked.contains("exit=7") && locked.contains("no next root"), "{locked}");
    assert!(tail.contains("nothing is staged and the default deployment is the booted one") && tail.contains("exit=7"), "{tail}");
}

#[test]
fn reset_takes_the_prepared_root_down_and_a_stale_record_is_dropped() {
    let s = Scratch::new("softr");
    let root = booted_on_v1(&s);
    let (out, _) = ns(&root, r#"
$TB --sysroot $S deploy --retain testos/v2 >/dev/null
$TB --sysroot $S soft-reboot --prepare-only 0
findmnt /run/nextroot >/dev/null && echo "prepared"
# Prepared again (another try): the first root is taken down first.
$TB --sysroot $S soft-reboot --prepare-only 0 >/dev/null
test "$(findmnt -n /run/nextroot | wc -l)" = 1 && echo "one next root"
$TB --sysroot $S soft-reboot --reset
findmnt /run/nextroot >/dev/null || echo "unmounted"
test ! -e /run/ostree/nextroot-booted && echo "record removed"
test -z "$(ls /run/systemd/system)" && echo "drop-ins removed"
$TB --sysroot $S soft-reboot --reset
# A soft reboot that did not switch: the record names another root.
$TB --sysroot $S soft-reboot --prepare-only 0 >/dev/null
$REMOUNT --root / 2>&1 | grep -o "removed /run/ostree/nextroot-booted" || true
test ! -e /run/ostree/nextroot-booted && echo "stale record dropped"
$TB --sysroot $S status --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["deployments"]; print("booted", [x["version"] for x in d if x["booted"]])'
"#);
    for want in ["prepared", "one next root", "The prepared soft reboot was taken down", "unmounted", "record removed", "drop-ins removed", "No soft reboot was prepared", "removed /run/ostree/nextroot-booted", "stale record dropped", "booted ['1.0']"] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
}

#[test]
fn switch_apply_soft_reboots_when_it_can_and_auto_falls_back_to_a_full_reboot() {
    let s = Scratch::new("softup");
    let root = booted_on_v1(&s);
    // systemctl that only says what it was asked; a systemd with
    // soft-reboot.target (this host's is older), in the namespace only.
    let fake = s.join("fakebin");
    write(&fake.join("systemctl"), &format!("#!/bin/sh\necho \"$@\" >> {}/called\n", fake.display()));
    run(std::process::Command::new("chmod").arg("+x").arg(fake.join("systemctl")));
    let (out, _) = ns(&root, &format!(r#"
mount -t tmpfs units /usr/lib/systemd/system && touch /usr/lib/systemd/system/soft-reboot.target
export PATH={fake}:$PATH
$TB --sysroot $S --json switch --apply --soft-reboot=required testos/v2 > /tmp/sw.$$
echo "--- switched"; cat /tmp/sw.$$; rm /tmp/sw.$$
echo "--- called"; cat {fake}/called; rm {fake}/called
findmnt /run/nextroot >/dev/null && echo "next root prepared"
cat /run/nextroot/usr/bin/hello
$TB --sysroot $S soft-reboot --reset >/dev/null
set +e
$TB --sysroot $S switch --apply --soft-reboot=required testos/v3 2>/tmp/err.$$
echo "required: exit=$?"
set -e
cat /tmp/err.$$
test ! -e {fake}/called && echo "nothing called"
$TB --sysroot $S switch --apply --soft-reboot=auto testos/v3
echo "--- called"; cat {fake}/called
echo "--- status"; $TB --sysroot $S status --json
"#, fake = fake.display()));
    let doc: serde_json::Value = serde_json::from_str(out.split("--- switched").nth(1).unwrap().split("--- called").next().unwrap()).unwrap();
    assert_eq!(doc["action"], "staged", "{doc}");
    assert_eq!(doc["reboot"], true);
    assert_eq!(doc["soft_reboot"], true);
    for want in ["--- called\nsoft-reboot --no-block\n", "next root prepared", "hello 2.0", "required: exit=7", "its kernel or initramfs differs", "nothing called", "No soft reboot: cannot soft-reboot into", "Rebooting to apply the update"] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let (rest, st) = out.split_once("--- status").unwrap();
    assert!(rest.trim_end().ends_with("--- called\nreboot"), "auto: a full reboot\n{out}");
    // v2 was applied by the soft reboot; v3 is staged for the full one.
    let st: serde_json::Value = serde_json::from_str(st).unwrap();
    assert_eq!(st["deployments"][0]["staged"], true);
    assert_eq!(st["deployments"][0]["version"], "3.0");
    assert_eq!(st["deployments"][1]["version"], "2.0");
    assert_eq!(st["deployments"][1]["default"], true);
}
