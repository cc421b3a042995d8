//! Stage now, finalize at shutdown.
//!
//! `stage` does everything heavy or fallible while the system runs: checkout,
//! origin, the /etc merge *plan* (conflicts refuse), the free-space check,
//! the copy of the kernel and initramfs into /boot, and a copy of the new
//! /etc defaults. It records the deployment in `/run/ostree/staged-deployment`
//! and starts `treeboot-finalize-staged.service`, whose ExecStop runs
//! `finalize-staged` at shutdown.
//!
//! `finalize-staged` is thin: it forgets the record first (a crash cannot
//! loop), re-plans and applies the /etc merge from the /etc the admin has
//! *now*, marks the deployment immutable and writes the deployment list (the
//! swap). On failure it leaves the old default, writes
//! `/boot/ostree/finalize-failure.stamp` for the next boot, and logs.

use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use camino::Utf8Path;
use cap_std_ext::cap_std::fs::{Dir, Permissions, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;
use serde::Serialize;

use super::deploy::{self, set_immutable, DeployOpts, EtcMode};
use super::{boot_deployment, commit_list, Writer};
use crate::etcmerge;
use crate::failpoint;
use crate::formats::runstate::{Staged, StagedTarget, Stager};
use crate::fsutil;
use crate::journal;
use crate::sysroot::runstate::{self, RunState};
use crate::sysroot::FAILURE_STAMP;

crate::refusal!(
    /// Staging refused: not booted from a deployment of this sysroot (exit 3).
    NotBooted
);

/// `treeboot stage --json`: the staged deployment.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StageResult {
    pub stateroot: String,
    pub deployment: String,
    pub checksum: String,
    pub serial: u32,
    pub version: Option<String>,
    pub kernel: String,
    pub bootcsum: String,
    pub locked: bool,
    pub etc: etcmerge::PlanSummary,
    pub finalize_unit_started: bool,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn target_of(stateroot: &str, name: String, bootcsum: &str) -> StagedTarget {
    StagedTarget { name, osname: stateroot.to_string(), bootcsum: bootcsum.to_string() }
}

pub fn stage(w: &mut Writer, refspec: &str, opts: &DeployOpts, lock: bool) -> Result<StageResult> {
    let Some(booted) = w.sysroot.booted().cloned() else {
        return Err(NotBooted(format!(
            "not booted from a deployment of {}: {} is missing or names no deployment here; use `treeboot deploy` instead",
            w.sysroot.path,
            runstate::BOOTED
        ))
        .into());
    };
    // Staging again replaces the previous staged deployment, but only once
    // the new one is ready: until the new record is written, the old one
    // stays staged (and finalizes as before if anything below fails).
    let previous = w.sysroot.staged.clone();
    failpoint::hit("stage::prepare");
    let p = deploy::prepare_with(w, refspec, opts, EtcMode::CheckAndCopyDefaults)?;
    let merge = p.merge.clone().unwrap_or(booted);
    let overridden = !opts.karg.is_empty() || !opts.karg_append.is_empty() || opts.karg_proc_cmdline || opts.karg_none;
    let rec = Staged {
        target: Some(target_of(&p.stateroot, format!("{}.{}", p.checksum, p.serial), &p.bootcsum)),
        merge: Some(target_of(&merge.stateroot, merge.name(), &merge.bootcsum)),
        kargs: overridden.then(|| p.boot.kargs.args().to_vec()),
        locked: lock,
        retain: (opts.retain, opts.retain_pending, opts.retain_rollback),
        staged_at: Some(now()),
        ..Default::default()
    };
    // Kernel files were fdatasync'ed by install_kernel; make the deployment
    // durable too before we promise anything.
    let fd = rustix::fs::openat(&w.sysroot.root, ".", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())?;
    rustix::fs::syncfs(&fd).context("syncfs of the sysroot")?;
    if let Some(c) = &p.etc_cache {
        write_etc_cache(&w.sysroot.run, &format!("{}.{}", p.checksum, p.serial), &merge.name(), c);
    }
    failpoint::hit("stage::write-record");
    // The rename inside replaces a previous record in one step.
    w.sysroot.run.write_staged(&rec)?;
    if let Some(prev) = previous {
        // From here the new record is the staged deployment: the previous
        // one is an orphan (a crash now leaves it to the next cleanup).
        // A stage that names the same commit anew still gets its own
        // serial, so `prev` is never the deployment just prepared.
        failpoint::hit("stage::remove-replaced");
        // The new stage is in place: failing to remove the old one is a
        // warning (cleanup removes it later), not a failed stage.
        match remove_replaced(w, &prev, &p.stateroot, &p.bootcsum) {
            Ok(()) => crate::say!("Replaced the staged deployment {}", prev.name()),
            Err(e) => crate::warn!("replaced the staged deployment {}, but removing it failed (cleanup will): {e:#}", prev.name()),
        }
    }
    if !lock {
        mark_reboot_required(&w.sysroot.run);
    }
    let started = start_finalize_unit();
    let name = format!("{}.{}", p.checksum, p.serial);
    journal::send(
        journal::STAGED,
        false,
        &format!("Staged deployment {}/{name}{}{}", p.stateroot, p.version.as_deref().map(|v| format!(" (version {v})")).unwrap_or_default(), if lock { ", finalization locked" } else { "" }),
        &[("DEPLOYMENT", name.clone()), ("STATEROOT", p.stateroot.clone())],
    );
    Ok(StageResult {
        stateroot: p.stateroot,
        deployment: name,
        checksum: p.checksum,
        serial: p.serial,
        version: p.version,
        kernel: p.kernel,
        bootcsum: p.bootcsum,
        locked: lock,
        etc: p.etc,
        finalize_unit_started: started,
    })
}

/// Remove a staged deployment that a new stage replaced: its directory and
/// origin, and its kernel directory unless a deployment of the list or the
/// new staged one (`new_stateroot`, `new_bootcsum`) boots that kernel.
fn remove_replaced(w: &Writer, prev: &crate::sysroot::Deployment, new_stateroot: &str, new_bootcsum: &str) -> Result<()> {
    let root = &w.sysroot.root;
    let path = prev.path();
    set_immutable(root, path.as_str(), false)?;
    crate::fsutil::remove_all_at(root, path.as_std_path().as_os_str())
        .with_context(|| format!("Removing the replaced staged deployment {path}"))?;
    root.remove_file_optional(prev.origin_path())
        .with_context(|| format!("Removing {}", prev.origin_path()))?;
    if !kernel_in_use(prev, &w.sysroot.deployments, new_stateroot, new_bootcsum) {
        let kdir = format!("boot/ostree/{}-{}", prev.stateroot, prev.bootcsum);
        crate::fsutil::remove_all_at(root, kdir.as_ref())
            .with_context(|| format!("Removing the kernel of the replaced staged deployment /{kdir}"))?;
    }
    Ok(())
}

/// Whether the kernel directory of `prev` (a replaced stage) is still
/// booted by a deployment of `list` or by the new stage.
fn kernel_in_use(prev: &crate::sysroot::Deployment, list: &[crate::sysroot::Deployment], new_stateroot: &str, new_bootcsum: &str) -> bool {
    (prev.stateroot == new_stateroot && prev.bootcsum == new_bootcsum)
        || list.iter().any(|d| d.stateroot == prev.stateroot && d.bootcsum == prev.bootcsum)
}

/// `/run/reboot-required`, the file reboot coordinators (kured, Debian's
/// update-notifier) watch: written when a staged update waits only for a
/// reboot (not while its finalization is locked). A failure is a warning.
fn mark_reboot_required(run: &RunState) {
    if let Err(e) = run.write(runstate::REBOOT_REQUIRED, "*** System restart required ***\n") {
        crate::warn!("{e:#}");
    }
}

/// Start the finalize unit so that stopping it at shutdown finalizes.
fn start_finalize_unit() -> bool {
    if std::env::var_os("TREEBOOT_NO_SYSTEMCTL").is_some() || !Utf8Path::new("/run/systemd/system").exists() {
        return false;
    }
    match std::process::Command::new("systemctl").args(["start", "treeboot-finalize-staged.service"]).status() {
        Ok(s) if s.success() => true,
        Ok(s) => {
            crate::warn!("systemctl start treeboot-finalize-staged.service: {s}");
            false
        }
        Err(e) => {
            crate::warn!("running systemctl: {e}");
            false
        }
    }
}

/// Lock or unlock finalization of the staged deployment.
pub fn lock_finalization(unlock: bool) -> Result<()> {
    lock_finalization_at(&RunState::open_ambient()?, unlock)
}

pub fn lock_finalization_at(run: &RunState, unlock: bool) -> Result<()> {
    let mut rec = run.staged()?.ok_or_else(|| anyhow!("there is no staged deployment"))?;
    rec.locked = !unlock;
    run.write_staged(&rec)?;
    if unlock {
        mark_reboot_required(run);
    }
    crate::say!("Finalization is {}", if unlock { "unlocked: the staged deployment will be applied at shutdown" } else { "locked: the staged deployment will not be applied" });
    Ok(())
}

/// The /etc diff of stage time (see `etcmerge::DiffCache`), for the
/// deployment pair named on its first line: state of the staging operation,
/// read back by finalize.
pub const ETC_CACHE: &str = "/run/treeboot/etc-diff-cache";

fn cache_header(staged: &str, merge: &str) -> String {
    format!("treeboot-etc-diff-cache 1 {staged} {merge}\n")
}

/// Keep the stage-time diff for finalize. Failing to write it only costs
/// speed at shutdown, so it is a warning.
fn write_etc_cache(run: &RunState, staged: &str, merge: &str, cache: &etcmerge::DiffCache) {
    let mut data = cache_header(staged, merge).into_bytes();
    data.extend(cache.serialize());
    if let Err(e) = run.write(ETC_CACHE, data) {
        crate::warn!("{e:#}");
    }
}

/// The stage-time diff, if it is there and for this pair.
fn read_etc_cache(run: &RunState, staged: &str, merge: &str) -> Option<etcmerge::DiffCache> {
    let data = run.read_file(ETC_CACHE).ok()??;
    let rest = data.strip_prefix(cache_header(staged, merge).as_bytes())?;
    etcmerge::DiffCache::parse(rest)
}

/// Forget the staged deployment: the record, the legacy lock file and the
/// stage-time diff.
pub(crate) fn forget_staged(run: &RunState) -> Result<()> {
    run.remove_staged()?;
    run.remove_file(ETC_CACHE)
}

#[derive(Debug, Serialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FinalizeOutcome {
    NothingStaged,
    Locked,
    Finalized,
    /// `--if-staged-by`: the other tool staged it, and its unit applies it.
    LeftToOstree,
    LeftToTreeboot,
}

