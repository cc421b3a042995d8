//! The crash matrix: every writing operation is killed at each of its
//! failpoints in turn (the process aborts, as at a power cut: no destructor
//! runs), and after each death the sysroot must boot the old or the new
//! default, `treeboot verify` must pass, Debian's `ostree admin status` must
//! read it, and re-running the operation (or cleanup) must complete it.
//! Needs a build with `--features failpoints` (make test does that).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

fn writer() -> PathBuf {
    Path::new(treeboot_bin()).with_file_name("treeboot-writer")
}

/// A deployment directory no entry names, which cleanup must remove.
const ORPHAN: &str = "ostree/deploy/testos/deploy/ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff.9";

fn default_csum(root: &Path) -> String {
    status_json(root)["deployments"][0]["checksum"].as_str().unwrap().to_string()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A command on the directory sysroot.
    Plain,
    /// `stage`, in a booted namespace; completed by staging again and finalizing.
    Stage,
    /// `finalize-staged` after a stage, in a booted namespace.
    Finalize,
    /// The same, with the staged kernel not in /boot yet (as ostree stages:
    /// libostree copies kernels at finalize time).
    FinalizeCopyingKernel,
    /// `stage testos/v1` while testos/v3 is staged, in a booted namespace:
    /// after a crash either stays staged; completed by staging again.
    Restage,
    /// `assess-boot` booted from deployment 1 (v1) with GRUB's counter of
    /// the default (v2) at 0: the permanent rollback; completed by running
    /// it again.
    AssessBoot,
}

/// Shell: GRUB spent the default's tries (its grubenv variable at 0).
fn spend_default() -> &'static str {
    "v=$($TB --sysroot $S status --json | python3 -c 'import json,sys; d=json.load(sys.stdin)[\"deployments\"][0]; print(\"treeboot_tries_%s_%d\" % (d[\"checksum\"][:16], d[\"serial\"]))')\ngrub-editenv $S/boot/grub/grubenv set $v=0\n"
}

/// A writing operation of the matrix.
struct Op {
    name: &'static str,
    kind: Kind,
    args: Vec<String>,
    /// Run after the base is copied, before the operation (same for all runs).
    /// The expected default checksum after success.
    new_default: String,
    old_default: String,
    /// Extra check of the final state after completion.
    done: fn(&Path) -> bool,
}

/// Shell: stage testos/v3; for [`Kind::FinalizeCopyingKernel`], then take
/// its kernel out of /boot.
fn stage_v3(kind: Kind) -> &'static str {
    match kind {
        Kind::FinalizeCopyingKernel => "$TB --sysroot $S stage testos/v3 >/dev/null\nrm -r $S/boot/ostree/testos-$($TB --sysroot $S status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"deployments\"][0][\"bootcsum\"])')\n",
        _ => "$TB --sysroot $S stage testos/v3 >/dev/null\n",
    }
}

/// The base: three deployments (v1 rollback, v2 default... ), and commits;
/// boot counting on (`[sysroot] boot-counting-tries=3`), so that every
/// operation also meets entries with counters (and bless and mark-bad have
/// one to change).
fn base(s: &Scratch, layout: Layout) -> PathBuf {
    let root = sysroot_with_commits(s);
    match layout {
        // A GRUB sysroot: every swap also writes grub.cfg, and grubenv where
        // GRUB counts.
        Layout::Symlink => std::fs::create_dir_all(root.join("boot/grub")).unwrap(),
        // systemd-boot's: `loader/` as `bootctl install` leaves it, with a
        // loader.conf every swap must keep.
        Layout::Directory => write(&root.join("boot/loader/loader.conf"), "timeout 3\n"),
    }
    let config = root.join("ostree/repo/config");
    let plain = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{plain}\n[sysroot]\nboot-counting-tries=3\n")).unwrap();
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    run(tb(&root).args(["deploy", "testos/v2"]));
    // A local /etc edit, so that deploys really merge.
    write(&deployment_dir(&root, 0).join("etc/local.conf"), "mine\n");
    run(tb(&root).args(["os-init", "other"]));
    root
}

fn csum_of(root: &Path, r: &str) -> String {
    let sr = treeboot::sysroot::Sysroot::load(camino::Utf8Path::from_path(root).unwrap()).unwrap();
    treeboot::repo::Repo::open(&sr.root).unwrap().resolve(r).unwrap()
}

