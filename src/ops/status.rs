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
    /// Whether finalization of the staged deployment is locked (null when
    /// nothing is staged).
    pub staged_locked: Option<bool>,
    /// The message of the last failed finalization, until boot-complete
    /// reports it.
    pub finalize_failure: Option<String>,
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
    let off = sysroot.staged.is_some() as usize;
    for d in sysroot.listed() {
        let mut k = d.kargs.clone();
        k.remove_key("ostree");
        let index = if d.staged { 0 } else { d.index + off };
        out.push(DeploymentStatus {
            index,
            stateroot: d.stateroot.clone(),
            checksum: d.csum.clone(),
            serial: d.serial,
            refspec: d.refspec().map(String::from),
            version: sysroot.commit_version(&d.csum)?,
            booted: d.booted,
            pending: !d.staged && pending == Some(d.index),
            rollback: !d.staged && rollback == Some(d.index),
            staged: d.staged,
            pinned: d.pinned(),
            bootcsum: d.bootcsum.clone(),
            bootserial: d.bootserial,
            kargs: k.to_cmdline(),
            deploy_path: d.path().to_string(),
            origin_path: d.origin_path().to_string(),
        });
    }
    let staged_locked = sysroot.staged.is_some().then_some(sysroot.locked);
    // The stamp until boot-complete reports it, then its copy in /run for
    // the rest of this boot (the model reads both).
    let finalize_failure = sysroot.finalize_failure.clone();
    Ok(Status {
        sysroot: sysroot.path.to_string(),
        bootversion: sysroot.bootversion,
        subbootversion: sysroot.subbootversion,
        deployments: out,
        staged_locked,
        finalize_failure,
    })
}

/// The human form, close to `ostree admin status`.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    if let Some(f) = &s.finalize_failure {
        out.push_str(&format!("warning: the last shutdown did not apply the staged deployment:\n  {f}\n"));
    }
    if s.deployments.is_empty() {
        out.push_str("No deployments.\n");
        return out;
    }
    let default_index = s.deployments.iter().find(|d| !d.staged).map(|d| d.index);
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
        if Some(d.index) == default_index {
            flags.push("default");
        }
        if d.staged && s.staged_locked == Some(true) {
            flags.push("finalization locked");
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
