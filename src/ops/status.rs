//! `treeboot status`: the deployments in boot order.

use anyhow::Result;
use cap_std_ext::dirext::CapStdExtDirExt;
use schemars::JsonSchema;
use serde::Serialize;

use crate::output::date;
use crate::sysroot::Sysroot;

/// One deployment in `status --json`. The first fields carry the names of
/// `ostree admin status --json`; the rest are treeboot's (bootc's words
/// where they apply: booted, staged, rollback, pinned).
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeploymentStatus {
    /// The position in boot order, as the other commands take it: the staged deployment (if any) is 0, then the default.
    pub index: usize,
    /// The stateroot (operating system name).
    pub stateroot: String,
    /// The commit checksum.
    pub checksum: String,
    /// The deployment serial (a commit deployed twice has serials 0 and 1).
    pub serial: u32,
    /// `[origin] refspec` of the origin file.
    pub refspec: Option<String>,
    /// The commit's `version` metadata.
    pub version: Option<String>,
    /// The running system was booted from this deployment.
    pub booted: bool,
    /// Newer than the booted deployment, in its stateroot: an update that the next boot starts.
    pub pending: bool,
    /// The deployment the booted one would roll back to, in its stateroot.
    pub rollback: bool,
    /// Staged: applied at shutdown (finalize), not yet in the boot list.
    pub staged: bool,
    /// Pinned: never removed automatically.
    pub pinned: bool,
    /// `[origin] container-image-reference` (bootc, rpm-ostree).
    pub container_image_reference: Option<String>,
    /// Whether the deployment has an origin file.
    pub has_origin: bool,
    /// The boot checksum (of kernel, initramfs and device tree): /boot/ostree/STATEROOT-BOOTCSUM.
    pub bootcsum: String,
    /// The serial among deployments sharing a boot checksum (ostree/boot.N/STATEROOT/BOOTCSUM/SERIAL).
    pub bootserial: u32,
    /// Kernel arguments, without `ostree=`.
    pub kargs: String,
    /// The deployment directory, relative to the sysroot.
    pub deploy_path: String,
    /// The origin file, relative to the sysroot.
    pub origin_path: String,
    /// The first in boot order: what the bootloader starts by default.
    pub default: bool,
    /// The staged deployment's finalization is locked (`lock-finalization`): not applied at shutdown.
    pub finalization_locked: bool,
    /// The commit's subject line.
    pub subject: Option<String>,
    /// The commit's timestamp, in seconds since 1970-01-01 UTC.
    pub timestamp: Option<u64>,
    /// The kernel version (`usr/lib/modules/VERSION`).
    pub kernel: Option<String>,
    /// The BLS entry file, relative to the sysroot (null for the staged deployment).
    pub entry_path: Option<String>,
    /// Boot counting: tries left, from the entry's name (`+LEFT-DONE`); null when the entry is not being counted.
    pub boot_tries_left: Option<u64>,
    /// Boot counting: failed tries so far.
    pub boot_tries_done: Option<u64>,
    /// Boot assessment: `assessing` (counted, tries left), `failed` (tries
    /// spent, or marked bad), `blessed` (boot counting is on and the entry
    /// has no counter: it passed, or predates counting); null when counting
    /// is off and the entry has no counter, and for the staged deployment.
    pub boot_assessment: Option<AssessState>,
    /// Why and when the boot assessment failed, once recorded (by the
    /// permanent rollback or `mark-bad`), until the deployment is blessed
    /// or removed.
    pub boot_failure: Option<crate::sysroot::BootFailure>,
    /// Whether `treeboot soft-reboot` can switch to it without a full
    /// reboot: the booted kernel, initramfs, kernel arguments and stateroot
    /// (bootc's `softRebootCapable`). Null for the booted deployment, and
    /// when not booted from this sysroot.
    pub soft_reboot_capable: Option<bool>,
    /// Why not, when `soft_reboot_capable` is false.
    pub soft_reboot_blocker: Option<String>,
    /// /run/nextroot is prepared from it: `systemctl soft-reboot` switches into it.
    pub soft_reboot_target: bool,
    /// composefs: `image` (the deployment has a `.ostree.cfs`), `booted`
    /// (the running root is that image, as `/run/ostree-booted` records),
    /// `booted-verity` (with fs-verity required of its objects); null
    /// without an image.
    pub composefs: Option<ComposefsState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ComposefsState {
    Image,
    Booted,
    BootedVerity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AssessState {
    Assessing,
    Failed,
    Blessed,
}


/// `treeboot status --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Status {
    /// The sysroot path given with --sysroot.
    pub sysroot: String,
    /// N of boot/loader -> loader.N (on a FAT /boot, of
    /// boot/loader/ostree-bootversion).
    pub bootversion: u32,
    /// The live list's directory: `boot/loader.N`, or `boot/loader` on a
    /// FAT /boot (docs/fat-boot.md).
    pub loader_dir: String,
    /// M of ostree/boot.N -> boot.N.M.
    pub subbootversion: u32,
    /// In boot order: the staged deployment (if any) first, then the default.
    pub deployments: Vec<DeploymentStatus>,
    /// Whether finalization of the staged deployment is locked (null when
    /// nothing is staged).
    pub staged_locked: Option<bool>,
    /// The message of the last failed finalization, until boot-complete
    /// reports it.
    pub finalize_failure: Option<String>,
    /// The index of the deployment the next boot starts (the staged one
    /// unless locked, else the default; null without deployments).
    pub next_boot: Option<usize>,
}

/// The kernel version of a deployment: from its entry's `linux` path
/// (`vmlinuz-VERSION`), else the one `usr/lib/modules/VERSION` with a
/// kernel in the deployment.
fn kernel_version(sysroot: &Sysroot, d: &crate::sysroot::Deployment) -> Option<String> {
    if let Some(linux) = d.entry.as_ref().and_then(|e| e.get("linux")) {
        let file = linux.rsplit('/').next().unwrap_or(linux);
        if let Some(v) = file.strip_prefix("vmlinuz-") {
            return Some(v.to_string());
        }
    }
    let modules = sysroot.root.open_dir(d.path().join("usr/lib/modules").as_std_path()).ok()?;
    let mut found = modules
        .entries()
        .ok()?
        .flatten()
        .filter(|e| e.open_dir().is_ok_and(|k| k.exists("vmlinuz")))
        .filter_map(|e| e.file_name().into_string().ok());
    let one = found.next()?;
    found.next().is_none().then_some(one)
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
    // Boot counting on: an entry without a counter was blessed (or is from
    // before counting). A repository config that does not parse is said by
    // every writer; status shows what it can.
    let counting = crate::sysroot::opts::SysrootOpts::load(&sysroot.root).is_ok_and(|o| o.boot_counting_tries > 0);
    // A prepared soft reboot names its root by device and inode.
    let nextroot = sysroot.run.nextroot_booted().ok().flatten().and_then(|b| b.backing_root_device_inode);
    // What prepare-root recorded of the running root.
    let booted_record = sysroot.run.booted().ok().flatten();
    let mut out = Vec::new();
    let off = sysroot.staged.is_some() as usize;
    for d in sysroot.listed() {
        let mut k = d.kargs.clone();
        k.remove_key("ostree");
        let index = if d.staged { 0 } else { d.index + off };
        let commit = sysroot.commit_info(&d.csum)?;
        let tries = d.tries;
        let boot_assessment = match tries {
            _ if d.staged => None,
            Some((0, _)) => Some(AssessState::Failed),
            Some(_) => Some(AssessState::Assessing),
            None if counting => Some(AssessState::Blessed),
            None => None,
        };
        let soft_blocker = booted.filter(|b| !b.same(d)).map(|b| super::softreboot::blocker(b, d));
        let soft_reboot_target = nextroot.is_some() && sysroot.root.metadata(d.path()).is_ok_and(|m| {
            use cap_std_ext::cap_std::fs::MetadataExt;
            Some((m.dev(), m.ino())) == nextroot
        });
        out.push(DeploymentStatus {
            index,
            stateroot: d.stateroot.clone(),
            checksum: d.csum.clone(),
            serial: d.serial,
            refspec: d.refspec(),
            version: commit.as_ref().and_then(|c| c.version.clone()),
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
            default: !d.staged && d.index == 0,
            finalization_locked: d.staged && sysroot.locked,
            subject: commit.as_ref().and_then(|c| c.subject.clone()),
            timestamp: commit.as_ref().map(|c| c.timestamp),
            kernel: kernel_version(sysroot, d),
            entry_path: d.entry_file.as_ref().map(|f| format!("{}/entries/{f}", sysroot.loader_rel())),
            boot_tries_left: tries.map(|t| t.0),
            boot_tries_done: tries.map(|t| t.1),
            boot_assessment,
            boot_failure: d.boot_failure(),
            soft_reboot_capable: soft_blocker.as_ref().map(Option::is_none),
            soft_reboot_blocker: soft_blocker.flatten(),
            soft_reboot_target,
            composefs: match &booted_record {
                Some(r) if d.booted && r.composefs => Some(if r.composefs_verity { ComposefsState::BootedVerity } else { ComposefsState::Booted }),
                _ => sysroot
                    .root
                    .symlink_metadata_optional(d.path().join(crate::early::composefs::IMAGE_NAME).as_std_path())
                    .ok()
                    .flatten()
                    .map(|_| ComposefsState::Image),
            },
        });
    }
    let staged_locked = sysroot.staged.is_some().then_some(sysroot.locked);
    // The stamp until boot-complete reports it, then its copy in /run for
    // the rest of this boot (the model reads both).
    let finalize_failure = sysroot.finalize_failure.clone();
    let next_boot = out.iter().find(|d| !d.finalization_locked).map(|d| d.index);
    Ok(Status {
        sysroot: sysroot.path.to_string(),
        bootversion: sysroot.bootversion,
        loader_dir: sysroot.loader_rel(),
        subbootversion: sysroot.subbootversion,
        deployments: out,
        staged_locked,
        finalize_failure,
        next_boot,
    })
}

/// The human form: the lines of `ostree admin status`, with the answers of
/// `rpm-ostree status` (what boots next, booted marker, dates, kernel);
/// `verbose` adds the paths and serials. `styled` (a terminal without
/// NO_COLOR) draws the booted marker as ● in green.
pub fn render(s: &Status, verbose: bool, styled: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Some(f) = &s.finalize_failure {
        let _ = writeln!(out, "warning: the last shutdown did not apply the staged deployment:\n  {f}");
    }
    if s.deployments.is_empty() {
        out.push_str("No deployments.\n");
        return out;
    }
    let named = |d: &DeploymentStatus| match &d.version {
        Some(v) => format!("{} (version {v})", d.index),
        None => format!("{} ({}.{})", d.index, short(&d.checksum), d.serial),
    };
    let next = s.next_boot.and_then(|i| s.deployments.iter().find(|d| d.index == i));
    match (next, s.deployments.iter().find(|d| d.staged)) {
        (_, Some(st)) if st.finalization_locked => {
            let _ = writeln!(out, "Update staged: {} is staged but locked: it is applied at shutdown once unlocked (treeboot lock-finalization --unlock).", named(st));
        }
        (_, Some(st)) => {
            let _ = writeln!(out, "Update pending: {} is staged: it is applied at shutdown and boots next.", named(st));
        }
        (Some(n), None) if !n.booted => {
            if let Some(b) = s.deployments.iter().find(|d| d.booted) {
                let _ = writeln!(out, "Next boot: {}; the booted deployment is {}.", named(n), b.index);
            }
        }
        _ => {}
    }
    for d in &s.deployments {
        let mark = match (d.booted, styled) {
            (true, true) => "\x1b[1;32m●\x1b[0m",
            (true, false) => "*",
            (false, _) => " ",
        };
        let mut flags = Vec::new();
        if d.booted {
            flags.push("booted");
        }
        if d.staged {
            flags.push("staged");
        }
        if d.pending {
            flags.push("pending");
        }
        if d.rollback {
            flags.push("rollback");
        }
        if d.default {
            flags.push("default");
        }
        if d.pinned {
            flags.push("pinned");
        }
        if d.finalization_locked {
            flags.push("finalization locked");
        }
        if d.soft_reboot_target {
            flags.push("soft-reboot target");
        }
        let flags = if flags.is_empty() { String::new() } else { format!(" ({})", flags.join(", ")) };
        let _ = writeln!(out, "{mark} {} {} {}.{}{flags}", d.index, d.stateroot, d.checksum, d.serial);
        match (&d.version, d.timestamp) {
            (Some(v), Some(t)) => {
                let _ = writeln!(out, "    Version: {v} ({})", date(t));
            }
            (Some(v), None) => {
                let _ = writeln!(out, "    Version: {v}");
            }
            (None, Some(t)) => {
                let _ = writeln!(out, "    Timestamp: {}", date(t));
            }
            (None, None) => {}
        }
        if let Some(subject) = &d.subject {
            let _ = writeln!(out, "    Subject: {subject}");
        }
        if d.pinned {
            out.push_str("    Pinned: yes\n");
        }
        // As `ostree admin status` prints it, with container images named.
        match (&d.refspec, &d.container_image_reference) {
            (Some(r), _) => {
                let _ = writeln!(out, "    origin refspec: {r}");
            }
            (None, Some(c)) => {
                let _ = writeln!(out, "    origin: container image {c}");
            }
            (None, None) if d.has_origin => out.push_str("    origin: <unknown origin type>\n"),
            (None, None) => out.push_str("    origin: none\n"),
        }
        if let Some(k) = &d.kernel {
            let _ = writeln!(out, "    Kernel: {k}");
        }
        if !d.kargs.is_empty() {
            let _ = writeln!(out, "    kernel arguments: {}", d.kargs);
        }
        if let (Some(left), Some(done)) = (d.boot_tries_left, d.boot_tries_done) {
            let state = if left == 0 { "boot assessment failed" } else { "being assessed" };
            let _ = writeln!(out, "    Boot tries: {left} left, {done} failed ({state})");
        } else if d.boot_assessment == Some(AssessState::Blessed) {
            out.push_str("    Boot assessment: blessed\n");
        }
        // Said of what boots next, when it is not what runs.
        if next.is_some_and(|n| n.index == d.index) {
            match (d.soft_reboot_capable, &d.soft_reboot_blocker) {
                _ if d.soft_reboot_target => out.push_str("    Soft reboot: prepared (`systemctl soft-reboot` switches into it)\n"),
                (Some(true), _) => out.push_str("    Soft reboot: possible (`treeboot soft-reboot`)\n"),
                (Some(false), Some(why)) => {
                    let _ = writeln!(out, "    Soft reboot: not possible, {why}");
                }
                _ => {}
            }
        }
        if let Some(f) = &d.boot_failure {
            let _ = writeln!(out, "    Boot assessment failed at {} after {} tries: {}", f.time, f.tries, f.reason);
        }
        match d.composefs {
            Some(ComposefsState::BootedVerity) => out.push_str("    composefs: the running root (fs-verity required)\n"),
            Some(ComposefsState::Booted) => out.push_str("    composefs: the running root\n"),
            Some(ComposefsState::Image) => out.push_str("    composefs: image\n"),
            None => {}
        }
        if verbose {
            let _ = writeln!(out, "    Serial: {}", d.serial);
            let _ = writeln!(out, "    Boot checksum: {} (serial {})", d.bootcsum, d.bootserial);
            let _ = writeln!(out, "    Deployment: {}", d.deploy_path);
            let _ = writeln!(out, "    Origin file: {}", d.origin_path);
            let _ = writeln!(out, "    Entry: {}", d.entry_path.as_deref().unwrap_or("none (written at finalization)"));
        }
    }
    out
}

fn short(csum: &str) -> &str {
    &csum[..csum.len().min(10)]
}

impl crate::output::Report for Status {
    const ANSWER: bool = true;
    fn human(&self) -> String {
        render(self, crate::output::verbose(), crate::output::styled())
    }
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

        assert_eq!(doc["next_boot"], 1, "the staged deployment is locked: the default boots next");
        assert_eq!(ds[0]["finalization_locked"], true);
        assert_eq!((ds[1]["default"].as_bool(), ds[0]["default"].as_bool()), (Some(true), Some(false)));
        assert_eq!(ds[1]["entry_path"], "boot/loader.1/entries/ostree-3-os.conf", "{:#}", ds[1]);
        assert!(ds[0]["entry_path"].is_null(), "the staged deployment has no entry yet");

        let text = render(&s, false, false);
        assert!(text.starts_with("Update staged: 0 (dddddddddd.0) is staged but locked"), "{text}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("    ") && !l.starts_with("Update")).collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(!text.contains("Entry: "), "paths only with --verbose: {text}");
        let verbose = render(&s, true, false);
        assert!(verbose.contains("    Entry: boot/loader.1/entries/ostree-3-os.conf\n"), "{verbose}");
        assert!(verbose.contains("    Entry: none (written at finalization)\n"), "{verbose}");
        assert!(render(&s, false, true).contains("\x1b[1;32m●\x1b[0m 2 os bbbb"), "the booted marker on a terminal");
        assert!(lines[0].starts_with("  0 os dddd") && lines[0].ends_with("(staged, finalization locked)"), "{text}");
        assert!(lines[1].ends_with("(pending, default)"), "{text}");
        assert!(lines[2].starts_with("* 2 os bbbb") && lines[2].ends_with("(booted)"), "{text}");
        assert!(lines[3].ends_with("(rollback)"), "{text}");
    }

    #[test]
    fn an_unbooted_sysroot_has_no_pending_or_rollback() {
        let f = Fixture::new(&[('a', '1'), ('b', '2')]);
        let s = status(&f.load().unwrap()).unwrap();
        assert!(s.deployments.iter().all(|d| !d.booted && !d.pending && !d.rollback && !d.staged));
        assert_eq!(s.staged_locked, None);
        assert!(render(&s, false, false).lines().next().unwrap().ends_with("(default)"));
    }
}
