//! `treeboot status`: the deployments in boot order.

use anyhow::Result;
use serde::Serialize;

use crate::sysroot::Sysroot;

/// One deployment in `status --json`. The first fields carry the names of
/// `ostree admin status --json`; the rest are treeboot's.
#[derive(Debug, Serialize)]
pub struct DeploymentStatus {
    pub index: usize,
    pub stateroot: String,
    pub checksum: String,
    pub serial: u32,
    pub refspec: Option<String>,
    pub version: Option<String>,
    pub booted: bool,
    pub pending: bool,
    pub rollback: bool,
    pub staged: bool,
    pub pinned: bool,
    pub bootcsum: String,
    pub bootserial: u32,
    pub kargs: String,
    pub deploy_path: String,
    pub origin_path: String,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub sysroot: String,
    pub bootversion: u32,
    pub subbootversion: u32,
    pub deployments: Vec<DeploymentStatus>,
}

pub fn status(sysroot: &Sysroot) -> Result<Status> {
    let booted = sysroot.booted();
    // pending/rollback are relative to the booted deployment's stateroot,
    // as in libostree's query_deployments_for().
    let (mut pending, mut rollback) = (None, None);
    if let Some(b) = booted {
        for d in sysroot.deployments.iter().filter(|d| d.stateroot == b.stateroot) {
            if d.index < b.index && pending.is_none() {
                pending = Some(d.index);
            } else if d.index > b.index && rollback.is_none() {
                rollback = Some(d.index);
            }
        }
    }
    let mut out = Vec::new();
    for d in &sysroot.deployments {
        let mut k = d.kargs.clone();
        k.remove_key("ostree");
        out.push(DeploymentStatus {
            index: d.index,
            stateroot: d.stateroot.clone(),
            checksum: d.csum.clone(),
            serial: d.serial,
            refspec: d.refspec().map(String::from),
            version: sysroot.commit_version(&d.csum)?,
            booted: d.booted,
            pending: pending == Some(d.index),
            rollback: rollback == Some(d.index),
            staged: d.staged,
            pinned: d.pinned(),
            bootcsum: d.bootcsum.clone(),
            bootserial: d.bootserial,
            kargs: k.to_cmdline(),
            deploy_path: d.path().to_string(),
            origin_path: d.origin_path().to_string(),
        });
    }
    Ok(Status {
        sysroot: sysroot.path.to_string(),
        bootversion: sysroot.bootversion,
        subbootversion: sysroot.subbootversion,
        deployments: out,
    })
}

/// The human form, close to `ostree admin status`.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    if s.deployments.is_empty() {
        out.push_str("No deployments.\n");
        return out;
    }
    for d in &s.deployments {
        let mark = if d.booted { "*" } else { " " };
        let mut flags = Vec::new();
        if d.staged {
            flags.push("staged");
        }
        if d.pending {
            flags.push("pending");
        }
        if d.rollback {
            flags.push("rollback");
        }
        if d.index == 0 {
            flags.push("default");
        }
        let flags = if flags.is_empty() { String::new() } else { format!(" ({})", flags.join(", ")) };
        out.push_str(&format!("{mark} {} {} {}.{}{flags}\n", d.index, d.stateroot, d.checksum, d.serial));
        if let Some(v) = &d.version {
            out.push_str(&format!("    Version: {v}\n"));
        }
        if d.pinned {
            out.push_str("    Pinned: yes\n");
        }
        match &d.refspec {
            Some(r) => out.push_str(&format!("    origin refspec: {r}\n")),
            None => out.push_str("    origin: none\n"),
        }
        if !d.kargs.is_empty() {
            out.push_str(&format!("    kernel arguments: {}\n", d.kargs));
        }
    }
    out
}