#[context("Writing {}", FAILURE_STAMP)]
fn write_stamp_at(root: &Dir, msg: &str) -> Result<()> {
    root.create_dir_all("boot/ostree")?;
    root.atomic_write_with_perms(FAILURE_STAMP, format!("{msg}\n"), Permissions::from_mode(0o644))?;
    Ok(())
}

fn write_stamp(sysroot: &Utf8Path, msg: &str) {
    let r = Dir::open_ambient_dir(sysroot, cap_std_ext::cap_std::ambient_authority())
        .map_err(anyhow::Error::from)
        .and_then(|d| write_stamp_at(&d, msg));
    if let Err(e) = r {
        let _ = writeln!(std::io::stderr(), "error: could not write {sysroot}/{FAILURE_STAMP}: {e:#}");
    }
}

/// Where ostree-boot installs its finalize unit (merged /usr or not).
const OSTREE_FINALIZE_UNITS: [&str; 2] =
    ["/usr/lib/systemd/system/ostree-finalize-staged.service", "/lib/systemd/system/ostree-finalize-staged.service"];

/// `finalize-staged --if-staged-by TOOL`, the ExecStop of both finalize
/// units when ostree-boot is installed beside treeboot (docs/coexistence.md):
/// each applies only what its own tool staged, so exactly one finalizer
/// runs, and by the rules of the tool that staged.
/// - treeboot's unit (`treeboot`): a treeboot record is finalized here; a
///   libostree record is left to ostree-finalize-staged.service, unless
///   ostree-boot is not installed (then treeboot applies it: an update is
///   not dropped for want of a finalizer).
/// - ostree's unit (`ostree`, through a drop-in): a libostree record runs
///   `ostree admin finalize-staged`; a treeboot record is left to
///   treeboot-finalize-staged.service.
///
/// A record that cannot be read belongs to treeboot's unit, which reports it.
pub fn finalize_if_staged_by(sysroot: &Utf8Path, unit_of: Stager) -> Result<FinalizeOutcome> {
    let run = RunState::open_ambient()?;
    let Some(writer) = run.stager()? else {
        crate::say!("No staged deployment.");
        return Ok(FinalizeOutcome::NothingStaged);
    };
    match (unit_of, writer) {
        (Stager::Treeboot, Stager::Treeboot) => finalize(sysroot),
        (Stager::Treeboot, Stager::Ostree) => {
            if OSTREE_FINALIZE_UNITS.iter().any(|p| Utf8Path::new(p).exists()) {
                crate::say!("The staged deployment was staged by ostree: {} applies it.", Stager::Ostree.finalize_unit());
                Ok(FinalizeOutcome::LeftToOstree)
            } else {
                crate::say!("The staged deployment was staged by ostree, and ostree-boot is not installed: treeboot applies it.");
                finalize(sysroot)
            }
        }
        (Stager::Ostree, Stager::Treeboot) => {
            crate::say!("The staged deployment was staged by treeboot: {} applies it.", Stager::Treeboot.finalize_unit());
            Ok(FinalizeOutcome::LeftToTreeboot)
        }
        (Stager::Ostree, Stager::Ostree) => {
            use std::os::unix::process::CommandExt;
            let e = std::process::Command::new("ostree").args(["admin", "finalize-staged"]).exec();
            Err(anyhow!(e).context("Running ostree admin finalize-staged"))
        }
    }
}

