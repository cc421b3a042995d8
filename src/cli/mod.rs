//! Command-line definitions and output (human and JSON).

use anyhow::{anyhow, Context, Result};
use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

use crate::etcmerge::{self, ChangeKind};
use crate::ops;
use crate::sysroot::Sysroot;

pub mod report;
#[cfg(feature = "libostree")]
pub mod write;

#[derive(Parser, Debug)]
#[command(name = "treeboot", version, about = "Manage image-based, ostree-style operating systems")]
pub struct Cli {
    /// The sysroot to operate on.
    #[arg(long, global = true, default_value = "/")]
    pub sysroot: Utf8PathBuf,
    /// Print the result as one JSON document on stdout, and messages,
    /// warnings, progress and the error as JSON lines on stderr (docs/json.md).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only answers, warnings and errors.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail (status: every field).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
pub struct DeployArgs {
    /// Stateroot (operating system name) to deploy into.
    #[arg(long = "os")]
    pub os: Option<String>,
    /// Use this file as the new deployment's origin.
    #[arg(long)]
    pub origin_file: Option<Utf8PathBuf>,
    /// Set a kernel argument, replacing earlier values of the same key.
    #[arg(long = "karg", value_name = "K=V")]
    pub karg: Vec<String>,
    /// Append a kernel argument.
    #[arg(long = "karg-append", value_name = "K=V")]
    pub karg_append: Vec<String>,
    /// Start from the running kernel's command line.
    #[arg(long)]
    pub karg_proc_cmdline: bool,
    /// Start from an empty command line.
    #[arg(long)]
    pub karg_none: bool,
    /// Add the deployment after the booted (or merge) one instead of first.
    #[arg(long)]
    pub not_as_default: bool,
    /// Keep all existing deployments.
    #[arg(long)]
    pub retain: bool,
    /// Keep deployments newer than the booted one.
    #[arg(long)]
    pub retain_pending: bool,
    /// Keep deployments older than the booted one.
    #[arg(long)]
    pub retain_rollback: bool,
    /// Do not merge /etc from an existing deployment: use the new defaults.
    #[arg(long)]
    pub no_merge: bool,
    /// Staging only: stage it locked (not applied until `lock-finalization --unlock`).
    #[arg(long)]
    pub lock_finalization: bool,
    /// A ref (`remote:ref` or `ref`) or a commit checksum.
    pub refspec: String,
}

/// `upgrade` and `switch`.
#[derive(Args, Debug, Clone)]
pub struct UpgradeArgs {
    /// Stateroot to upgrade (default: the booted one).
    #[arg(long = "os")]
    pub os: Option<String>,
    /// Only say whether an update is available (exit 77 when there is none); change nothing.
    #[arg(long, conflicts_with_all = ["download_only", "apply", "deploy"])]
    pub check: bool,
    /// Download and stage the update with finalization locked: `upgrade --apply` applies it later.
    #[arg(long, conflicts_with_all = ["apply", "deploy"])]
    pub download_only: bool,
    /// Stage the update: it is applied at shutdown (the default).
    #[arg(long)]
    pub stage: bool,
    /// Stage the update (or unlock the one downloaded) and reboot into it.
    #[arg(long, conflicts_with = "deploy")]
    pub apply: bool,
    /// With --apply: a soft reboot (systemctl soft-reboot) when the update keeps the booted kernel and arguments; `auto` reboots fully otherwise, `required` refuses (exit 7).
    #[arg(long, value_enum, value_name = "WHEN", requires = "apply")]
    pub soft_reboot: Option<ops::softreboot::SoftRebootMode>,
    /// Write the new deployment now instead of staging it (for a sysroot that is not booted).
    #[arg(long, conflicts_with = "stage")]
    pub deploy: bool,
    /// Accept a commit older than the deployment it replaces.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Do what the policy of the config file says (treeboot-upgrade.service): none, check, stage or apply.
    #[arg(long, conflicts_with_all = ["check", "download_only", "apply", "deploy", "stage"])]
    pub automatic: bool,
    /// The config file of --automatic.
    #[arg(long, value_name = "FILE", default_value = "/etc/treeboot/upgrade.conf", requires = "automatic")]
    pub config: Utf8PathBuf,
}

impl UpgradeArgs {
    pub fn opts(&self, switch_to: Option<String>) -> ops::upgrade::UpgradeOpts {
        ops::upgrade::UpgradeOpts {
            stateroot: self.os.clone(),
            check: self.check,
            download_only: self.download_only,
            apply: self.apply,
            deploy: self.deploy,
            allow_downgrade: self.allow_downgrade,
            switch_to,
            soft_reboot: self.soft_reboot,
        }
    }
}

/// `deploy`: the deployment options, and `--stage`.
#[derive(Args, Debug, Clone)]
pub struct DeployCmd {
    #[command(flatten)]
    pub args: DeployArgs,
    /// Stage the deployment instead: it is applied at shutdown (as `treeboot stage`).
    #[arg(long)]
    pub stage: bool,
}

impl DeployArgs {
    pub fn opts(&self) -> ops::deploy::DeployOpts {
        ops::deploy::DeployOpts {
            stateroot: self.os.clone(),
            origin_file: self.origin_file.clone(),
            karg: self.karg.clone(),
            karg_append: self.karg_append.clone(),
            karg_proc_cmdline: self.karg_proc_cmdline,
            karg_none: self.karg_none,
            not_as_default: self.not_as_default,
            retain: self.retain,
            retain_pending: self.retain_pending,
            retain_rollback: self.retain_rollback,
            no_merge: self.no_merge,
            origin: None,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum EtcCmd {
    /// What differs between /usr/etc and /etc of a deployment.
    Diff {
        /// Deployment index (default: the booted one, else the default).
        #[arg(long)]
        deployment: Option<usize>,
    },
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create an empty sysroot at PATH.
    InitFs {
        /// The directory to make a sysroot of (created if missing).
        path: Utf8PathBuf,
    },
    /// Create an empty stateroot.
    OsInit {
        /// The stateroot (operating system) name.
        stateroot: String,
    },
    /// List deployments in boot order.
    Status {
        /// Print the JSON schema of `status --json` (docs/json/status.schema.json) and exit.
        #[arg(long)]
        json_schema: bool,
    },
    /// Deploy a commit as a new deployment.
    Deploy(DeployCmd),
    /// Prepare a deployment now and apply it at shutdown.
    Stage(DeployArgs),
    /// Fetch the update of the booted deployment's origin from its remote and stage it.
    Upgrade(UpgradeArgs),
    /// Fetch REFSPEC from its remote and stage it: the deployment follows REFSPEC from now on.
    Switch {
        #[command(flatten)]
        args: UpgradeArgs,
        /// The ref to follow (`remote:ref`, or a local `ref`).
        refspec: String,
    },
    /// Apply the staged deployment (the ExecStop of treeboot-finalize-staged.service).
    FinalizeStaged {
        /// Hold /boot open until terminated (treeboot-finalize-staged-hold.service).
        #[arg(long)]
        hold: bool,
        /// Apply only what TOOL staged, and leave the other tool's record to
        /// that tool's unit (the ExecStop of both finalize units when
        /// ostree-boot is installed beside treeboot; `ostree` runs `ostree
        /// admin finalize-staged` for a record libostree wrote).
        #[arg(long, value_name = "TOOL", conflicts_with = "hold")]
        if_staged_by: Option<crate::formats::runstate::Stager>,
    },
    /// Lock (or unlock) finalization of the staged deployment.
    LockFinalization {
        /// Unlock it instead: it is applied at the next shutdown.
        #[arg(long)]
        unlock: bool,
    },
    /// Report a finalize failure of the previous shutdown (treeboot-boot-complete.service).
    BootComplete,
    /// Check that the sysroot is bootable; report every problem.
    Verify,
    /// Make a deployment the default.
    SetDefault {
        /// Deployment index, as `status` numbers them (0 is the default).
        index: usize,
    },
    /// Make the previous deployment the default.
    Rollback,
    /// Restart userspace into a deployment with the booted kernel, without a
    /// firmware and kernel boot (systemctl soft-reboot; docs/soft-reboot.md).
    SoftReboot {
        /// Deployment index, as `status` numbers them (default: the staged
        /// one, else the default if it is not booted). A staged deployment is
        /// finalized first.
        #[arg(conflicts_with = "reset")]
        index: Option<usize>,
        /// Prepare /run/nextroot only; `systemctl soft-reboot` switches into it.
        #[arg(long, conflicts_with = "reset")]
        prepare_only: bool,
        /// Take down a prepared /run/nextroot instead.
        #[arg(long)]
        reset: bool,
    },
    /// Remove a deployment.
    Undeploy {
        /// Deployment index, as `status` numbers them (0 is the default).
        index: usize,
    },
    /// Pin a deployment so that it is never removed automatically.
    Pin {
        /// Unpin it instead.
        #[arg(long)]
        unpin: bool,
        /// Deployment index, as `status` numbers them (0 is the default).
        index: usize,
    },
    /// Bless a deployment by hand: its entry's boot counter is dropped (as systemd-bless-boot does).
    Bless {
        /// Deployment index, as `status` numbers them (default: the booted one).
        index: Option<usize>,
    },
    /// Mark a deployment bad by hand: the boot loader tries it last (boot counting must be on).
    MarkBad {
        /// Deployment index, as `status` numbers them (default: the booted one).
        index: Option<usize>,
    },
    /// At boot: make a rollback permanent when the boot loader fell back because the default's tries ran out.
    AssessBoot {
        /// Where `health-check` leaves why a boot failed (shared /var of the stateroot).
        #[arg(long, value_name = "DIR", default_value = "/var/lib/treeboot")]
        state_dir: Utf8PathBuf,
    },
    /// Remove what no deployment references; prune the repository.
    Cleanup,
    /// Show or edit kernel arguments of a deployment.
    Kargs {
        /// Append an argument (repeatable).
        #[arg(long, value_name = "K=V")]
        append: Vec<String>,
        /// Delete an argument: every value of K, or only K=V (repeatable).
        #[arg(long, value_name = "K[=V]")]
        delete: Vec<String>,
        /// Replace the value of K, or K=OLD by K=NEW (repeatable).
        #[arg(long, value_name = "K=V")]
        replace: Vec<String>,
        /// Deployment index (default: the booted one, else the default).
        #[arg(long)]
        deployment: Option<usize>,
    },
    /// The /etc merge: preview what differs.
    #[command(subcommand)]
    Etc(EtcCmd),
    /// Run the boot's health checks (greenboot's and treeboot's), then the green or red scripts.
    HealthCheck {
        /// The root whose /etc and /usr hold the checks (default: the running system).
        #[arg(long, default_value = "/")]
        root: Utf8PathBuf,
        /// Stop a check that runs longer than this, and count it as failed.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        timeout: u64,
        /// When a required check fails and the booted deployment is being assessed (boot counting): record why, then reboot, so that the boot loader uses up a try.
        #[arg(long)]
        reboot_on_failure: bool,
        /// Where the reason of a failure is recorded, for the boot that rolls back (with --reboot-on-failure).
        #[arg(long, value_name = "DIR", default_value = "/var/lib/treeboot")]
        state_dir: Utf8PathBuf,
    },
    /// What changed between two deployments: files in /usr, and packages.
    Diff {
        /// The deployment to compare from (default: the booted one, else deployment 1).
        from: Option<usize>,
        /// The deployment to compare to (default: the staged one, else the default).
        to: Option<usize>,
    },
}

crate::refusal!(
    /// A writing command run by a user other than root.
    NotRoot
);

/// Exit codes, the same for every binary (docs/exit-codes.md): 1 failed,
/// 2 usage, 3 not booted from a deployment, 4 refused for an /etc merge
/// conflict, 5 refused for lack of space in /boot, 6 a writing command
/// not run as root, 7 a soft reboot refused (a full reboot is needed).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<NotRoot>().is_some() {
        6
    } else if e.downcast_ref::<ops::stage::NotBooted>().is_some() {
        3
    } else if e.downcast_ref::<ops::deploy::EtcConflict>().is_some() {
        4
    } else if e.downcast_ref::<crate::bootloader::kernel::NoSpace>().is_some() {
        5
    } else if e.downcast_ref::<ops::softreboot::NotSoftRebootable>().is_some() {
        7
    } else {
        1
    }
}

/// A command that only reads (or finalizes, which needs no libostree): it
/// runs in the `treeboot` binary itself, which does not link libostree (its
/// start-up alone costs ~12 ms).
enum ReadCmd {
    Status { json_schema: bool },
    /// `kargs` without edits.
    ShowKargs { deployment: Option<usize> },
    BootComplete,
    FinalizeStaged { hold: bool, if_staged_by: Option<crate::formats::runstate::Stager> },
    Verify,
    EtcDiff { deployment: Option<usize> },
    Diff { from: Option<usize>, to: Option<usize> },
    HealthCheck { root: Utf8PathBuf, timeout: u64, reboot_on_failure: bool, state_dir: Utf8PathBuf },
}

/// A writing command: `treeboot` execs `treeboot-writer`, which runs it
/// (`write::run_writer`).
#[derive(Debug)]
pub enum WriteCmd {
    InitFs { path: Utf8PathBuf },
    OsInit { stateroot: String },
    /// `deploy` without `--stage`.
    Deploy(DeployArgs),
    /// `stage`, or `deploy --stage`.
    Stage(DeployArgs),
    LockFinalization { unlock: bool },
    SetDefault { index: usize },
    Rollback,
    SoftReboot { index: Option<usize>, prepare_only: bool, reset: bool },
    Undeploy { index: usize },
    Pin { unpin: bool, index: usize },
    Cleanup,
    /// `kargs` with at least one edit.
    Kargs { edit: ops::lifecycle::KargsEdit, deployment: Option<usize> },
    /// `bless` (`bad: false`) or `mark-bad`.
    Assess { index: Option<usize>, bad: bool },
    AssessBoot { state_dir: Utf8PathBuf },
    /// `upgrade`, or `switch` (with its refspec).
    Upgrade { args: UpgradeArgs, switch_to: Option<String> },
}

impl WriteCmd {
    /// The verb as typed.
    pub fn verb(&self) -> &'static str {
        match self {
            WriteCmd::InitFs { .. } => "init-fs",
            WriteCmd::OsInit { .. } => "os-init",
            WriteCmd::Deploy(_) => "deploy",
            WriteCmd::Stage(_) => "stage",
            WriteCmd::LockFinalization { .. } => "lock-finalization",
            WriteCmd::SetDefault { .. } => "set-default",
            WriteCmd::Rollback => "rollback",
            WriteCmd::SoftReboot { .. } => "soft-reboot",
            WriteCmd::Undeploy { .. } => "undeploy",
            WriteCmd::Pin { .. } => "pin",
            WriteCmd::Cleanup => "cleanup",
            WriteCmd::Kargs { .. } => "kargs",
            WriteCmd::Assess { bad: false, .. } => "bless",
            WriteCmd::Assess { bad: true, .. } => "mark-bad",
            WriteCmd::AssessBoot { .. } => "assess-boot",
            WriteCmd::Upgrade { switch_to: None, .. } => "upgrade",
            WriteCmd::Upgrade { switch_to: Some(_), .. } => "switch",
        }
    }
}

enum Route {
    Read(ReadCmd),
    Write(WriteCmd),
}

impl From<Cmd> for Route {
    fn from(cmd: Cmd) -> Self {
        use Route::{Read, Write};
        match cmd {
            Cmd::Status { json_schema } => Read(ReadCmd::Status { json_schema }),
            Cmd::Kargs { append, delete, replace, deployment } => {
                if append.is_empty() && delete.is_empty() && replace.is_empty() {
                    Read(ReadCmd::ShowKargs { deployment })
                } else {
                    Write(WriteCmd::Kargs { edit: ops::lifecycle::KargsEdit { append, delete, replace }, deployment })
                }
            }
            Cmd::BootComplete => Read(ReadCmd::BootComplete),
            Cmd::FinalizeStaged { hold, if_staged_by } => Read(ReadCmd::FinalizeStaged { hold, if_staged_by }),
            Cmd::Verify => Read(ReadCmd::Verify),
            Cmd::Etc(EtcCmd::Diff { deployment }) => Read(ReadCmd::EtcDiff { deployment }),
            Cmd::Diff { from, to } => Read(ReadCmd::Diff { from, to }),
            Cmd::HealthCheck { root, timeout, reboot_on_failure, state_dir } => {
                Read(ReadCmd::HealthCheck { root, timeout, reboot_on_failure, state_dir })
            }
            Cmd::InitFs { path } => Write(WriteCmd::InitFs { path }),
            Cmd::OsInit { stateroot } => Write(WriteCmd::OsInit { stateroot }),
            Cmd::Deploy(d) if d.stage => Write(WriteCmd::Stage(d.args)),
            Cmd::Deploy(d) => Write(WriteCmd::Deploy(d.args)),
            Cmd::Stage(a) => Write(WriteCmd::Stage(a)),
            Cmd::LockFinalization { unlock } => Write(WriteCmd::LockFinalization { unlock }),
            Cmd::SetDefault { index } => Write(WriteCmd::SetDefault { index }),
            Cmd::Rollback => Write(WriteCmd::Rollback),
            Cmd::SoftReboot { index, prepare_only, reset } => Write(WriteCmd::SoftReboot { index, prepare_only, reset }),
            Cmd::Undeploy { index } => Write(WriteCmd::Undeploy { index }),
            Cmd::Pin { unpin, index } => Write(WriteCmd::Pin { unpin, index }),
            Cmd::Cleanup => Write(WriteCmd::Cleanup),
            Cmd::Bless { index } => Write(WriteCmd::Assess { index, bad: false }),
            Cmd::MarkBad { index } => Write(WriteCmd::Assess { index, bad: true }),
            Cmd::AssessBoot { state_dir } => Write(WriteCmd::AssessBoot { state_dir }),
            Cmd::Upgrade(args) => Write(WriteCmd::Upgrade { args, switch_to: None }),
            Cmd::Switch { args, refspec } => Write(WriteCmd::Upgrade { args, switch_to: Some(refspec) }),
        }
    }
}

/// What is left to do after [`run_reader`].
#[derive(Debug)]
pub enum Next {
    /// The command ran: the process exits with this status (0; 1 when
    /// `boot-complete` reports a failed finalize or `verify` finds the
    /// sysroot unbootable).
    Exit(i32),
    /// A writing command, for `treeboot-writer`.
    Write { sysroot: Utf8PathBuf, cmd: WriteCmd },
}

/// Run the command if it only reads; a writing command is handed back.
pub fn run_reader(cli: Cli) -> Result<Next> {
    crate::output::configure(cli.json, cli.quiet, cli.verbose);
    let sysroot = cli.sysroot;
    let cmd = match Route::from(cli.cmd) {
        Route::Read(cmd) => cmd,
        Route::Write(cmd) => {
            // Up front, rather than as "Locking ostree/lock: Permission
            // denied" (or worse, halfway).
            if !rustix::process::geteuid().is_root() {
                return Err(NotRoot(format!("treeboot {} changes the sysroot: it must be run as root", cmd.verb())).into());
            }
            return Ok(Next::Write { sysroot, cmd });
        }
    };
    match cmd {
        ReadCmd::Status { json_schema: true } => {
            println!("{}", serde_json::to_string_pretty(&crate::output::schema::<ops::status::Status>())?);
        }
        ReadCmd::Status { json_schema: false } => {
            let s = Sysroot::load(&sysroot)?;
            let st = ops::status::status(&s)?;
            crate::output::report(&st)?;
            if !crate::output::json() {
                let v = ops::verify::check(&s)?;
                if !v.bootable() {
                    crate::warn!("`treeboot verify` finds {} problem(s): the sysroot may not boot", v.errors.len());
                }
            }
        }
        ReadCmd::ShowKargs { deployment } => {
            let s = Sysroot::load(&sysroot)?;
            let d = match deployment {
                Some(i) => s.by_index(i)?,
                None => s.booted().or(s.deployments.first()).ok_or_else(|| anyhow!("there are no deployments"))?,
            };
            crate::output::report(&report::Kargs::of(d, true))?;
        }
        ReadCmd::BootComplete => {
            let failure = ops::stage::boot_complete(&sysroot)?;
            let failed = failure.is_some();
            crate::output::report(&report::BootComplete { finalize_failure: failure })?;
            if failed {
                return Ok(Next::Exit(1));
            }
        }
        ReadCmd::FinalizeStaged { hold: true, .. } => hold_boot(&sysroot)?,
        // Finalize runs here, without libostree (see ops::stage::finalize).
        ReadCmd::FinalizeStaged { hold: false, if_staged_by } => {
            let outcome = match if_staged_by {
                Some(tool) => ops::stage::finalize_if_staged_by(&sysroot, tool)?,
                None => ops::stage::finalize(&sysroot)?,
            };
            crate::output::report(&report::Finalized { outcome })?;
        }
        ReadCmd::Verify => {
            let r = ops::verify::verify(&sysroot)?;
            crate::output::report(&r)?;
            if !r.bootable() {
                return Ok(Next::Exit(1));
            }
        }
        ReadCmd::EtcDiff { deployment } => etc_diff(&sysroot, deployment)?,
        ReadCmd::HealthCheck { root, timeout, reboot_on_failure, state_dir } => {
            let r = ops::health::health_check(root.as_std_path(), std::time::Duration::from_secs(timeout))?;
            crate::output::report(&r)?;
            if !r.healthy {
                health_failed(&sysroot, &r, reboot_on_failure, &state_dir)?;
                return Ok(Next::Exit(1));
            }
        }
        ReadCmd::Diff { from, to } => {
            let s = Sysroot::load(&sysroot)?;
            crate::output::report(&ops::diff::diff(&s, from, to)?)?;
        }
    }
    Ok(Next::Exit(0))
}

/// A boot whose required checks failed: said in the journal; with
/// `reboot`, when the booted deployment is being assessed, the reason is
/// recorded for the boot that rolls back and the machine reboots (the boot
/// loader counts the try). Without a counter there is nothing to fall back
/// to automatically, and rebooting would only loop: said, not done.
fn health_failed(sysroot: &camino::Utf8Path, r: &ops::health::HealthReport, reboot: bool, state_dir: &camino::Utf8Path) -> Result<()> {
    let reason = r.failure_reason();
    let s = Sysroot::load(sysroot).ok();
    let booted = s.as_ref().and_then(|s| s.booted().cloned());
    let name = booted.as_ref().map(|b| b.name()).unwrap_or_else(|| "the running system".into());
    crate::journal::log(
        crate::journal::HEALTH_FAILED,
        true,
        &format!("treeboot: the health checks of {name} failed: {reason}"),
        &[("DEPLOYMENT", name.clone()), ("REASON", reason.clone())],
    );
    if !reboot {
        return Ok(());
    }
    let (Some(s), Some(b)) = (s, booted) else {
        crate::warn!("not booted from a deployment of {sysroot}: not rebooting");
        return Ok(());
    };
    let Some((left, _)) = b.tries else {
        crate::warn!("deployment {name} is not being assessed (blessed, or boot counting off): not rebooting; fix the failing check, or roll back (`treeboot rollback`)");
        return Ok(());
    };
    let fallback = s.deployments.iter().any(|d| d.index != b.index && d.tries.is_none_or(|t| t.0 > 0));
    if left == 0 && !fallback {
        crate::warn!("deployment {name} has no tries left and no other deployment can boot: not rebooting");
        return Ok(());
    }
    std::fs::create_dir_all(state_dir).with_context(|| format!("Creating {state_dir}"))?;
    let state = cap_std_ext::cap_std::fs::Dir::open_ambient_dir(state_dir, cap_std_ext::cap_std::ambient_authority()).with_context(|| format!("Opening {state_dir}"))?;
    ops::assess::note_health_failure(&state, &name, &reason)?;
    crate::warn!("rebooting: this boot of {name} failed its required checks ({left} tries left)");
    let st = std::process::Command::new("systemctl").args(["reboot", "--no-block"]).status().context("Running systemctl reboot")?;
    if !st.success() {
        anyhow::bail!("systemctl reboot failed ({st})");
    }
    Ok(())
}

/// Keep `/boot` busy (an open directory and the working directory) until
/// SIGTERM, so that an automount does not expire before finalize runs.
fn hold_boot(sysroot: &camino::Utf8Path) -> Result<()> {
    let boot = sysroot.join("boot");
    let _fd = std::fs::File::open(&boot).with_context(|| format!("Opening {boot}"))?;
    std::env::set_current_dir(&boot).with_context(|| format!("Entering {boot}"))?;
    loop {
        // SIGTERM's default action ends the process; until then, sleep
        // (`park` may return spuriously: park again).
        std::thread::park();
    }
}

fn etc_diff(sysroot: &camino::Utf8Path, deployment: Option<usize>) -> Result<()> {
    let s = Sysroot::load(sysroot)?;
    let d = match deployment {
        Some(i) => s.by_index(i)?,
        None => s.booted().or(s.deployments.first()).ok_or_else(|| anyhow!("there are no deployments"))?,
    };
    let dir = s.root.open_dir(d.path().as_std_path())?;
    let old = dir.open_dir("usr/etc").context("Opening usr/etc")?;
    let cur = dir.open_dir("etc").context("Opening etc")?;
    let diff = etcmerge::diff(&old, &cur)?;
    crate::output::report(&report::EtcDiff {
        deployment: d.index,
        added: diff.count(ChangeKind::Added),
        modified: diff.count(ChangeKind::Modified),
        removed: diff.count(ChangeKind::Removed),
        changes: diff.changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(args: &[&str]) -> Route {
        let cli = Cli::try_parse_from(std::iter::once("treeboot").chain(args.iter().copied())).unwrap();
        Route::from(cli.cmd)
    }

    #[test]
    fn readers_and_writers_apart() {
        assert!(matches!(route(&["status"]), Route::Read(ReadCmd::Status { json_schema: false })));
        assert!(matches!(route(&["kargs"]), Route::Read(ReadCmd::ShowKargs { deployment: None })));
        assert!(matches!(route(&["kargs", "--deployment", "1"]), Route::Read(ReadCmd::ShowKargs { deployment: Some(1) })));
        assert!(matches!(route(&["kargs", "--append", "a=b"]), Route::Write(WriteCmd::Kargs { .. })));
        assert!(matches!(route(&["finalize-staged", "--hold"]), Route::Read(ReadCmd::FinalizeStaged { hold: true, .. })));
        assert!(matches!(route(&["etc", "diff", "--json"]), Route::Read(ReadCmd::EtcDiff { deployment: None })));
        assert!(matches!(route(&["diff", "1", "0"]), Route::Read(ReadCmd::Diff { from: Some(1), to: Some(0) })));
        assert!(matches!(route(&["deploy", "os:ref"]), Route::Write(WriteCmd::Deploy(_))));
        assert!(matches!(route(&["deploy", "--stage", "os:ref"]), Route::Write(WriteCmd::Stage(_))));
        assert!(matches!(route(&["stage", "os:ref"]), Route::Write(WriteCmd::Stage(_))));
        assert!(matches!(route(&["lock-finalization", "--unlock"]), Route::Write(WriteCmd::LockFinalization { unlock: true })));
    }

    /// `--help` of every verb describes every option and argument, and
    /// offers only what the verb takes.
    #[test]
    fn every_option_and_argument_is_described() {
        use clap::CommandFactory;
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("{path}: {id}"));
                }
            }
            for sub in c.get_subcommands().filter(|s| s.get_name() != "help") {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(format!("{p}: no description"));
                }
                walk(sub, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "treeboot", &mut missing);
        assert!(missing.is_empty(), "undescribed: {missing:?}");
        let cli = Cli::command();
        let stage = cli.find_subcommand("stage").unwrap();
        assert!(stage.get_arguments().all(|a| a.get_id() != "stage"), "stage offers --stage");
        let deploy = cli.find_subcommand("deploy").unwrap();
        assert!(deploy.get_arguments().any(|a| a.get_id() == "stage"));
    }
}