fn failpoints_hit(root: &Path, op: &Op, log: &Path) -> Vec<String> {
    let _ = std::fs::remove_file(log);
    match op.kind {
        Kind::Plain => {
            run(Command::new(writer()).arg("--sysroot").arg(root).args(&op.args).env("TREEBOOT_FAILPOINT_LOG", log));
        }
        Kind::Stage => {
            let r = in_booted_namespace(root, 0, &format!("TREEBOOT_FAILPOINT_LOG={} $TB --sysroot $S stage testos/v3\n$TB --sysroot $S finalize-staged\n", log.display()));
            assert!(r.0, "{} {}", r.1, r.2);
        }
        Kind::Finalize | Kind::FinalizeCopyingKernel => {
            let r = in_booted_namespace(root, 0, &format!("{}TREEBOOT_FAILPOINT_LOG={} $TB --sysroot $S finalize-staged\n", stage_v3(op.kind), log.display()));
            assert!(r.0, "{} {}", r.1, r.2);
        }
        Kind::Restage => {
            let r = in_booted_namespace(root, 0, &format!("$TB --sysroot $S stage testos/v3\nTREEBOOT_FAILPOINT_LOG={} $TB --sysroot $S stage testos/v1\n$TB --sysroot $S finalize-staged\n", log.display()));
            assert!(r.0, "{} {}", r.1, r.2);
        }
        Kind::AssessBoot => {
            let r = in_booted_namespace(root, 1, &format!("{}TREEBOOT_FAILPOINT_LOG={} $TB --sysroot $S assess-boot --state-dir /nonexistent\n", spend_default(), log.display()));
            assert!(r.0, "{} {}", r.1, r.2);
        }
    }
    // (swap::frozen, inside the freeze, is never logged: tests/reliability.rs
    // covers it with /boot on a loop device.)
    std::fs::read_to_string(log).unwrap_or_default().lines().map(String::from).collect()
}

#[test]
fn crash_at_every_failpoint_leaves_a_bootable_sysroot() {
    let s = Scratch::new("crash");
    let b = base(&s, Layout::Symlink);
    matrix(&s, &b, Layout::Symlink, 200);
}

/// The same matrix with the deployment list as a directory (`boot/loader/`,
/// the layout of a FAT /boot: its directory swap, docs/fat-boot.md), here
/// on the host's file system: every step's order, killed at each failpoint.
/// What FAT itself does at a power cut is the lost-writes replay's part, in
/// a guest (kola-tests/14-fat-lost-writes.sh). libostree cannot read this
/// layout, so `ostree admin status` is not asked; GRUB's counter is not
/// used (assess-boot is left out).
#[test]
fn crash_at_every_failpoint_leaves_a_bootable_directory_list() {
    let s = Scratch::new("crash-dir");
    let b = base(&s, Layout::Directory);
    matrix(&s, &b, Layout::Directory, 150);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Symlink,
    Directory,
}