/// `finalize-staged`: the ExecStop of the finalize unit.
pub fn finalize(sysroot: &Utf8Path) -> Result<FinalizeOutcome> {
    let start = Instant::now();
    let run = RunState::open_ambient()?;
    let rec = match run.staged() {
        Ok(None) => {
            crate::say!("No staged deployment.");
            return Ok(FinalizeOutcome::NothingStaged);
        }
        Ok(Some(r)) => r,
        Err(e) => {
            // Forget it, so that a broken record is reported once, not looped on.
            let _ = forget_staged(&run);
            return Err(fail(sysroot, e));
        }
    };
    if rec.locked || run.legacy_locked() {
        journal::send(journal::FINALIZE_LOCKED, false, "Not finalizing, deployment is locked", &[]);
        return Ok(FinalizeOutcome::Locked);
    }
    finalize_inner(sysroot, start).map_err(|e| {
        // Whatever failed, the record is gone: the next boot boots the old
        // default and says why, instead of retrying at every shutdown.
        let _ = forget_staged(&run);
        fail(sysroot, e)
    })
}

fn fail(sysroot: &Utf8Path, e: anyhow::Error) -> anyhow::Error {
    let msg = format!("finalizing the staged deployment failed: {e:#}");
    write_stamp(sysroot, &msg);
    journal::send(journal::FINALIZE_FAILED, true, &msg, &[]);
    e
}

