//! A full /boot and concurrent writers.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// Run a bash script in a private mount namespace, `$TB` being treeboot
/// and `$S` the sysroot `root`.
fn in_mount_namespace(root: &Path, script: &str) -> std::process::Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "bash", "-c", script])
        .env("TB", treeboot_bin())
        .env("S", root)
        .output()
        .unwrap()
}

/// A tree whose kernel and initramfs take 1 MiB each.
fn big_kernel_commit(s: &Scratch, root: &Path) {
    commit_tree(s, &root.join("ostree/repo"), "testos/big", "big", "big", "9.0", |t| {
        let mut k = vec![0u8; 1 << 20];
        for (i, b) in k.iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        std::fs::write(t.join("usr/lib/modules/6.1.0-test/vmlinuz"), &k).unwrap();
        k.reverse();
        std::fs::write(t.join("usr/lib/modules/6.1.0-test/initramfs.img"), &k).unwrap();
    });
}

/// Run `deploy testos/big` with /boot on a 4 MiB tmpfs that has `free`
/// bytes left. Returns (exit code, stdout of the script, stderr).
fn deploy_on_full_boot(s: &Scratch, base: &Path, tag: &str, free: u64, skip_check: bool) -> (i32, String, String) {
    let root = s.join(tag);
    copy_sysroot(base, &root);
    let script = format!(r#"
set -eu
cp -a "$S/boot" "$S/../{tag}.boot-copy"
mount -t tmpfs -o size=4m tmpfs "$S/boot"
cp -a "$S/../{tag}.boot-copy/." "$S/boot/"
avail=$(($(stat -f -c '%a*%S' "$S/boot")))
fill=$((avail - {free}))
if [ $fill -gt 0 ]; then head -c $fill /dev/zero > "$S/boot/filler" 2>/dev/null || true; fi
set +e
{env} $TB --sysroot $S deploy testos/big > /dev/null
echo "rc=$?"
$TB --sysroot $S verify > /dev/null && echo "verify=ok"
$TB --sysroot $S status --json | python3 -c 'import json,sys; print("default=" + json.load(sys.stdin)["deployments"][0]["version"])'
ls -a $S/boot/ostree | grep -c '^\.tmp-' | sed 's/^/tmpdirs=/'
ls $S/ostree/deploy/testos/deploy | wc -l | sed 's/^/deploydir=/'
"#, env = if skip_check { "TREEBOOT_TEST_NO_SPACE_CHECK=1" } else { "" });
    let out = in_mount_namespace(&root, &script);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let rc = stdout.lines().find_map(|l| l.strip_prefix("rc=")).and_then(|r| r.parse().ok()).unwrap_or(-1);
    (rc, stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn full_boot_never_breaks_the_old_default() {
    assert!(treeboot::failpoint::enabled(), "needs --features failpoints (to let writes reach ENOSPC past the up-front check)");
    let s = Scratch::new("fullboot");
    let base = sysroot_with_commits(&s);
    run(tb(&base).args(["deploy", "testos/v1"]));
    big_kernel_commit(&s, &base);
    // Refused up front, with the sizes, when the space is known to be short.
    let (rc, out, err) = deploy_on_full_boot(&s, &base, "upfront", 1 << 20, false);
    assert_eq!(rc, 5, "{out} {err}");
    assert!(err.contains("not enough space in /boot") && err.contains("2048 KiB"), "{err}");
    assert!(out.contains("verify=ok") && out.contains("default=1.0") && out.contains("deploydir=2"), "{out}");
    // Past the check, every write in turn meets ENOSPC: coarse steps, then
    // page by page around the size of the kernel files plus the entries.
    let need: u64 = 2 << 20;
    let mut frees: Vec<u64> = (0..8).map(|i| i * (need / 8)).collect();
    frees.extend((0..24).map(|i| need - 8192 + i * 4096));
    let (mut failed, mut succeeded) = (0, 0);
    for (i, free) in frees.iter().enumerate() {
        let (rc, out, err) = deploy_on_full_boot(&s, &base, &format!("run{i}"), *free, true);
        assert!(out.contains("verify=ok"), "free={free}: not bootable: {out} {err}");
        assert!(out.contains("tmpdirs=0"), "free={free}: a half-made kernel directory was left: {out}");
        if rc == 0 {
            succeeded += 1;
            assert!(out.contains("default=9.0"), "{out}");
        } else {
            failed += 1;
            assert!(out.contains("default=1.0"), "free={free}: the old default changed: {out}");
            assert!(err.contains("/boot"), "free={free}: the error does not name /boot: {err}");
            assert!(out.contains("deploydir=2"), "free={free}: the new deployment was left: {out}");
        }
    }
    println!("full /boot: {} runs, {failed} failed cleanly with ENOSPC, {succeeded} succeeded", frees.len());
    assert!(failed >= 8 && succeeded >= 1, "{failed} failed, {succeeded} succeeded");
}

#[test]
fn concurrent_writers_and_readers() {
    let s = Scratch::new("concurrent");
    let root = sysroot_with_commits(&s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    let rounds = 6;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let reads = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        // Readers: status must always succeed and show a whole list.
        for r in 0..2 {
            let (root, stop, reads) = (&root, &stop, &reads);
            sc.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let out = if r == 0 {
                        tb(root).args(["status", "--json"]).output().unwrap()
                    } else {
                        ostree_admin(root).arg("status").output().unwrap()
                    };
                    assert!(out.status.success(), "reader {r} failed: {}", String::from_utf8_lossy(&out.stderr));
                    reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        // Four writers, treeboot and ostree admin mixed.
        let mut handles = Vec::new();
        for w in 0..4 {
            let root = &root;
            handles.push(sc.spawn(move || {
                for i in 0..rounds {
                    let v = ["testos/v1", "testos/v2", "testos/v3"][(w + i) % 3];
                    let out = match w {
                        0 => tb(root).args(["deploy", v]).output().unwrap(),
                        1 => ostree_admin(root).args(["deploy", "--os=testos", v]).output().unwrap(),
                        2 => tb(root).args(["kargs", "--append", &format!("w{w}r{i}=1")]).output().unwrap(),
                        _ => ostree_admin(root).args(["deploy", "--os=testos", "--retain", v]).output().unwrap(),
                    };
                    assert!(out.status.success(), "writer {w} round {i}: {}", String::from_utf8_lossy(&out.stderr));
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    run(tb(&root).arg("verify"));
    assert_eq!(ostree_status_names(&root), treeboot_status_names(&root));
    println!("concurrency: 4 writers x {rounds} rounds, {} reads, verify ok", reads.load(std::sync::atomic::Ordering::SeqCst));
}

/// A deploy whose swap is held inside the freeze of /boot (a failpoint
/// sleeps between FIFREEZE and FITHAW) on an ext4 /boot, while `interrupt`
/// (shell, with the writer's pid in $pid) happens to the writer. Afterwards
/// /boot must be writable within a few seconds, whatever happened to the
/// writer. Returns the script's stdout.
fn frozen_boot_interrupted(tag: &str, sleep_ms: u32, probe_secs: u32, env: &str, interrupt: &str) -> String {
    let probe_tenths = probe_secs * 10;
    let s = Scratch::new(tag);
    let root = sysroot_with_commits(&s);
    run(tb(&root).args(["deploy", "testos/v1"]));
    let script = format!(r#"
set -eu
img=$S/../boot.img
truncate -s 64M $img
mkfs.ext4 -q $img
cp -a $S/boot $S/../boot-copy
loop=$(losetup -f --show $img)
mount $loop $S/boot
# Whatever happens, never leave a frozen file system behind.
trap 'fsfreeze -u $S/boot 2>/dev/null || true; umount $S/boot || umount -l $S/boot; losetup -d $loop' EXIT
cp -a $S/../boot-copy/. $S/boot/
log=$S/../writer.log
# With job control the writer is a process group of its own with SIGINT
# at its default (as a command run from a terminal), not ignored as in the
# background jobs of a script.
set -m
# SIGINT and SIGQUIT at their defaults whatever this test inherited: a make
# or CI runner started in the background passes them on ignored, and a
# shell does not un-ignore them for its jobs.
FAILPOINTS='swap::frozen=1*sleep({sleep_ms})' {env} env --default-signal=INT,QUIT $TB --sysroot $S deploy testos/v2 >/dev/null 2>$log &
pid=$!
set +m
# Frozen: a write to /boot blocks (uninterruptible sleep), and keeps
# blocking. On a loaded machine a write can sit in D for a moment on I/O
# alone, and a signal sent before the writer has even exec'd is lost: so
# the writer must be treeboot (or the treeboot-writer it execs) already,
# and the probe still blocked 2 s on.
frozen=""
for i in $(seq 150); do
    touch $S/boot/probe-$i & w=$!
    sleep 0.3
    if grep -q '^State:.*D' /proc/$w/status 2>/dev/null && readlink /proc/$pid/exe | grep -q '/treeboot[^/]*$'; then
        sleep 2
        if grep -q '^State:.*D' /proc/$w/status 2>/dev/null; then frozen=1; break; fi
    fi
    wait $w
done
[ -n "$frozen" ] || {{ echo "never froze"; cat $log; exit 1; }}
echo "frozen"
{interrupt}
# A write to a frozen file system blocks uninterruptibly: poll a background
# touch instead of waiting on it, and thaw by hand if it is stuck.
touch $S/boot/probe & probe=$!
for i in $(seq {probe_tenths}); do kill -0 $probe 2>/dev/null || break; sleep 0.1; done
if kill -0 $probe 2>/dev/null; then echo "BOOT STILL FROZEN"; fsfreeze -u $S/boot; fi
wait $probe && echo "boot written"
set +e
wait $pid
echo "writer exit=$?"
# Bootable, whatever the writer managed to do (checked while /boot is mounted).
$TB --sysroot $S verify >/dev/null && echo "verify ok"
"#);
    let out = in_mount_namespace(&root, &script);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{tag}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("frozen") && !stdout.contains("BOOT STILL FROZEN") && stdout.contains("boot written"), "{tag}: /boot must be writable within {probe_secs} s: {stdout}");
    assert!(stdout.contains("verify ok"), "{tag}: {stdout}");
    stdout
}

#[test]
fn freeze_watchdog_thaws_when_the_writer_gets_ctrl_c() {
    assert!(treeboot::failpoint::enabled(), "needs --features failpoints");
    // Ctrl-C: SIGINT to the writer's whole process group (and to the
    // watchdog too, which has left that group).
    let out = frozen_boot_interrupted("freeze-int", 20_000, 5, "", "pkill -INT -P $pid; kill -INT -- -$pid");
    assert!(out.contains("writer exit=130"), "killed by SIGINT: {out}");
}

#[test]
fn freeze_watchdog_thaws_when_the_writer_is_killed() {
    assert!(treeboot::failpoint::enabled(), "needs --features failpoints");
    // systemd's stop of a unit: SIGTERM to every process of it (the
    // watchdog must outlive it), then SIGKILL of the writer.
    let out = frozen_boot_interrupted("freeze-kill", 20_000, 5, "", "pkill -TERM -P $pid; sleep 0.5; kill -KILL $pid");
    assert!(out.contains("writer exit=137"), "killed by SIGKILL: {out}");
}

#[test]
fn freeze_watchdog_thaws_a_stalled_writer_on_its_own() {
    assert!(treeboot::failpoint::enabled(), "needs --features failpoints");
    // The writer stalls for 15 s while /boot is frozen; the watchdog's
    // timeout (3 s here, 30 s by default) thaws it meanwhile (a write 4 s
    // in must finish within 3 s, long before the writer wakes), and the
    // deploy still completes.
    let out = frozen_boot_interrupted("freeze-stall", 15_000, 3, "TREEBOOT_FREEZE_TIMEOUT_MS=3000", "sleep 4; kill -0 $pid && echo 'writer still frozen-sleeping'");
    assert!(out.contains("writer still frozen-sleeping"), "{out}");
    assert!(out.contains("writer exit=0"), "the deploy completes: {out}");
}