fn matrix(s: &Scratch, b: &Path, layout: Layout, min_points: usize) {
    assert!(treeboot::failpoint::enabled(), "the crash matrix needs `cargo test --features failpoints`");
    let b = b.to_path_buf();
    if layout == Layout::Directory {
        assert!(b.join("boot/loader").is_dir() && b.join("boot/loader/ostree-bootversion").is_file(), "the base has the directory layout");
    }
    let v1 = csum_of(&b, "testos/v1");
    let v2 = csum_of(&b, "testos/v2");
    let v3 = csum_of(&b, "testos/v3");
    let sv = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let ops = vec![
        Op { name: "stage", kind: Kind::Stage, args: vec![], old_default: v2.clone(), new_default: v3.clone(), done: |r| status_json(r)["deployments"][0]["version"] == "3.0" },
        Op { name: "finalize-staged", kind: Kind::Finalize, args: vec![], old_default: v2.clone(), new_default: v3.clone(), done: |r| status_json(r)["deployments"][0]["version"] == "3.0" },
        Op { name: "finalize copying the kernel", kind: Kind::FinalizeCopyingKernel, args: vec![], old_default: v2.clone(), new_default: v3.clone(), done: |r| status_json(r)["deployments"][0]["version"] == "3.0" },
        Op { name: "stage again", kind: Kind::Restage, args: vec![], old_default: v2.clone(), new_default: v1.clone(), done: |r| status_json(r)["deployments"][0]["version"] == "1.0" && status_json(r)["deployments"][0]["serial"] == 1 },
        Op { name: "deploy --os other", kind: Kind::Plain, args: sv(&["deploy", "--os", "other", "--not-as-default", "testos/v3"]), old_default: v2.clone(), new_default: v2.clone(), done: |r| status_json(r)["deployments"].as_array().unwrap().iter().any(|d| d["stateroot"] == "other") },
        Op { name: "deploy --retain", kind: Kind::Plain, args: sv(&["deploy", "--retain", "testos/v3"]), old_default: v2.clone(), new_default: v3.clone(), done: |r| status_json(r)["deployments"].as_array().unwrap().len() == 3 },
        Op { name: "deploy", kind: Kind::Plain, args: sv(&["deploy", "testos/v3"]), old_default: v2.clone(), new_default: v3.clone(), done: |r| status_json(r)["deployments"][0]["version"] == "3.0" },
        Op { name: "deploy --not-as-default", kind: Kind::Plain, args: sv(&["deploy", "--not-as-default", "testos/v3"]), old_default: v2.clone(), new_default: v2.clone(), done: |r| status_json(r)["deployments"][1]["version"] == "3.0" },
        Op { name: "set-default", kind: Kind::Plain, args: sv(&["set-default", "1"]), old_default: v2.clone(), new_default: v1.clone(), done: |r| status_json(r)["deployments"][0]["version"] == "1.0" },
        Op { name: "rollback", kind: Kind::Plain, args: sv(&["rollback"]), old_default: v2.clone(), new_default: v1.clone(), done: |r| status_json(r)["deployments"][0]["version"] == "1.0" },
        Op { name: "undeploy", kind: Kind::Plain, args: sv(&["undeploy", "1"]), old_default: v2.clone(), new_default: v2.clone(), done: |r| status_json(r)["deployments"].as_array().unwrap().len() == 1 },
        Op { name: "pin", kind: Kind::Plain, args: sv(&["pin", "1"]), old_default: v2.clone(), new_default: v2.clone(), done: |r| status_json(r)["deployments"][1]["pinned"] == true },
        Op { name: "kargs", kind: Kind::Plain, args: sv(&["kargs", "--append", "crashtest=1"]), old_default: v2.clone(), new_default: v2.clone(), done: |r| status_json(r)["deployments"][0]["kargs"].as_str().unwrap().contains("crashtest=1") },
        Op { name: "bless", kind: Kind::Plain, args: sv(&["bless", "0"]), old_default: v2.clone(), new_default: v2.clone(), done: |r| status_json(r)["deployments"][0]["boot_tries_left"].is_null() },
        Op { name: "mark-bad", kind: Kind::Plain, args: sv(&["mark-bad", "1"]), old_default: v2.clone(), new_default: v2.clone(), done: |r| status_json(r)["deployments"][1]["boot_tries_left"] == 0 },
        Op { name: "assess-boot", kind: Kind::AssessBoot, args: vec![], old_default: v2.clone(), new_default: v1.clone(), done: |r| status_json(r)["deployments"][0]["version"] == "1.0" && !status_json(r)["deployments"][1]["boot_failure"].is_null() },
        Op { name: "cleanup", kind: Kind::Plain, args: sv(&["cleanup"]), old_default: v2.clone(), new_default: v2.clone(), done: |r| !r.join(ORPHAN).exists() },
    ];
    // An orphan for cleanup to remove in every run.
    let orphan = b.join(ORPHAN);
    std::fs::create_dir_all(orphan.join("usr")).unwrap();

    let total = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let per_op = Mutex::new(Vec::<String>::new());
    // TREEBOOT_CRASH_ONLY=NAME,NAME runs only those operations (to look at one).
    let only: Option<Vec<String>> = std::env::var("TREEBOOT_CRASH_ONLY").ok().map(|v| v.split(',').map(String::from).collect());
    let applies = |op: &Op| layout == Layout::Symlink || op.kind != Kind::AssessBoot;
    for op in ops.iter().filter(|op| applies(op) && only.as_ref().is_none_or(|o| o.iter().any(|n| n == op.name))) {
        let t_op = std::time::Instant::now();
        let probe = s.join(&format!("probe-{}", op.name.replace(' ', "_")));
        copy_sysroot(&b, &probe);
        let hits = failpoints_hit(&probe, op, &s.join("hits.log"));
        assert!((op.done)(&probe), "{}: the operation itself does not do what the test expects", op.name);
        assert!(!hits.is_empty(), "{}: no failpoint was passed", op.name);
        let n_hits = hits.len();
        let next = AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..2 {
                sc.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= hits.len() {
                        break;
                    }
                    let name = &hits[i];
                    let nth = hits[..i].iter().filter(|h| *h == name).count();
                    let spec = if nth == 0 { format!("{name}=return") } else { format!("{name}={nth}*off->return") };
                    let dir = s.join(&format!("run-{}-{i}", op.name.replace(' ', "_")));
                    copy_sysroot(&b, &dir);
                    let r = check_crash(&dir, op, &spec, layout).and_then(|()| {
                        // systemd-boot's own settings go with every list.
                        let conf = std::fs::read_to_string(dir.join("boot/loader/loader.conf")).ok();
                        if layout == Layout::Directory && conf.as_deref() != Some("timeout 3\n") {
                            return Err(format!("boot/loader/loader.conf is {conf:?} after completing"));
                        }
                        Ok(())
                    });
                    total.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = r {
                        failures.lock().unwrap().push(format!("{} at {spec}: {e}", op.name));
                    }
                    let _ = Command::new("chattr").args(["-R", "-i"]).arg(&dir).output();
                    let _ = std::fs::remove_dir_all(&dir);
                });
            }
        });
        per_op.lock().unwrap().push(format!("{}: {n_hits} in {:.0} s", op.name, t_op.elapsed().as_secs_f64()));
    }
    let n = total.load(Ordering::SeqCst);
    let f = failures.into_inner().unwrap();
    println!("crash matrix ({}): {n} crash points exercised ({}), {} failures", if layout == Layout::Symlink { "boot/loader symlink" } else { "boot/loader directory" }, per_op.into_inner().unwrap().join(", "), f.len());
    assert!(f.is_empty(), "{}", f.join("\n"));
    assert!(only.is_some() || n >= min_points, "only {n} crash points");
}

