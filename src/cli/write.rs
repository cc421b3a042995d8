//! The writing commands: they run in `treeboot-writer`, which links
//! libostree for checkouts, refs and pruning.

use anyhow::Result;

use super::{Cli, Cmd};
use crate::ops::{self, lifecycle::KargsEdit, Writer};

pub fn run_writer(cli: Cli) -> Result<()> {
    let sysroot = cli.sysroot.clone();
    match cli.cmd {
        Cmd::InitFs { path } => {
            ops::init::init_fs(&path)?;
            crate::say!("Initialized sysroot {path}");
        }
        Cmd::OsInit { stateroot } => {
            ops::init::os_init(&sysroot, &stateroot)?;
            crate::say!("ostree/deploy/{stateroot} initialized as a stateroot");
        }
        Cmd::Deploy(a) if !a.stage => {
            let mut w = Writer::open(&sysroot)?;
            let p = ops::deploy::deploy(&mut w, &a.refspec, &a.opts())?;
            crate::say!(
                "Deployed {} {}.{}{}",
                p.stateroot,
                p.checksum,
                p.serial,
                p.version.map(|v| format!(" (version {v})")).unwrap_or_default()
            );
        }
        Cmd::Deploy(a) | Cmd::Stage(a) => {
            let mut w = Writer::open(&sysroot)?;
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
        Cmd::FinalizeStaged { .. } => unreachable!("runs in treeboot itself"),
        Cmd::LockFinalization { unlock } => {
            ops::stage::lock_finalization(unlock)?;
        }
        Cmd::BootComplete | Cmd::Verify { .. } => unreachable!("a reader"),
        Cmd::SetDefault { index } => {
            let mut w = Writer::open(&sysroot)?;
            if ops::lifecycle::set_default(&mut w, index)? {
                crate::say!("Deployment {index} is now the default");
            }
        }
        Cmd::Rollback => {
            let mut w = Writer::open(&sysroot)?;
            let t = ops::lifecycle::rollback(&mut w)?;
            crate::say!("Rolled back: the former deployment {t} is now the default");
        }
        Cmd::Undeploy { index } => {
            let mut w = Writer::open(&sysroot)?;
            let name = ops::lifecycle::undeploy(&mut w, index)?;
            crate::say!("Deleted deployment {name}");
        }
        Cmd::Pin { unpin, index } => {
            let mut w = Writer::open(&sysroot)?;
            ops::lifecycle::pin(&mut w, index, unpin)?;
        }
        Cmd::Cleanup => {
            let mut w = Writer::open(&sysroot)?;
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
        Cmd::Kargs { append, delete, replace, deployment } => {
            let edit = KargsEdit { append, delete, replace };
            let mut w = Writer::open(&sysroot)?;
            let k = ops::lifecycle::kargs(&mut w, deployment, &edit)?;
            crate::say!("Kernel arguments: {k}");
        }
        Cmd::Status { .. } | Cmd::Etc(_) => unreachable!("readers run in treeboot itself"),
    }
    Ok(())
}
