//! `treeboot upgrade` and `treeboot switch`: fetch the origin's refspec
//! from its remote (libostree's pull, with the remote's own configuration:
//! URL, GPG or signature verification), then stage it (or deploy it, on a
//! sysroot that is not booted). `--check` fetches only the commit object;
//! `--download-only` stages it locked; `--apply` reboots into it.
//! `--automatic` takes the policy of treeboot-upgrade.service's config.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use schemars::JsonSchema;
use serde::Serialize;

use super::deploy::{self, DeployOpts};
use super::softreboot::{self, SoftRebootMode};
use super::{stage, Writer};
use crate::formats::keyfile::KeyFile;
use crate::output::{date, Progress};
use crate::repo::PullProgress;
use crate::sysroot::Deployment;

#[derive(Debug, Default, Clone)]
pub struct UpgradeOpts {
    pub stateroot: Option<String>,
    /// Only say whether there is an update (fetches the commit object).
    pub check: bool,
    /// Fetch and stage, with finalization locked.
    pub download_only: bool,
    /// Reboot into the update once staged.
    pub apply: bool,
    /// Write the new deployment now (as `deploy`), for a sysroot that is
    /// not booted.
    pub deploy: bool,
    pub allow_downgrade: bool,
    /// `switch`: the refspec the new deployment follows from now on.
    pub switch_to: Option<String>,
    /// `--apply --soft-reboot=WHEN`: a soft reboot instead of a full one.
    pub soft_reboot: Option<SoftRebootMode>,
}

/// What `upgrade` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The remote has nothing newer than the deployment upgraded from.
    NoUpdate,
    /// `--check`: an update is available (nothing was changed).
    Available,
    /// The update is staged: applied at shutdown.
    Staged,
    /// `--download-only`: staged with finalization locked.
    StagedLocked,
    /// `--deploy`: the update is the new default deployment.
    Deployed,
    /// The update was staged already (nothing was changed, unless `--apply`).
    AlreadyStaged,
    /// `--automatic` with `Policy=none` (or no config): nothing was fetched.
    Off,
}

/// `treeboot upgrade --json`, `treeboot switch --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UpgradeReport {
    pub action: Action,
    pub stateroot: String,
    /// The refspec fetched (the new origin, for `switch`).
    pub refspec: String,
    /// The remote it was fetched from (null for a local ref: nothing is fetched).
    pub remote: Option<String>,
    /// The deployment upgraded from, as `checksum.serial`.
    pub from: String,
    /// The commit the refspec names now.
    pub checksum: String,
    pub version: Option<String>,
    /// The commit's timestamp, in seconds since 1970-01-01 UTC.
    pub timestamp: Option<u64>,
    /// The new deployment (staged or deployed), as `checksum.serial`.
    pub deployment: Option<String>,
    /// Whether a reboot was asked for (`--apply`).
    pub reboot: bool,
    /// Whether that reboot is a soft reboot (`--soft-reboot`).
    pub soft_reboot: bool,
}

/// The deployment an upgrade starts from: the booted one (of `stateroot`
/// when given), else the stateroot's default.
fn base(w: &Writer, stateroot: Option<&str>) -> Result<Deployment> {
    let s = &w.sysroot;
    let os = match stateroot {
        Some(o) => o.to_string(),
        None => s.default_stateroot()?,
    };
    s.merge_deployment(&os)
        .cloned()
        .ok_or_else(|| anyhow!("stateroot {os} has no deployment to upgrade (deploy one first with `treeboot deploy`)"))
}

/// `remote:ref` to (remote, ref); a local ref has no remote.
fn split(refspec: &str) -> (Option<&str>, &str) {
    match refspec.split_once(':') {
        Some((r, rest)) if !r.is_empty() => (Some(r), rest),
        _ => (None, refspec),
    }
}

/// Pull with progress drawn (bar or spinner; JSON `progress` events,
/// phase `pull`, done/total in objects, with bytes).
fn pull(w: &Writer, remote: &str, reference: &str, commit_only: bool) -> Result<()> {
    let (phase, what) = if commit_only { ("pull-commit", "Checking") } else { ("pull", "Receiving") };
    let shown = format!("{what} {remote}:{reference}");
    let p = Rc::new(RefCell::new(Progress::start(phase, &shown, None, false)));
    let start = Instant::now();
    let cb = {
        let p = p.clone();
        Rc::new(move |pp: &PullProgress| {
            let rate = pp.bytes as f64 / start.elapsed().as_secs_f64().max(0.001);
            let words = format!(
                "{shown}: {}{}/{} objects, {} ({}/s)",
                if pp.metadata { "metadata, " } else { "" },
                pp.fetched,
                pp.requested,
                indicatif::HumanBytes(pp.bytes),
                indicatif::HumanBytes(rate as u64)
            );
            if let Ok(mut p) = p.try_borrow_mut() {
                p.set(u64::from(pp.fetched), Some(u64::from(pp.requested)), Some(pp.bytes), Some(words));
            }
        }) as Rc<dyn Fn(&PullProgress)>
    };
    w.store()?.pull(remote, reference, commit_only, cb)
}

