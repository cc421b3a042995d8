//! Boot assessment (docs/boot-assessment.md): bless a deployment or mark it
//! bad, and at boot make a rollback permanent when the boot loader fell
//! back because the default deployment's tries ran out.
//!
//! The counters live in the entries' names (`+LEFT-DONE`, and GRUB's
//! grubenv variables, read by the sysroot model); why and when an
//! assessment failed lives in the failed deployment's origin
//! ([`BootFailure`]). Every change of the entries goes through the swap.

use anyhow::{bail, Result};
use cap_std_ext::cap_std::fs::{Dir, Permissions, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;
use schemars::JsonSchema;
use serde::Serialize;

use super::lifecycle::{bootable_index, list_in_order};
use super::{commit_list, Writer};
use crate::failpoint;
use crate::sysroot::{BootFailure, Deployment};

/// Where `health-check` leaves why a boot failed its required checks, for
/// the boot that rolls back (under the stateroot's shared /var): one file
/// per deployment, `CHECKSUM.SERIAL`, holding the time and the reason.
pub const HEALTH_FAILURES: &str = "health-failed";

/// Now, RFC 3339 in UTC, to the second.
pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Write (or, with None, remove) the failure record of deployment `i`'s
/// origin, atomically; the origin's other groups and keys are kept.
#[context("Recording the boot assessment of deployment {}", d.name())]
fn write_failure(w: &Writer, d: &Deployment, failure: Option<&BootFailure>) -> Result<()> {
    failpoint::hit("assess::write-origin");
    super::edit_origin(w, d, |origin| {
        for k in [BootFailure::TIME, BootFailure::TRIES, BootFailure::REASON] {
            origin.remove_key(BootFailure::GROUP, k);
        }
        if let Some(f) = failure {
            origin.set(BootFailure::GROUP, BootFailure::TIME, &f.time);
            origin.set(BootFailure::GROUP, BootFailure::TRIES, &f.tries.to_string());
            origin.set(BootFailure::GROUP, BootFailure::REASON, &f.reason);
        }
    })
}

/// By hand, what systemd's boot assessment does: bless a deployment (its
/// entry loses the `+LEFT-DONE` counter, as `systemd-bless-boot good`
/// renames it; a recorded failure is forgotten) or mark it bad (`+0-DONE`:
/// the boot loader tries it last and never by default; recorded as marked
/// by hand). Through the swap, like every change of the entries. Returns
/// whether anything changed.
#[context("Marking deployment {index} {}", if bad { "bad" } else { "good" })]
pub fn assess(w: &mut Writer, index: usize, bad: bool) -> Result<bool> {
    let i = bootable_index(w, index, if bad { "marked bad" } else { "blessed" })?;
    let d = w.sysroot.deployment(i)?.clone();
    let new = match (bad, d.tries) {
        (false, None) | (false, Some((0, 0))) => {
            if d.boot_failure().is_some() {
                write_failure(w, &d, None)?;
                crate::say!("Deployment {index} is not being counted; its recorded boot failure is forgotten");
                return Ok(true);
            }
            crate::say!("Deployment {index} is not being counted: nothing to bless");
            return Ok(false);
        }
        (false, Some(_)) => (0, 0),
        (true, _) if w.opts.boot_counting_tries == 0 => bail!(
            "boot counting is off ([sysroot] boot-counting-tries in ostree/repo/config): a deployment cannot be marked bad"
        ),
        (true, Some((0, done))) if done > 0 => {
            crate::say!("Deployment {index} is marked bad already");
            return Ok(false);
        }
        // (0, 0) means "no counter" to the swap: a bad entry has at least one failed try.
        (true, c) => (0, c.map(|c| c.1).unwrap_or(0).max(1)),
    };
    // The record first: a power cut after it and before the swap leaves a
    // deployment still counted with a record, which the next `assess`
    // (or boot) brings in line.
    if bad {
        write_failure(w, &d, Some(&BootFailure { time: now(), tries: new.1, reason: "marked bad by hand (treeboot mark-bad)".into() }))?;
    } else if d.boot_failure().is_some() {
        write_failure(w, &d, None)?;
    }
    let order: Vec<usize> = (0..w.sysroot.deployments.len()).collect();
    let mut list = list_in_order(w, &order)?;
    list[i].tries = Some(new);
    commit_list(w, &list)?;
    if !bad {
        crate::journal::log(
            crate::journal::BLESSED,
            false,
            &format!("treeboot: deployment {} blessed: its boot counter is gone", d.name()),
            &[("DEPLOYMENT", d.name())],
        );
    }
    crate::say!("Deployment {index} is {}", if bad { "marked bad: the boot loader tries it last" } else { "blessed: its boot counter is gone" });
    Ok(true)
}

/// One deployment whose boot assessment failed.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FailedDeployment {
    /// `CHECKSUM.SERIAL`.
    pub deployment: String,
    pub stateroot: String,
    /// Its tries, reason and time, as recorded in its origin.
    #[serde(flatten)]
    pub failure: BootFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AssessOutcome {
    /// The default deployment is booted: nothing to do here.
    BootedDefault,
    /// A deployment after the default is booted, but a deployment ahead of
    /// it still has tries left or is not counted: chosen in the boot menu
    /// (or the default could not be loaded); nothing is changed.
    BootedByChoice,
    /// The deployments ahead of the booted one had spent their tries: the
    /// booted one is now the default, they are kept, marked bad.
    RolledBack,
    /// Not booted from a deployment of this sysroot.
    NotBooted,
}

/// `treeboot assess-boot --json`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BootAssessment {
    pub outcome: AssessOutcome,
    /// The booted deployment (`CHECKSUM.SERIAL`), if any.
    pub booted: Option<String>,
    /// The deployments found failed (RolledBack), in list order.
    pub failed: Vec<FailedDeployment>,
}