fn check_crash(dir: &Path, op: &Op, spec: &str, layout: Layout) -> Result<(), String> {
    if op.kind != Kind::Plain {
        return check_crash_booted(dir, op, spec, layout);
    }
    let out = Command::new(writer()).arg("--sysroot").arg(dir).args(&op.args).env("FAILPOINTS", spec).output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    if out.status.signal() != Some(libc::SIGABRT) {
        return Err(format!("did not crash: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    verified(dir, "after the crash")?;
    let d = default_csum(dir);
    if d != op.old_default && d != op.new_default {
        return Err(format!("default is {d}, neither the old nor the new one"));
    }
    if layout == Layout::Symlink {
        let st = Command::new("ostree").arg("admin").arg(format!("--sysroot={}", dir.display())).arg("status").output().unwrap();
        if !st.status.success() {
            return Err(format!("ostree admin status fails: {}", String::from_utf8_lossy(&st.stderr)));
        }
    }
    // Complete it: if the new state is already live, cleanup; else re-run.
    let complete: Vec<String> = if (op.done)(dir) { vec!["cleanup".into()] } else { op.args.clone() };
    let o = Command::new(treeboot_bin()).arg("--sysroot").arg(dir).args(&complete).output().unwrap();
    if !o.status.success() {
        return Err(format!("completing with {complete:?} failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    if !(op.done)(dir) {
        return Err(format!("after {complete:?}, the operation's result is not there"));
    }
    verified(dir, "after completing")?;
    Ok(())
}

fn verified(dir: &Path, when: &str) -> Result<(), String> {
    let v = Command::new(treeboot_bin()).arg("--sysroot").arg(dir).arg("verify").output().unwrap();
    if !v.status.success() {
        return Err(format!("verify {when}: {}", String::from_utf8_lossy(&v.stdout)));
    }
    Ok(())
}

/// stage and finalize: crash inside a booted namespace; complete there too
/// (the staged record lives in its /run).
fn check_crash_booted(dir: &Path, op: &Op, spec: &str, layout: Layout) -> Result<(), String> {
    let script = match op.kind {
        Kind::Stage => format!(r#"
set +e
FAILPOINTS='{spec}' $TB --sysroot $S stage testos/v3 >/dev/null 2>&1
echo "rc=$?"
$TB --sysroot $S verify >/dev/null || {{ echo "NOT BOOTABLE after the crash"; $TB --sysroot $S verify; }}
$TB --sysroot $S stage testos/v3 >/dev/null && $TB --sysroot $S finalize-staged >/dev/null && echo COMPLETED
"#),
        Kind::Restage => format!(r#"
$TB --sysroot $S stage testos/v3 >/dev/null
set +e
FAILPOINTS='{spec}' $TB --sysroot $S stage testos/v1 >/dev/null 2>&1
echo "rc=$?"
$TB --sysroot $S verify >/dev/null || {{ echo "NOT BOOTABLE after the crash"; $TB --sysroot $S verify; }}
echo "STAGED $($TB --sysroot $S status --json | tr -d '\n')"
$TB --sysroot $S stage testos/v1 >/dev/null && $TB --sysroot $S finalize-staged >/dev/null && echo COMPLETED
"#),
        Kind::AssessBoot => format!(r#"
{}set +e
FAILPOINTS='{spec}' $TB --sysroot $S assess-boot --state-dir /nonexistent >/dev/null 2>&1
echo "rc=$?"
$TB --sysroot $S verify >/dev/null || {{ echo "NOT BOOTABLE after the crash"; $TB --sysroot $S verify; }}
echo "DEFAULT $($TB --sysroot $S status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["deployments"][0]["checksum"])')"
$TB --sysroot $S assess-boot --state-dir /nonexistent >/dev/null && echo COMPLETED
"#, spend_default()),
        _ => format!(r#"
{}set +e
FAILPOINTS='{spec}' $TB --sysroot $S finalize-staged >/dev/null 2>&1
echo "rc=$?"
$TB --sysroot $S verify >/dev/null || {{ echo "NOT BOOTABLE after the crash"; $TB --sysroot $S verify; }}
if [ -e /run/ostree/staged-deployment ]; then $TB --sysroot $S finalize-staged >/dev/null && echo COMPLETED; else echo NOTHING-TO-COMPLETE; fi
"#, stage_v3(op.kind)),
    };
    let booted = if op.kind == Kind::AssessBoot { 1 } else { 0 };
    let (ok, out, err) = in_booted_namespace(dir, booted, &script);
    if !ok {
        return Err(format!("script failed: {out} {err}"));
    }
    if !out.contains("rc=134") {
        return Err(format!("did not crash: {out} {err}"));
    }
    if out.contains("NOT BOOTABLE") {
        return Err(out);
    }
    if op.kind == Kind::Restage {
        // Staging again never leaves nothing staged: the old stage until
        // the new record is written, the new one after.
        let line = out.lines().find_map(|l| l.strip_prefix("STAGED ")).ok_or_else(|| format!("no status: {out} {err}"))?;
        let st: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("status after the crash: {e}: {line}"))?;
        let staged = st["deployments"].as_array().unwrap().iter().find(|d| d["staged"] == true).map(|d| d["version"].as_str().unwrap_or("").to_string());
        if staged.as_deref() != Some("3.0") && staged.as_deref() != Some("1.0") {
            return Err(format!("after the crash the staged deployment is {staged:?}, neither the old stage (3.0) nor the new (1.0)"));
        }
    }
    if op.kind == Kind::AssessBoot {
        let d = out.lines().find_map(|l| l.strip_prefix("DEFAULT ")).unwrap_or("");
        if d != op.old_default && d != op.new_default {
            return Err(format!("after the crash the default is {d:?}, neither the old nor the new one"));
        }
        if !(op.done)(dir) {
            return Err(format!("assess-boot again did not make the rollback permanent: {out} {err}"));
        }
    }
    if !out.contains("COMPLETED") && !out.contains("NOTHING-TO-COMPLETE") {
        return Err(format!("could not complete: {out} {err}"));
    }
    let d = default_csum(dir);
    if d != op.old_default && d != op.new_default {
        return Err(format!("default is {d}, neither the old nor the new one"));
    }
    if matches!(op.kind, Kind::Stage | Kind::Restage) && d != op.new_default {
        return Err("staging again and finalizing did not apply the update".into());
    }
    if layout == Layout::Symlink {
        let st = Command::new("ostree").arg("admin").arg(format!("--sysroot={}", dir.display())).arg("status").output().unwrap();
        if !st.status.success() {
            return Err(format!("ostree admin status fails: {}", String::from_utf8_lossy(&st.stderr)));
        }
    }
    let o = Command::new(treeboot_bin()).arg("--sysroot").arg(dir).arg("cleanup").output().unwrap();
    if !o.status.success() {
        return Err(format!("cleanup failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    verified(dir, "after cleanup")?;
    let v = Command::new(treeboot_bin()).arg("--sysroot").arg(dir).arg("verify").output().unwrap();
    if String::from_utf8_lossy(&v.stdout).contains("note:") {
        return Err(format!("leftovers after cleanup: {}", String::from_utf8_lossy(&v.stdout)));
    }
    Ok(())
}