/// Refuse a target older than what it replaces, as ostree does, unless
/// allowed.
fn check_downgrade(w: &Writer, from: &Deployment, target: &str, allow: bool) -> Result<()> {
    if allow || target == from.csum {
        return Ok(());
    }
    let (Some(old), Some(new)) = (w.sysroot.commit_info(&from.csum)?, w.sysroot.commit_info(target)?) else {
        return Ok(());
    };
    if new.timestamp < old.timestamp {
        bail!(
            "refusing to downgrade: commit {target} is from {}, older than {} ({}) of deployment {}; use --allow-downgrade to deploy it anyway",
            date(new.timestamp),
            date(old.timestamp),
            from.csum,
            from.name()
        );
    }
    Ok(())
}

/// `--automatic` with `Policy=none`: what would be upgraded, untouched.
pub fn off(w: &Writer, stateroot: Option<&str>) -> Result<UpgradeReport> {
    let from = base(w, stateroot)?;
    let refspec = from.refspec().unwrap_or_default();
    Ok(UpgradeReport {
        action: Action::Off,
        stateroot: from.stateroot.clone(),
        remote: split(&refspec).0.map(String::from),
        refspec,
        from: from.name(),
        checksum: from.csum.clone(),
        version: None,
        timestamp: None,
        deployment: None,
        reboot: false,
        soft_reboot: false,
    })
}

pub fn upgrade(w: &mut Writer, o: &UpgradeOpts) -> Result<UpgradeReport> {
    // Staging needs a booted system: said before anything is fetched.
    if !o.check && !o.deploy && w.sysroot.booted().is_none() {
        return Err(stage::NotBooted(format!(
            "not booted from a deployment of {}, so the update cannot be staged; use `treeboot upgrade --deploy` to write the new deployment now",
            w.sysroot.path
        ))
        .into());
    }
    let from = base(w, o.stateroot.as_deref())?;
    let refspec = match &o.switch_to {
        Some(r) => r.clone(),
        None => from.refspec().ok_or_else(|| match from.container_image() {
            Some(c) => anyhow!("deployment {} follows the container image {c}: treeboot upgrades ostree refs only", from.name()),
            None => anyhow!("deployment {} has no origin refspec to upgrade from ({})", from.name(), from.origin_path()),
        })?,
    };
    let (remote, reference) = split(&refspec);
    if let Some(r) = remote {
        if w.store()?.remote_url(r)?.is_none() {
            bail!("remote {r:?} of {refspec} is not configured in ostree/repo/config (add it with `ostree remote add`)");
        }
        // The commit object alone first: enough to tell whether there is
        // an update, and to refuse a downgrade before downloading it.
        pull(w, r, reference, true)?;
    }
    let mut target = w.store()?.resolve(&refspec)?;
    let same_origin = from.refspec().as_deref() == Some(refspec.as_str());
    let report = |w: &Writer, action, target: &str, deployment: Option<String>, reboot| -> Result<UpgradeReport> {
        let info = w.sysroot.commit_info(target)?;
        Ok(UpgradeReport {
            action,
            stateroot: from.stateroot.clone(),
            refspec: refspec.clone(),
            remote: remote.map(String::from),
            from: from.name(),
            checksum: target.to_string(),
            version: info.as_ref().and_then(|i| i.version.clone()),
            timestamp: info.map(|i| i.timestamp),
            deployment,
            reboot,
            soft_reboot: false,
        })
    };
    if target == from.csum && same_origin && w.sysroot.staged.as_ref().is_none_or(|s| s.csum == from.csum) {
        return report(w, Action::NoUpdate, &target, None, false);
    }
    // Another ref has no chronological relation to the booted commit (a
    // stream's head may well be older than another's): a switch to it takes
    // it whatever its date, as `ostree admin switch` does
    // (OSTREE_SYSROOT_UPGRADER_PULL_FLAGS_ALLOW_OLDER). Following the same
    // ref, an older commit is a downgrade.
    let allow_older = o.allow_downgrade || !same_origin;
    check_downgrade(w, &from, &target, allow_older)?;
    if let Some(st) = w.sysroot.staged.clone().filter(|s| s.csum == target && s.refspec().as_deref() == Some(refspec.as_str())) {
        if o.check {
            return report(w, Action::Available, &target, Some(st.name()), false);
        }
        if o.apply {
            if w.sysroot.locked {
                stage::lock_finalization_at(&w.sysroot.run, true)?;
            }
        } else {
            crate::say!("The update {} is staged already{}", st.name(), if w.sysroot.locked { " (finalization locked: `treeboot upgrade --apply` applies it)" } else { ": it is applied at shutdown" });
        }
        return report(w, Action::AlreadyStaged, &target, Some(st.name()), o.apply);
    }
    if o.check {
        return report(w, Action::Available, &target, None, false);
    }
    if let Some(r) = remote {
        pull(w, r, reference, false)?;
        // The ref may have moved since the check: what was fetched is what
        // it names now.
        target = w.store()?.resolve(&refspec)?;
        check_downgrade(w, &from, &target, allow_older)?;
    }
    let mut origin = from.origin.clone().unwrap_or_default();
    // A new deployment starts without the old one's transient state (its
    // pin, a failed boot assessment), as libostree's upgrader drops it
    // (`ostree_deployment_origin_remove_transient_state`).
    origin.remove_group(crate::sysroot::BootFailure::GROUP);
    if o.switch_to.is_some() {
        origin.remove_key("origin", "container-image-reference");
    }
    origin.set("origin", "refspec", &refspec);
    let dopts = DeployOpts { stateroot: Some(from.stateroot.clone()), origin: Some(origin), ..Default::default() };
    if o.deploy {
        let p = deploy::deploy(w, &target, &dopts)?;
        return report(w, Action::Deployed, &target, Some(format!("{}.{}", p.checksum, p.serial)), false);
    }
    let r = stage::stage(w, &target, &dopts, o.download_only)?;
    let action = if o.download_only { Action::StagedLocked } else { Action::Staged };
    report(w, action, &target, Some(r.deployment), o.apply)
}

