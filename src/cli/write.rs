//! The writing commands: they run in `treeboot-writer`, which links
//! libostree for checkouts, refs and pruning.

use anyhow::Result;
use camino::Utf8Path;

use super::WriteCmd;
use crate::ops::{self, Writer};

/// Run a writing command (as handed back by `run_reader` in `Next::Write`).
pub fn run_writer(sysroot: &Utf8Path, cmd: WriteCmd) -> Result<()> {
    if let WriteCmd::Deploy(a) | WriteCmd::Stage(a) = &cmd {
        crate::JSON_STDOUT.store(a.json, std::sync::atomic::Ordering::Relaxed);
    }
    match cmd {
        WriteCmd::InitFs { path } => {
            ops::init::init_fs(&path)?;
            crate::say!("Initialized sysroot {path}");
        }
        WriteCmd::OsInit { stateroot } => {
            ops::init::os_init(sysroot, &stateroot)?;
            crate::say!("ostree/deploy/{stateroot} initialized as a stateroot");
        }
        WriteCmd::Deploy(a) => {
            if a.lock_finalization {
                anyhow::bail!("--lock-finalization applies to a staged deployment: use `treeboot stage` or `deploy --stage`");
            }
            let mut w = Writer::open(sysroot)?;
            let p = ops::deploy::deploy(&mut w, &a.refspec, &a.opts())?;
            if a.json {
                super::print_json(&p)?;
            } else {
                crate::say!(
                    "Deployed {} {}.{}{}",
                    p.stateroot,
                    p.checksum,
                    p.serial,
                    p.version.map(|v| format!(" (version {v})")).unwrap_or_default()
                );
            }
        }
        WriteCmd::Stage(a) => {
            let mut w = Writer::open(sysroot)?;
            let r = ops::stage::stage(&mut w, &a.refspec, &a.opts(), a.lock_finalization)?;
            if a.json {
                super::print_json(&r)?;
            } else {
                crate::say!(
                    "Staged {} {}{}; it will be applied at shutdown{}",
                    r.stateroot,
                    r.deployment,
                    r.version.as_deref().map(|v| format!(" (version {v})")).unwrap_or_default(),
                    if r.locked { " once unlocked (treeboot lock-finalization --unlock)" } else { "" }
                );
                crate::say!(
                    "/etc: {} modified, {} added, {} removed will be carried over (re-checked at shutdown)",
                    r.etc.modified, r.etc.added, r.etc.removed
                );
            }
        }
        WriteCmd::LockFinalization { unlock } => {
            ops::stage::lock_finalization(unlock)?;
        }
        WriteCmd::SetDefault { index } => {
            let mut w = Writer::open(sysroot)?;
            if ops::lifecycle::set_default(&mut w, index)? {
                crate::say!("Deployment {index} is now the default");
            }
        }
        WriteCmd::Rollback => {
            let mut w = Writer::open(sysroot)?;
            let t = ops::lifecycle::rollback(&mut w)?;
            crate::say!("Rolled back: the former deployment {t} is now the default");
        }
        WriteCmd::Undeploy { index } => {
            let mut w = Writer::open(sysroot)?;
            let name = ops::lifecycle::undeploy(&mut w, index)?;
            crate::say!("Deleted deployment {name}");
        }
        WriteCmd::Pin { unpin, index } => {
            let mut w = Writer::open(sysroot)?;
            ops::lifecycle::pin(&mut w, index, unpin)?;
        }
        WriteCmd::Cleanup => {
            let mut w = Writer::open(sysroot)?;
            let st = ops::cleanup::cleanup(&mut w)?;
            crate::say!(
                "Removed {} deployment(s), {} kernel dir(s), {} boot dir(s); pruned {} object(s), {} bytes",
                st.deployments_removed.len(),
                st.kernel_dirs_removed.len(),
                st.boot_dirs_removed.len(),
                st.objects_pruned,
                st.bytes_freed
            );
        }
        WriteCmd::Kargs { edit, deployment } => {
            let mut w = Writer::open(sysroot)?;
            let k = ops::lifecycle::kargs(&mut w, deployment, &edit)?;
            crate::say!("Kernel arguments: {k}");
        }
    }
    Ok(())
}