impl crate::output::Report for BootAssessment {
    fn human(&self) -> String {
        match self.outcome {
            AssessOutcome::RolledBack => format!(
                "Rolled back: {} is the default now; {} kept, marked bad\n",
                self.booted.as_deref().unwrap_or("?"),
                self.failed.iter().map(|f| f.deployment.as_str()).collect::<Vec<_>>().join(", ")
            ),
            AssessOutcome::BootedDefault => "The default deployment is booted: no rollback\n".into(),
            AssessOutcome::BootedByChoice => "A deployment other than the default was chosen at boot: nothing changed\n".into(),
            AssessOutcome::NotBooted => "Not booted from a deployment of this sysroot: nothing to assess\n".into(),
        }
    }
}

/// What `health-check` left for deployment `name` under `state` (the
/// first line the time, the rest the reason).
fn health_failure(state: Option<&Dir>, name: &str) -> Option<(String, String)> {
    let text = state?.read_to_string(format!("{HEALTH_FAILURES}/{name}")).ok()?;
    let (time, reason) = text.split_once('\n')?;
    Some((time.trim().to_string(), reason.trim().to_string()))
}

/// Record, under `state` (`/var/lib/treeboot`), that deployment `name`'s
/// required health checks failed and why, for the boot that rolls back.
#[context("Recording the failed health checks of {name}")]
pub fn note_health_failure(state: &Dir, name: &str, reason: &str) -> Result<()> {
    state.create_dir_all(HEALTH_FAILURES)?;
    state.atomic_write_with_perms(format!("{HEALTH_FAILURES}/{name}"), format!("{}\n{reason}\n", now()), Permissions::from_mode(0o644))?;
    Ok(())
}

/// At boot: when the booted deployment is not the default and every
/// deployment ahead of it has spent its tries (the boot loader fell back),
/// make the rollback permanent: record each failed one (tries, reason,
/// time) in its origin, then one swap puts the booted deployment first and
/// keeps the failed ones after it, marked bad. `state` is
/// `/var/lib/treeboot` (the reasons `health-check` left).
#[context("Assessing the boot")]
pub fn assess_boot(w: &mut Writer, state: Option<&Dir>) -> Result<BootAssessment> {
    let Some(b) = w.sysroot.booted().cloned() else {
        return Ok(BootAssessment { outcome: AssessOutcome::NotBooted, booted: None, failed: vec![] });
    };
    let booted = Some(b.name());
    if b.index == 0 {
        return Ok(BootAssessment { outcome: AssessOutcome::BootedDefault, booted, failed: vec![] });
    }
    let ahead: Vec<Deployment> = w.sysroot.deployments[..b.index].to_vec();
    if !ahead.iter().all(|d| matches!(d.tries, Some((0, _)))) {
        return Ok(BootAssessment { outcome: AssessOutcome::BootedByChoice, booted, failed: vec![] });
    }
    let mut failed = Vec::new();
    for d in &ahead {
        let tries = d.tries.map(|t| t.1).unwrap_or(0).max(1);
        // A record made earlier (mark-bad, or this same rollback cut short
        // by a power cut) keeps its time and reason.
        let f = match d.boot_failure() {
            Some(f) => f,
            None => {
                let (time, reason) = match health_failure(state, &d.name()) {
                    Some((time, reason)) => (time, format!("tries ran out; the last failed boot: {reason}")),
                    None => (now(), "tries ran out: no boot reached a passing health check (a kernel panic, a hang, or a reboot before the checks)".into()),
                };
                let f = BootFailure { time, tries, reason };
                write_failure(w, d, Some(&f))?;
                f
            }
        };
        failed.push(FailedDeployment { deployment: d.name(), stateroot: d.stateroot.clone(), failure: f });
    }
    let mut order = vec![b.index];
    order.extend((0..w.sysroot.deployments.len()).filter(|&i| i != b.index));
    let mut list = list_in_order(w, &order)?;
    // Spent, with at least one failed try ((0, 0) would mean "not counted").
    for (slot, f) in list[1..=failed.len()].iter_mut().zip(&failed) {
        slot.tries = Some((0, f.failure.tries.max(1)));
    }
    failpoint::hit("assess::swap");
    commit_list(w, &list)?;
    if let Some(state) = state {
        for f in &failed {
            let _ = state.remove_file_optional(format!("{HEALTH_FAILURES}/{}", f.deployment));
        }
    }
    for f in &failed {
        crate::journal::log(
            crate::journal::ROLLED_BACK,
            true,
            &format!(
                "treeboot: deployment {} failed its boot assessment after {} tries ({}); rolled back to {}, now the default",
                f.deployment,
                f.failure.tries,
                f.failure.reason,
                b.name()
            ),
            &[("DEPLOYMENT", f.deployment.clone()), ("ROLLBACK_DEPLOYMENT", b.name()), ("TRIES", f.failure.tries.to_string()), ("REASON", f.failure.reason.clone())],
        );
    }
    Ok(BootAssessment { outcome: AssessOutcome::RolledBack, booted, failed })
}
