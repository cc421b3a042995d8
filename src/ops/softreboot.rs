//! `treeboot soft-reboot`: restart userspace into another deployment
//! without a firmware and kernel boot (`systemctl soft-reboot`, systemd
//! >= 254), when the kernel would not change.
//!
//! Steps: check that the target can be soft-rebooted into ([`blocker`]);
//! finalize it when it is the staged deployment (the same finalize as at
//! shutdown, so the /etc merge and the new boot list are written as for a
//! full reboot, and a full reboot after this boots it too); build
//! `/run/nextroot` with prepare-root's code ([`crate::early::nextroot`]);
//! then `systemctl soft-reboot`. `--reset` undoes a prepared next root.

use anyhow::{anyhow, bail, Context, Result};
use camino::Utf8Path;
use serde::Serialize;

use super::stage::{self, NotBooted};
use crate::early::nextroot;
use crate::sysroot::{Deployment, Sysroot};

/// `upgrade --apply --soft-reboot=WHEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SoftRebootMode {
    /// A soft reboot when the update allows it, else a full reboot.
    Auto,
    /// A soft reboot, or nothing (exit 7) when the update does not allow it.
    Required,
}

/// Where systemd keeps the state of a run: `/run/nextroot` lives there.
pub const RUN: &str = "/run";

crate::refusal!(
    /// The target cannot be soft-rebooted into (a full reboot is needed).
    NotSoftRebootable
);

/// Why `target` cannot be soft-rebooted into from `booted`, or None when it
/// can: the kernel and initramfs (the bootcsum) and the kernel arguments
/// but `ostree=` must be the booted ones, as libostree checks
/// (`ostree_sysroot_deployment_can_soft_reboot`), and so must the
/// stateroot: the kernel command line, which a soft reboot keeps, names it,
/// and /var is mounted from it.
pub fn blocker(booted: &Deployment, target: &Deployment) -> Option<String> {
    if target.same(booted) {
        return Some("it is the booted deployment".into());
    }
    if target.stateroot != booted.stateroot {
        return Some(format!("its stateroot {} is not the booted one ({})", target.stateroot, booted.stateroot));
    }
    if target.bootcsum != booted.bootcsum {
        return Some("its kernel or initramfs differs from the booted one".into());
    }
    let without_ostree = |d: &Deployment| {
        let mut k = d.kargs.clone();
        k.remove_key("ostree");
        k.to_cmdline()
    };
    let (b, t) = (without_ostree(booted), without_ostree(target));
    if b != t {
        return Some(format!("its kernel arguments differ from the booted ones ({t:?}, booted with {b:?})"));
    }
    None
}

/// The deployment a soft reboot goes to by default: the staged one, else
/// the default when it is not booted.
pub fn default_target(s: &Sysroot) -> Option<&Deployment> {
    s.staged.as_ref().or_else(|| s.deployments.first().filter(|d| !d.booted))
}

#[derive(Debug, Serialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SoftRebootAction {
    /// `/run/nextroot` is ready; `systemctl soft-reboot` switches into it.
    Prepared,
    /// Prepared, and `systemctl soft-reboot` was started.
    SoftRebooting,
    /// `--reset`: the prepared next root was taken down.
    Reset,
    /// `--reset` with nothing prepared.
    NothingToReset,
}

/// `treeboot soft-reboot --json`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SoftRebootReport {
    pub action: SoftRebootAction,
    /// `stateroot/checksum.serial` of the next root.
    pub deployment: Option<String>,
    /// Whether the staged deployment was finalized first.
    pub finalized: bool,
    /// Whether a full reboot would boot the same deployment (it is the default).
    pub default: bool,
}

pub struct SoftRebootOpts {
    /// The deployment, as `status` numbers them (default: [`default_target`]).
    pub index: Option<usize>,
    /// Prepare only; the caller runs `systemctl soft-reboot` (or
    /// `systemctl reboot`, which systemd >= 256 turns into a soft reboot
    /// when /run/nextroot is ready).
    pub prepare_only: bool,
}

/// What may be soft-rebooted into, before anything changes: the target's
/// `stateroot/checksum.serial` and whether it is the staged deployment.
fn check(s: &Sysroot, opts: &SoftRebootOpts) -> Result<(String, bool)> {
    let Some(booted) = s.booted() else {
        return Err(NotBooted(format!("not booted from a deployment of {}: there is nothing to soft-reboot from", s.path)).into());
    };
    let target = match opts.index {
        Some(i) => s.by_index(i)?,
        None => default_target(s).ok_or_else(|| {
            NotSoftRebootable("nothing is staged and the default deployment is the booted one: name a deployment (as `status` numbers them)".into())
        })?,
    };
    let name = format!("{}/{}", target.stateroot, target.name());
    if let Some(why) = blocker(booted, target) {
        return Err(NotSoftRebootable(format!("cannot soft-reboot into {name}: {why}; a full reboot is needed")).into());
    }
    if !opts.prepare_only && !systemd_soft_reboots() {
        return Err(NotSoftRebootable("this systemd cannot soft-reboot (no soft-reboot.target: systemd 254 or later is needed)".into()).into());
    }
    if target.staged && s.locked {
        return Err(NotSoftRebootable(format!(
            "the finalization of the staged deployment {name} is locked: `treeboot lock-finalization --unlock` first"
        ))
        .into());
    }
    Ok((name, target.staged))
}