fn finalize_inner(sysroot: &Utf8Path, start: Instant) -> Result<FinalizeOutcome> {
    crate::timing::step("finalize: start");
    // No libostree at shutdown: loading it and its ~60 libraries from a cold
    // cache costs 70-80 ms; finalize needs no checkout and defers pruning.
    let mut w = Writer::open_without_store(sysroot)?;
    crate::timing::step("finalize: lock and load");
    let Some(d) = w.sysroot.staged.clone() else {
        forget_staged(&w.sysroot.run)?;
        bail!("{} names a deployment, but {} is not booted from this sysroot", runstate::STAGED, sysroot);
    };
    let rec = w.sysroot.staged_record.clone().expect("loaded with the staged deployment");
    let merge = w
        .sysroot
        .merge_deployment(&d.stateroot)
        .cloned()
        .ok_or_else(|| anyhow!("no deployment of {} to merge /etc from", d.stateroot))?;
    // The diff of stage time lets unchanged files cost one lstat each.
    let known = read_etc_cache(&w.sysroot.run, &d.name(), &merge.name());
    crate::timing::step(&format!("finalize: read /etc diff cache ({} known pairs)", known.as_ref().map_or(0, |k| k.len())));
    // Then forget the record, so that a crash from here on boots the old
    // default and the next cleanup removes the orphan, instead of looping.
    failpoint::hit("finalize::remove-record");
    forget_staged(&w.sysroot.run)?;

    // Re-merge /etc from what the admin has now.
    failpoint::hit("finalize::etc");
    let t_etc = Instant::now();
    let root = &w.sysroot.root;
    let shown = w.sysroot.path.as_str();
    let ddir = fsutil::open_subdir(root, shown, d.path())?;
    let mdir = fsutil::open_subdir(root, shown, merge.path())?;
    let (dshown, mshown) = (format!("{shown}/{}", d.path()), format!("{shown}/{}", merge.path()));
    let plan = etcmerge::plan_cached(
        &fsutil::open_subdir(&mdir, &mshown, "usr/etc")?,
        &fsutil::open_subdir(&mdir, &mshown, "etc")?,
        &fsutil::open_subdir(&ddir, &dshown, "usr/etc")?,
        known.as_ref(),
        None,
    )?;
    crate::timing::step("finalize: /etc plan");
    if ddir.symlink_metadata_optional("etc")?.is_none() {
        set_immutable(root, d.path().as_str(), false)?;
        etcmerge::copy_tree(&fsutil::open_subdir(&ddir, &dshown, "usr/etc")?, &ddir, "etc")?;
    }
    let stats = etcmerge::apply(&plan, &fsutil::open_subdir(&mdir, &mshown, "etc")?, &fsutil::open_subdir(&ddir, &dshown, "etc")?)?;
    let etc_ms = t_etc.elapsed().as_millis();
    crate::timing::step("finalize: /etc apply");
    set_immutable(root, d.path().as_str(), true)?;
    super::composefs::check_staged(&ddir, &d.kargs)?;

    // The new list: the staged deployment first, the rest by deploy's rules.
    let opts = DeployOpts {
        retain: rec.retain.0,
        retain_pending: rec.retain.1,
        retain_rollback: rec.retain.2,
        ..Default::default()
    };
    let order = deploy::new_order(&w.sysroot, &d.stateroot, Some(&merge), &opts);
    install_staged_kernel(root, &ddir, &dshown, &d)?;
    // treeboot's stage made it; libostree's makes it only at finalize.
    deploy::ensure_backing(root, d.path().as_str(), &ddir)?;
    let new = boot_deployment(&w.sysroot, &d)?;
    let list = deploy::list_from_order(&w.sysroot, &order, &new)?;
    failpoint::hit("finalize::swap");
    let t_swap = Instant::now();
    commit_list(&mut w, &list)?;
    let swap_ms = t_swap.elapsed().as_millis();
    let total_ms = start.elapsed().as_millis();
    journal::send(
        journal::FINALIZED,
        false,
        &format!(
            "Finalized staged deployment {}/{} in {total_ms} ms (/etc: {} copied, {} removed in {etc_ms} ms; swap {swap_ms} ms)",
            d.stateroot,
            d.name(),
            stats.copied,
            stats.removed
        ),
        &[
            ("DEPLOYMENT", d.name()),
            ("FINALIZE_MS", total_ms.to_string()),
            ("ETC_MS", etc_ms.to_string()),
            ("SWAP_MS", swap_ms.to_string()),
            ("ETC_COPIED", stats.copied.to_string()),
            ("ETC_REMOVED", stats.removed.to_string()),
        ],
    );
    Ok(FinalizeOutcome::Finalized)
}