/// `--apply`, once the writer is closed (the soft reboot finalizes, which
/// takes the lock): a full reboot, or a soft one (`--soft-reboot`): with
/// `auto`, a full one when the update cannot be soft-rebooted into;
/// `required` refuses then. Returns whether it was a soft reboot.
pub fn apply(sysroot: &camino::Utf8Path, soft: Option<SoftRebootMode>) -> Result<bool> {
    let Some(mode) = soft else {
        reboot()?;
        return Ok(false);
    };
    let opts = softreboot::SoftRebootOpts { index: None, prepare_only: false };
    match softreboot::soft_reboot(sysroot, &opts) {
        Ok(_) => Ok(true),
        Err(e) if mode == SoftRebootMode::Auto && e.downcast_ref::<softreboot::NotSoftRebootable>().is_some() => {
            crate::say!("No soft reboot: {e}");
            reboot()?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Reboot through systemd.
fn reboot() -> Result<()> {
    crate::say!("Rebooting to apply the update");
    let s = std::process::Command::new("systemctl").arg("reboot").status().context("Running systemctl reboot")?;
    if !s.success() {
        bail!("systemctl reboot failed ({s}): the update is staged and is applied at the next reboot");
    }
    Ok(())
}

/// treeboot-upgrade.service's policy (`[Upgrade] Policy=` of
/// /etc/treeboot/upgrade.conf), as rpm-ostree's AutomaticUpdatePolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Do nothing.
    None,
    /// Say whether there is an update.
    Check,
    /// Download and stage it: applied at the next reboot.
    Stage,
    /// Download, stage and reboot into it.
    Apply,
}

/// The config file's text to a policy (pure; the caller names the file in
/// errors).
pub fn parse_policy(text: &str) -> Result<Policy> {
    let kf = KeyFile::parse(text).map_err(|e| anyhow!("{e}"))?;
    Ok(match kf.get("Upgrade", "Policy").as_deref().map(str::trim) {
        None | Some("none") => Policy::None,
        Some("check") => Policy::Check,
        Some("stage") => Policy::Stage,
        Some("apply") => Policy::Apply,
        Some(other) => bail!("[Upgrade] Policy={other}: not one of none, check, stage, apply"),
    })
}

/// Read the policy: `path`, else none (automatic updates are off until
/// configured).
pub fn read_policy(path: &camino::Utf8Path) -> Result<Policy> {
    match std::fs::read_to_string(path) {
        Ok(t) => parse_policy(&t).with_context(|| format!("Reading {path}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::None),
        Err(e) => Err(anyhow!(e).context(format!("Reading {path}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!(parse_policy("").unwrap(), Policy::None, "unset is off");
        assert_eq!(parse_policy("[Upgrade]\nPolicy=stage\n").unwrap(), Policy::Stage);
        assert_eq!(parse_policy("# comment\n[Upgrade]\nPolicy=apply\n").unwrap(), Policy::Apply);
        assert_eq!(parse_policy("[Upgrade]\nPolicy=check\n").unwrap(), Policy::Check);
        let e = parse_policy("[Upgrade]\nPolicy=always\n").unwrap_err().to_string();
        assert!(e.contains("Policy=always: not one of none, check, stage, apply"), "{e}");
        assert!(parse_policy("Policy=stage\n").is_err(), "a key outside a group is not a key file");
    }

    #[test]
    fn refspecs() {
        assert_eq!(split("origin:debian/stable"), (Some("origin"), "debian/stable"));
        assert_eq!(split("debian/stable"), (None, "debian/stable"));
    }
}