/// `treeboot soft-reboot --reset`.
pub fn reset() -> Result<SoftRebootReport> {
    let did = nextroot::reset(Utf8Path::new(RUN))?;
    Ok(SoftRebootReport {
        action: if did { SoftRebootAction::Reset } else { SoftRebootAction::NothingToReset },
        deployment: None,
        finalized: false,
        default: false,
    })
}

/// `treeboot soft-reboot [INDEX]`.
pub fn soft_reboot(sysroot: &Utf8Path, opts: &SoftRebootOpts) -> Result<SoftRebootReport> {
    let (name, finalized) = check(&Sysroot::load(sysroot)?, opts)?;
    if finalized {
        crate::say!("Applying the staged deployment {name}");
        stage::finalize(sysroot).context("Finalizing the staged deployment before the soft reboot")?;
    }
    // The list as it is now (finalize made the staged one the default).
    let s = Sysroot::load(sysroot)?;
    let target = s
        .deployments
        .iter()
        .find(|d| format!("{}/{}", d.stateroot, d.name()) == name)
        .ok_or_else(|| anyhow!("{name} is not in the deployment list after finalizing it"))?;
    let default = target.index == 0;
    let run = Utf8Path::new(RUN);
    // Whether systemd runs, before prepare writes drop-ins under /run/systemd.
    let systemd = std::env::var_os("TREEBOOT_NO_SYSTEMCTL").is_none() && run.join("systemd/system").is_dir();
    // A root prepared before (another target, or a try that failed) goes first.
    nextroot::reset(run)?;
    let t = std::time::Instant::now();
    let prepared =
        nextroot::prepare(physical_root(&s.path), &target.path(), run).with_context(|| format!("Preparing {RUN}/{} from {name}", nextroot::NEXTROOT))?;
    let mounted_ms = t.elapsed().as_millis();
    let mut checked = String::new();
    if systemd {
        let t = std::time::Instant::now();
        let how = ensure_kept(run, &prepared.units).inspect_err(|_| {
            let _ = nextroot::reset(run);
        })?;
        checked = format!("; {how} in {} ms", t.elapsed().as_millis());
    }
    crate::say!("Prepared {RUN}/{} from {name} (mounted in {mounted_ms} ms{checked})", nextroot::NEXTROOT);
    if !default {
        crate::warn!("{name} is not the default deployment: a full reboot later boots the default");
    }
    if opts.prepare_only {
        return Ok(SoftRebootReport { action: SoftRebootAction::Prepared, deployment: Some(name), finalized, default });
    }
    // --no-block: the job is queued and systemctl returns; stopping the
    // units (this command's caller among them, perhaps) follows.
    let st = std::process::Command::new("systemctl").args(["soft-reboot", "--no-block"]).status();
    match st {
        Ok(st) if st.success() => {}
        // Killed by a signal: the soft reboot that stops everything is
        // under way; the prepared root must stay.
        Ok(st) if st.code().is_none() => {}
        other => {
            // Nothing half-done is left: the prepared root goes; the list
            // (finalized or not) boots as it says at the next full reboot.
            let _ = nextroot::reset(run);
            match other {
                Ok(st) => bail!("systemctl soft-reboot failed ({st}); the next root was taken down again"),
                Err(e) => return Err(anyhow!(e).context("Running systemctl soft-reboot; the next root was taken down again")),
            }
        }
    }
    Ok(SoftRebootReport { action: SoftRebootAction::SoftRebooting, deployment: Some(name), finalized, default })
}

/// Make sure systemd keeps the next root's mounts across the soft reboot:
/// it read the drop-ins of [`nextroot::prepare`] when it loaded each mount
/// unit (they were written before the mounts); a unit it had loaded before
/// (a mount made there earlier by something else) still has its default
/// dependencies, and only then is a `systemctl daemon-reload` (seconds
/// under emulation, the whole unit tree read again and every generator run)
/// worth its cost. Returns what was done, for the report.
fn ensure_kept(run: &Utf8Path, units: &[String]) -> Result<&'static str> {
    let out = std::process::Command::new("systemctl")
        .args(["show", "--property=Id,DefaultDependencies"])
        .args(units)
        .output()
        .context("Running systemctl show")?;
    if out.status.success() {
        let missing = units_with_default_deps(&String::from_utf8_lossy(&out.stdout), units);
        if missing.is_empty() {
            return Ok("systemd keeps the mounts");
        }
        crate::warn!("systemd loaded {} before its drop-in: reloading it", missing.join(", "));
    }
    let st = std::process::Command::new("systemctl").arg("daemon-reload").status().context("Running systemctl daemon-reload")?;
    if !st.success() {
        bail!("systemctl daemon-reload failed ({st}): the next root's mounts would not outlive the soft reboot; it was taken down again");
    }
    // The reload ran ostree-system-generator, which takes its switch.
    nextroot::arm_generators(run)?;
    Ok("systemd reloaded")
}