/// The staged deployment's kernel in /boot. treeboot's stage put it there
/// already (this is then one lstat); a deployment staged by ostree
/// (`ostree admin deploy --stage`) has it only in its tree, since libostree
/// copies kernels when it writes the deployment list, at finalize time:
/// copy it now, checked against the boot checksum the record names.
#[context("Installing the kernel of the staged deployment {}", d.name())]
fn install_staged_kernel(root: &Dir, ddir: &Dir, dshown: &str, d: &crate::sysroot::Deployment) -> Result<()> {
    let dirname = format!("boot/ostree/{}-{}", d.stateroot, d.bootcsum);
    if root.symlink_metadata_optional(&dirname)?.is_some() {
        return Ok(());
    }
    failpoint::hit("finalize::kernel");
    let k = crate::bootloader::kernel::find_kernel(ddir, dshown)?;
    if k.bootcsum != d.bootcsum {
        bail!(
            "{}: its kernel's boot checksum is {}, the staged record says {}",
            runstate::STAGED,
            k.bootcsum,
            d.bootcsum
        );
    }
    crate::bootloader::kernel::install_kernel(root, ddir, &d.stateroot, &k)?;
    crate::timing::step("finalize: kernel copied into /boot");
    Ok(())
}

/// `boot-complete`: report (once) a finalize failure of the previous
/// shutdown, and keep a copy in `/run` for `treeboot status` during this boot.
/// The failure it reported, if any.
pub fn boot_complete(sysroot: &Utf8Path) -> Result<Option<String>> {
    let root = Dir::open_ambient_dir(sysroot, cap_std_ext::cap_std::ambient_authority())
        .with_context(|| format!("Opening {sysroot}"))?;
    boot_complete_at(&root, &RunState::open_ambient()?)
}

