//! What each verb reports when it is done: the JSON document of `--json`
//! and the sentences a person reads, one type per document (their schemas
//! are docs/json/*.schema.json, see [`schemas`]).

use schemars::JsonSchema;
use serde::Serialize;

use crate::etcmerge;
use crate::ops;
use crate::output::{date, schema, Report};
use crate::sysroot::Deployment;

/// `kargs --json`: a deployment's kernel arguments (after the edit, for
/// an edit).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Kargs {
    /// The deployment, as `stateroot/checksum.serial`.
    pub deployment: String,
    /// Kernel arguments, without `ostree=`.
    pub kargs: String,
    /// Whether they were changed (false when only shown).
    pub changed: bool,
}

impl Kargs {
    pub fn of(d: &Deployment, shown_only: bool) -> Self {
        let mut k = d.kargs.clone();
        k.remove_key("ostree");
        Kargs { deployment: format!("{}/{}", d.stateroot, d.name()), kargs: k.to_cmdline(), changed: !shown_only }
    }
}

impl Report for Kargs {
    const ANSWER: bool = true;
    fn human(&self) -> String {
        if self.changed {
            format!("Kernel arguments: {}\n", self.kargs)
        } else {
            format!("{}\n", self.kargs)
        }
    }
}

/// `boot-complete --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BootComplete {
    /// Why the previous shutdown did not apply the staged deployment (null
    /// when it did, or nothing was staged).
    pub finalize_failure: Option<String>,
}

impl Report for BootComplete {
    fn human(&self) -> String {
        // The failure was said on stderr, where the journal keeps it.
        String::new()
    }
}

/// `finalize-staged --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Finalized {
    /// nothing-staged, locked (not applied), finalized, or (with
    /// --if-staged-by) left-to-ostree / left-to-treeboot.
    pub outcome: ops::stage::FinalizeOutcome,
}

impl Report for Finalized {
    fn human(&self) -> String {
        match self.outcome {
            // Said on the way ("No staged deployment.").
            ops::stage::FinalizeOutcome::NothingStaged => String::new(),
            ops::stage::FinalizeOutcome::Locked => "Finalization is locked: the staged deployment was not applied\n".into(),
            ops::stage::FinalizeOutcome::Finalized => "Applied the staged deployment: it boots next\n".into(),
            // Said on the way (which unit applies it).
            ops::stage::FinalizeOutcome::LeftToOstree | ops::stage::FinalizeOutcome::LeftToTreeboot => String::new(),
        }
    }
}

/// `etc diff --json`: how a deployment's /etc differs from its defaults
/// (/usr/etc).
#[derive(Debug, Serialize, JsonSchema)]
pub struct EtcDiff {
    /// The deployment's index.
    pub deployment: usize,
    pub added: usize,
    pub modified: usize,
    pub removed: usize,
    /// Every change, paths relative to /etc.
    pub changes: Vec<etcmerge::Change>,
}

impl Report for EtcDiff {
    const ANSWER: bool = true;
    fn human(&self) -> String {
        let mut out = String::new();
        for c in &self.changes {
            let (m, how) = match c.kind {
                etcmerge::ChangeKind::Added => ("A", String::new()),
                etcmerge::ChangeKind::Removed => ("D", String::new()),
                etcmerge::ChangeKind::Modified => ("M", format!(" ({})", c.how.join(", "))),
            };
            out.push_str(&format!("{m}    /etc/{}{how}\n", crate::fsutil::display_path(&c.path)));
        }
        out.push_str(&format!(
            "{} modified, {} added, {} removed (deployment {})\n",
            self.modified, self.added, self.removed, self.deployment
        ));
        out
    }
}

/// `init-fs --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct InitFs {
    /// The new sysroot.
    pub path: String,
}

impl Report for InitFs {
    fn human(&self) -> String {
        format!("Initialized sysroot {}\n", self.path)
    }
}

/// `os-init --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OsInit {
    /// The new (or existing) stateroot.
    pub stateroot: String,
}

impl Report for OsInit {
    fn human(&self) -> String {
        format!("ostree/deploy/{} initialized as a stateroot\n", self.stateroot)
    }
}

/// `set-default --json` and `rollback --json`: the new default.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NewDefault {
    /// The new default deployment, as `stateroot/checksum.serial`.
    pub default: String,
    /// The index it had before (it is 0 now).
    pub former_index: usize,
    /// False when it was the default already.
    pub changed: bool,
    #[serde(skip)]
    pub rollback: bool,
}

impl Report for NewDefault {
    fn human(&self) -> String {
        match (self.changed, self.rollback) {
            (false, _) => String::new(),
            (true, true) => format!("Rolled back: the former deployment {} ({}) is now the default\n", self.former_index, self.default),
            (true, false) => format!("Deployment {} ({}) is now the default\n", self.former_index, self.default),
        }
    }
}

/// `undeploy --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Undeployed {
    /// The removed deployment, as `checksum.serial`.
    pub removed: String,
}

impl Report for Undeployed {
    fn human(&self) -> String {
        format!("Deleted deployment {}\n", self.removed)
    }
}

/// `pin --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Pinned {
    pub index: usize,
    /// Whether the deployment is pinned now.
    pub pinned: bool,
    /// False when it already was (or was not).
    pub changed: bool,
}

impl Report for Pinned {
    fn human(&self) -> String {
        // Said on the way ("Deployment N is now pinned").
        String::new()
    }
}

/// `bless --json`, `mark-bad --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Assessed {
    pub index: usize,
    /// Marked bad (`mark-bad`), or blessed (`bless`).
    pub bad: bool,
    /// False when it was so already (or, for bless, not counted).
    pub changed: bool,
}