/// Of `units`, those `systemctl show --property=Id,DefaultDependencies`
/// (`out`) does not report with `DefaultDependencies=no`: a unit it does
/// not list at all counts as not kept.
fn units_with_default_deps(out: &str, units: &[String]) -> Vec<String> {
    let mut kept = std::collections::HashSet::new();
    for block in out.split("\n\n") {
        let mut id = None;
        let mut no = false;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("Id=") {
                id = Some(v.trim());
            } else if line.trim() == "DefaultDependencies=no" {
                no = true;
            }
        }
        if let (Some(id), true) = (id, no) {
            kept.insert(id.to_string());
        }
    }
    units.iter().filter(|u| !kept.contains(u.as_str())).cloned().collect()
}

/// The physical root's path: on a booted system (`--sysroot /`, where `/`
/// is the deployment) prepare-root left it at `/sysroot`.
fn physical_root(path: &Utf8Path) -> &Utf8Path {
    if path == "/" {
        Utf8Path::new("/sysroot")
    } else {
        path
    }
}

/// Whether the running systemd can soft-reboot (it ships soft-reboot.target
/// since 254).
pub fn systemd_soft_reboots() -> bool {
    ["/usr/lib/systemd/system/soft-reboot.target", "/lib/systemd/system/soft-reboot.target"]
        .iter()
        .any(|p| Utf8Path::new(p).exists())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysroot::fixture::*;

    #[test]
    fn a_unit_not_shown_kept_is_reloaded() {
        let units: Vec<String> = ["run-nextroot.mount", "run-nextroot-usr.mount", "run-nextroot-sysroot.mount"].map(String::from).to_vec();
        let all_kept = "Id=run-nextroot.mount\nDefaultDependencies=no\n\nId=run-nextroot-usr.mount\nDefaultDependencies=no\n\nId=run-nextroot-sysroot.mount\nDefaultDependencies=no\n";
        assert!(units_with_default_deps(all_kept, &units).is_empty());
        // Loaded before the drop-in: the default dependencies; and a unit
        // systemd did not report is not known to be kept either.
        let one_not = "Id=run-nextroot.mount\nDefaultDependencies=no\n\nId=run-nextroot-usr.mount\nDefaultDependencies=yes\n";
        assert_eq!(units_with_default_deps(one_not, &units), ["run-nextroot-usr.mount", "run-nextroot-sysroot.mount"]);
        assert_eq!(units_with_default_deps("", &units), units);
    }

    #[test]
    fn same_kernel_and_arguments_soft_reboot() {
        let f = Fixture::new(&[('b', 'e'), ('a', 'e')]);
        f.boot_into(&format!("{}.0", csum('a')));
        let s = f.load().unwrap();
        let booted = s.booted().unwrap();
        let target = &s.deployments[0];
        assert_eq!(blocker(booted, target), None);
        assert_eq!(blocker(booted, booted).as_deref(), Some("it is the booted deployment"));
        assert_eq!(default_target(&s).map(|d| d.csum.clone()), Some(csum('b')));
    }

    #[test]
    fn another_kernel_stateroot_or_arguments_do_not() {
        let f = Fixture::new(&[('b', 'f'), ('a', 'e')]);
        f.boot_into(&format!("{}.0", csum('a')));
        let s = f.load().unwrap();
        let booted = s.booted().unwrap().clone();
        let mut t = s.deployments[0].clone();
        assert_eq!(blocker(&booted, &t).as_deref(), Some("its kernel or initramfs differs from the booted one"));
        t.bootcsum = booted.bootcsum.clone();
        assert_eq!(blocker(&booted, &t), None);
        // ostree= differs between any two deployments: it does not count.
        t.kargs.replace("ostree=/ostree/boot.1/os/x/9").unwrap();
        assert_eq!(blocker(&booted, &t), None);
        t.kargs.append("quiet").unwrap();
        assert!(blocker(&booted, &t).unwrap().starts_with("its kernel arguments differ"), "{:?}", blocker(&booted, &t));
        let mut t = s.deployments[0].clone();
        t.bootcsum = booted.bootcsum.clone();
        t.stateroot = "other".into();
        assert_eq!(blocker(&booted, &t).as_deref(), Some("its stateroot other is not the booted one (os)"));
    }

    #[test]
    fn the_staged_deployment_is_the_default_target() {
        let f = Fixture::new(&[('a', 'e')]);
        f.boot_into(&format!("{}.0", csum('a')));
        // Nothing staged, the default booted: no target.
        assert!(default_target(&f.load().unwrap()).is_none());
        f.stage('c', 'e', false);
        let s = f.load().unwrap();
        let t = default_target(&s).unwrap();
        assert!(t.staged);
        assert_eq!(blocker(s.booted().unwrap(), t), None);
    }
}