#[context("Reporting the last finalization")]
pub fn boot_complete_at(root: &Dir, run: &RunState) -> Result<Option<String>> {
    let Some(msg) = root.read_to_string_optional(FAILURE_STAMP).with_context(|| format!("Reading {FAILURE_STAMP}"))? else {
        return Ok(None);
    };
    if !crate::output::json() {
        eprintln!("error: the previous shutdown did not apply the staged update; the old deployment was booted.");
        eprintln!("error: {}", msg.trim_end());
    }
    if let Err(e) = run.write(runstate::FAILURE_RUN_COPY, &msg) {
        crate::warn!("{e:#}");
    }
    root.remove_file(FAILURE_STAMP).with_context(|| format!("Removing {FAILURE_STAMP}"))?;
    Ok(Some(msg.trim_end().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysroot::fixture::*;

    #[test]
    fn a_replaced_stage_keeps_its_kernel_only_while_something_boots_it() {
        let f = Fixture::new(&[('a', '1'), ('b', '2')]);
        f.boot_into(&format!("{}.0", csum('a')));
        f.stage('c', '3', false);
        let s = f.load().unwrap();
        let prev = s.staged.clone().unwrap();
        // A new stage with another kernel: the replaced one's goes.
        assert!(!kernel_in_use(&prev, &s.deployments, OS, &csum('4')));
        // The new stage boots the same kernel: it stays.
        assert!(kernel_in_use(&prev, &s.deployments, OS, &csum('3')));
        // The same bootcsum in another stateroot is another directory.
        assert!(!kernel_in_use(&prev, &s.deployments, "other", &csum('3')));
        // A deployment of the list boots it: it stays.
        let mut shared = prev.clone();
        shared.bootcsum = csum('2');
        assert!(kernel_in_use(&shared, &s.deployments, OS, &csum('4')));
    }
}
