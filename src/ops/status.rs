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
    /// `[origin] container-image-reference` (bootc, rpm-ostree).
    pub container_image_reference: Option<String>,
    /// Whether the deployment has an origin file.
    pub has_origin: bool,
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
            refspec: d.refspec(),
            version: sysroot.commit_version(&d.csum)?,
            booted: d.booted,
            pending: !d.staged && pending == Some(d.index),
            rollback: !d.staged && rollback == Some(d.index),
            staged: d.staged,
            pinned: d.pinned(),
            container_image_reference: d.container_image(),
            has_origin: d.origin.is_some(),
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
        // As `ostree admin status` prints it, with container images named.
        match (&d.refspec, &d.container_image_reference) {
            (Some(r), _) => out.push_str(&format!("    origin refspec: {r}\n")),
            (None, Some(c)) => out.push_str(&format!("    origin: container image {c}\n")),
            (None, None) if d.has_origin => out.push_str("    origin: <unknown origin type>\n"),
            (None, None) => out.push_str("    origin: none\n"),
        }
        if !d.kargs.is_empty() {
            out.push_str(&format!("    kernel arguments: {}\n", d.kargs));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysroot::fixture::{csum, Fixture, OS};

    /// Booted into the middle of three deployments, a fourth staged and
    /// locked: the document `status --json` prints.
    #[test]
    fn the_status_document() {
        let f = Fixture::new(&[('a', '1'), ('b', '1'), ('c', '2')]);
        f.boot_into(&format!("{}.0", csum('b')));
        f.stage('d', '3', true);
        let s = status(&f.load().unwrap()).unwrap();
        let doc = serde_json::to_value(&s).unwrap();
        let ds = doc["deployments"].as_array().unwrap();
        let short = |i: usize| ds[i]["checksum"].as_str().unwrap()[..1].to_string();
        assert_eq!((0..4).map(short).collect::<Vec<_>>(), ["d", "a", "b", "c"], "staged first, then boot order");
        assert_eq!(ds.iter().map(|d| d["index"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3]);
        let flags = |i: usize| {
            ["staged", "pending", "booted", "rollback"].into_iter().filter(|k| ds[i][*k] == true).collect::<Vec<_>>()
        };
        assert_eq!(flags(0), ["staged"]);
        assert_eq!(flags(1), ["pending"], "newer than the booted one, same stateroot");
        assert_eq!(flags(2), ["booted"]);
        assert_eq!(flags(3), ["rollback"]);
        assert_eq!(ds[1]["kargs"], "root=LABEL=r", "ostree= is not shown");
        assert_eq!(ds[1]["refspec"], "os:va");
        assert_eq!(ds[2]["deploy_path"], format!("ostree/deploy/{OS}/deploy/{}.0", csum('b')));
        assert_eq!(ds[2]["origin_path"], format!("ostree/deploy/{OS}/deploy/{}.0.origin", csum('b')));
        assert_eq!((ds[1]["bootserial"].as_u64(), ds[2]["bootserial"].as_u64()), (Some(0), Some(1)), "a and b share a kernel");
        assert!(ds[1]["version"].is_null(), "no commit object in the fixture's repository");
        assert_eq!(doc["staged_locked"], true);
        assert!(doc["finalize_failure"].is_null());
        assert_eq!((doc["bootversion"].as_u64(), doc["subbootversion"].as_u64()), (Some(1), Some(0)));

        let text = render(&s);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("    ")).collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("  0 os dddd") && lines[0].ends_with("(staged, finalization locked)"), "{text}");
        assert!(lines[1].ends_with("(pending, default)"), "{text}");
        assert!(lines[2].starts_with("* 2 os bbbb"), "{text}");
        assert!(lines[3].ends_with("(rollback)"), "{text}");
    }

    #[test]
    fn an_unbooted_sysroot_has_no_pending_or_rollback() {
        let f = Fixture::new(&[('a', '1'), ('b', '2')]);
        let s = status(&f.load().unwrap()).unwrap();
        assert!(s.deployments.iter().all(|d| !d.booted && !d.pending && !d.rollback && !d.staged));
        assert_eq!(s.staged_locked, None);
        assert!(render(&s).lines().next().unwrap().ends_with("(default)"));
    }
}