impl Report for Assessed {
    fn human(&self) -> String {
        // Said on the way.
        String::new()
    }
}

/// `lock-finalization --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Locked {
    /// Whether finalization of the staged deployment is locked now.
    pub locked: bool,
}

impl Report for Locked {
    fn human(&self) -> String {
        // Said on the way ("Finalization is locked: ...").
        String::new()
    }
}

impl Report for ops::deploy::Prepared {
    fn human(&self) -> String {
        format!(
            "Deployed {} {}.{}{}\n",
            self.stateroot,
            self.checksum,
            self.serial,
            self.version.as_deref().map(|v| format!(" (version {v})")).unwrap_or_default()
        )
    }
}

impl Report for ops::stage::StageResult {
    fn human(&self) -> String {
        format!(
            "Staged {} {}{}; it will be applied at shutdown{}\n/etc: {} modified, {} added, {} removed will be carried over (re-checked at shutdown)\n",
            self.stateroot,
            self.deployment,
            self.version.as_deref().map(|v| format!(" (version {v})")).unwrap_or_default(),
            if self.locked { " once unlocked (treeboot lock-finalization --unlock)" } else { "" },
            self.etc.modified,
            self.etc.added,
            self.etc.removed
        )
    }
}

impl Report for ops::cleanup::CleanupStats {
    fn human(&self) -> String {
        format!(
            "Removed {} deployment(s), {} kernel dir(s), {} boot dir(s); pruned {} object(s), {} bytes\n",
            self.deployments_removed.len(),
            self.kernel_dirs_removed.len(),
            self.boot_dirs_removed.len(),
            self.objects_pruned,
            self.bytes_freed
        )
    }
}

impl Report for ops::upgrade::UpgradeReport {
    fn human(&self) -> String {
        use ops::upgrade::Action;
        let what = match (&self.version, self.timestamp) {
            (Some(v), Some(t)) => format!("{} (version {v}, {})", self.checksum, date(t)),
            (Some(v), None) => format!("{} (version {v})", self.checksum),
            (None, Some(t)) => format!("{} ({})", self.checksum, date(t)),
            (None, None) => self.checksum.clone(),
        };
        let new = self.deployment.as_deref().unwrap_or("");
        match self.action {
            Action::NoUpdate => format!("No update available: {} is at {what}, as deployment {}\n", self.refspec, self.from),
            Action::Available => format!("Update available: {} is at {what}; `treeboot upgrade` stages it\n", self.refspec),
            Action::Staged => format!(
                "Staged the update {new} of {}: {what}; it is applied at shutdown{}\n",
                self.refspec,
                match (self.reboot, self.soft_reboot) {
                    (true, true) => " (soft-rebooting now: it was applied already)",
                    (true, false) => " (rebooting now)",
                    _ => "",
                }
            ),
            Action::StagedLocked => format!(
                "Downloaded and staged the update {new} of {}: {what}; `treeboot upgrade --apply` applies it (finalization is locked until then)\n",
                self.refspec
            ),
            Action::Deployed => format!("Deployed the update {new} of {}: {what}; it boots next\n", self.refspec),
            // Said on the way.
            Action::AlreadyStaged | Action::Off => String::new(),
        }
    }
}

impl Report for ops::softreboot::SoftRebootReport {
    fn human(&self) -> String {
        use ops::softreboot::SoftRebootAction as A;
        let d = self.deployment.as_deref().unwrap_or("");
        match self.action {
            A::Prepared => format!("/run/nextroot is {d}: `systemctl soft-reboot` switches into it\n"),
            A::SoftRebooting => format!("Soft-rebooting into {d}\n"),
            A::Reset => "The prepared soft reboot was taken down\n".into(),
            A::NothingToReset => "No soft reboot was prepared\n".into(),
        }
    }
}

impl Report for ops::verify::Report {
    const ANSWER: bool = true;
    fn human(&self) -> String {
        ops::verify::render(self)
    }
}

/// Every document `--json` prints, by the name of its file in docs/json/
/// (`VERB.schema.json`), with its schema.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("status", schema::<ops::status::Status>()),
        ("deploy", schema::<ops::deploy::Prepared>()),
        ("stage", schema::<ops::stage::StageResult>()),
        ("finalize-staged", schema::<Finalized>()),
        ("boot-complete", schema::<BootComplete>()),
        ("lock-finalization", schema::<Locked>()),
        ("verify", schema::<ops::verify::Report>()),
        ("set-default", schema::<NewDefault>()),
        ("rollback", schema::<NewDefault>()),
        ("undeploy", schema::<Undeployed>()),
        ("pin", schema::<Pinned>()),
        ("cleanup", schema::<ops::cleanup::CleanupStats>()),
        ("kargs", schema::<Kargs>()),
        ("etc-diff", schema::<EtcDiff>()),
        ("diff", schema::<ops::diff::DeploymentDiff>()),
        ("init-fs", schema::<InitFs>()),
        ("os-init", schema::<OsInit>()),
        ("upgrade", schema::<ops::upgrade::UpgradeReport>()),
        ("health-check", schema::<ops::health::HealthReport>()),
        ("bless", schema::<Assessed>()),
        ("mark-bad", schema::<Assessed>()),
        ("assess-boot", schema::<ops::assess::BootAssessment>()),
        ("switch", schema::<ops::upgrade::UpgradeReport>()),
        ("soft-reboot", schema::<ops::softreboot::SoftRebootReport>()),
    ]
}
