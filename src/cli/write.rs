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
            println!("Initialized sysroot {path}");
        }
        Cmd::OsInit { stateroot } => {
            ops::init::os_init(&sysroot, &stateroot)?;
            println!("ostree/deploy/{stateroot} initialized as a stateroot");
        }
        Cmd::Deploy(a) => {
            let mut w = Writer::open(&sysroot)?;
            let p = ops::deploy::deploy(&mut w, &a.refspec, &a.opts())?;
            println!(
                "Deployed {} {}.{}{}",
                p.stateroot,
                p.checksum,
                p.serial,
                p.version.map(|v| format!(" (version {v})")).unwrap_or_default()
            );
        }
        Cmd::SetDefault { index } => {
            let mut w = Writer::open(&sysroot)?;
            if ops::lifecycle::set_default(&mut w, index)? {
                println!("Deployment {index} is now the default");
            }
        }
        Cmd::Rollback => {
            let mut w = Writer::open(&sysroot)?;
            let t = ops::lifecycle::rollback(&mut w)?;
            println!("Rolled back: the former deployment {t} is now the default");
        }
        Cmd::Undeploy { index } => {
            let mut w = Writer::open(&sysroot)?;
            let name = ops::lifecycle::undeploy(&mut w, index)?;
            println!("Deleted deployment {name}");
        }
        Cmd::Pin { unpin, index } => {
            let mut w = Writer::open(&sysroot)?;
            ops::lifecycle::pin(&mut w, index, unpin)?;
        }
        Cmd::Cleanup => {
            let mut w = Writer::open(&sysroot)?;
            let st = ops::cleanup::cleanup(&mut w)?;
            println!(
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
            println!("Kernel arguments: {k}");
        }
        Cmd::Status { .. } | Cmd::Etc(_) => unreachable!("readers run in treeboot itself"),
    }
    Ok(())
}
