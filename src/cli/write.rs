//! The writing commands: they run in `treeboot-writer`, which links
//! libostree for checkouts, refs and pruning.

use anyhow::Result;
use camino::Utf8Path;

use super::report as r;
use super::WriteCmd;
use crate::ops::{self, Writer};
use crate::output::report;

/// Run a writing command (as handed back by `run_reader` in `Next::Write`);
/// the exit status (0, or 77 for `upgrade --check` without an update).
pub fn run_writer(sysroot: &Utf8Path, cmd: WriteCmd) -> Result<i32> {
    match cmd {
        WriteCmd::InitFs { path } => {
            ops::init::init_fs(&path)?;
            report(&r::InitFs { path: path.to_string() })?;
        }
        WriteCmd::OsInit { stateroot } => {
            ops::init::os_init(sysroot, &stateroot)?;
            report(&r::OsInit { stateroot })?;
        }
        WriteCmd::Deploy(a) => {
            if a.lock_finalization {
                anyhow::bail!("--lock-finalization applies to a staged deployment: use `treeboot stage` or `deploy --stage`");
            }
            let mut w = Writer::open(sysroot)?;
            report(&ops::deploy::deploy(&mut w, &a.refspec, &a.opts())?)?;
        }
        WriteCmd::Stage(a) => {
            let mut w = Writer::open(sysroot)?;
            report(&ops::stage::stage(&mut w, &a.refspec, &a.opts(), a.lock_finalization)?)?;
        }
        WriteCmd::LockFinalization { unlock } => {
            ops::stage::lock_finalization(unlock)?;
            report(&r::Locked { locked: !unlock })?;
        }
        WriteCmd::SetDefault { index } => {
            let mut w = Writer::open(sysroot)?;
            let name = named(&w, index);
            let changed = ops::lifecycle::set_default(&mut w, index)?;
            report(&r::NewDefault { default: name, former_index: index, changed, rollback: false })?;
        }
        WriteCmd::Rollback => {
            let mut w = Writer::open(sysroot)?;
            // A position in the bootable list (without the staged one).
            let target = ops::lifecycle::rollback_target(&w)?;
            let name = w.sysroot.deployments.get(target).map(|d| format!("{}/{}", d.stateroot, d.name())).unwrap_or_default();
            let t = ops::lifecycle::rollback(&mut w)?;
            report(&r::NewDefault { default: name, former_index: t, changed: true, rollback: true })?;
        }
        WriteCmd::SoftReboot { reset: true, .. } => report(&ops::softreboot::reset()?)?,
        WriteCmd::SoftReboot { index, prepare_only, reset: false } => {
            report(&ops::softreboot::soft_reboot(sysroot, &ops::softreboot::SoftRebootOpts { index, prepare_only })?)?;
        }
        WriteCmd::Undeploy { index } => {
            let mut w = Writer::open(sysroot)?;
            let removed = ops::lifecycle::undeploy(&mut w, index)?;
            report(&r::Undeployed { removed })?;
        }
        WriteCmd::Pin { unpin, index } => {
            let mut w = Writer::open(sysroot)?;
            let changed = ops::lifecycle::pin(&mut w, index, unpin)?;
            report(&r::Pinned { index, pinned: !unpin, changed })?;
        }
        WriteCmd::Cleanup => {
            let mut w = Writer::open(sysroot)?;
            report(&ops::cleanup::cleanup(&mut w)?)?;
        }
        WriteCmd::Kargs { edit, deployment } => {
            let mut w = Writer::open(sysroot)?;
            let kargs = ops::lifecycle::kargs(&mut w, deployment, &edit)?;
            let d = match deployment {
                Some(i) => named(&w, i),
                None => w.sysroot.booted().or(w.sysroot.deployments.first()).map(|d| format!("{}/{}", d.stateroot, d.name())).unwrap_or_default(),
            };
            report(&r::Kargs { deployment: d, kargs, changed: true })?;
        }
        WriteCmd::Assess { index, bad } => {
            let mut w = Writer::open(sysroot)?;
            let index = match index {
                Some(i) => i,
                None => w.sysroot.listed().position(|d| d.booted).ok_or_else(|| {
                    anyhow::anyhow!("not booted from a deployment of {}: name the deployment (as `status` numbers them)", w.sysroot.path)
                })?,
            };
            let changed = ops::assess::assess(&mut w, index, bad)?;
            report(&r::Assessed { index, bad, changed })?;
        }
        WriteCmd::AssessBoot { state_dir } => {
            let mut w = Writer::open(sysroot)?;
            let state = cap_std_ext::cap_std::fs::Dir::open_ambient_dir(&state_dir, cap_std_ext::cap_std::ambient_authority()).ok();
            report(&ops::assess::assess_boot(&mut w, state.as_ref())?)?;
        }
        WriteCmd::Upgrade { args, switch_to } => {
            let mut w = Writer::open(sysroot)?;
            let mut o = args.opts(switch_to);
            if args.automatic {
                use ops::upgrade::Policy;
                match ops::upgrade::read_policy(&args.config)? {
                    Policy::None => {
                        crate::say!("Automatic updates are off (no Policy other than none in {})", args.config);
                        report(&ops::upgrade::off(&w, o.stateroot.as_deref())?)?;
                        return Ok(0);
                    }
                    Policy::Check => o.check = true,
                    Policy::Stage => {}
                    Policy::Apply => o.apply = true,
                }
            }
            let mut u = ops::upgrade::upgrade(&mut w, &o)?;
            // Rebooted with the lock released: finalize takes it.
            drop(w);
            if u.reboot {
                u.soft_reboot = ops::upgrade::apply(sysroot, o.soft_reboot)?;
            }
            report(&u)?;
            if o.check && u.action == ops::upgrade::Action::NoUpdate {
                return Ok(NO_UPDATE);
            }
        }
    }
    Ok(0)
}

/// The exit status of `upgrade --check` when there is no update (as
/// `rpm-ostree upgrade --check`): neither success nor an error.
pub const NO_UPDATE: i32 = 77;

/// `stateroot/checksum.serial` of the deployment `status` numbers `index`
/// (empty when there is none: the operation then fails with the reason).
fn named(w: &Writer, index: usize) -> String {
    w.sysroot.by_index(index).map(|d| format!("{}/{}", d.stateroot, d.name())).unwrap_or_default()
}
