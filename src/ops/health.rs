//! `treeboot health-check`: the health checks of a boot, in greenboot's
//! layout and treeboot's own, so that existing greenboot checks work
//! unchanged. Required checks must all pass for a healthy boot; wanted
//! checks are reported only. Then the green scripts run (healthy) or the
//! red ones (not). A check that hangs is stopped at its timeout and counts
//! as failed; a script that is not root's, or that others could change, is
//! refused (they run as root at every boot). (docs/boot-assessment.md)

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::Serialize;

/// Where each kind of script lives, the first directory winning for a name
/// found in several (an admin's /etc file replaces the image's /usr one).
const REQUIRED: &[&str] =
    &["etc/treeboot/check/required.d", "usr/lib/treeboot/check/required.d", "etc/greenboot/check/required.d", "usr/lib/greenboot/check/required.d"];
const WANTED: &[&str] =
    &["etc/treeboot/check/wanted.d", "usr/lib/treeboot/check/wanted.d", "etc/greenboot/check/wanted.d", "usr/lib/greenboot/check/wanted.d"];
const GREEN: &[&str] = &["etc/treeboot/green.d", "usr/lib/treeboot/green.d", "etc/greenboot/green.d", "usr/lib/greenboot/green.d"];
const RED: &[&str] = &["etc/treeboot/red.d", "usr/lib/treeboot/red.d", "etc/greenboot/red.d", "usr/lib/greenboot/red.d"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Required,
    Wanted,
    Green,
    Red,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    /// Exited with a status other than 0 (or was killed by a signal: null).
    Failed { exit_code: Option<i32> },
    /// Still running at the timeout: killed, and counted as failed.
    TimedOut,
    /// Not run: not root's, or writable by others (the reason).
    Refused { reason: String },
}

/// One script run (or refused).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Script {
    pub kind: Kind,
    /// Its path, as the running system sees it.
    pub path: String,
    pub outcome: Outcome,
    pub seconds: f64,
    /// What it printed (stdout and stderr; the last 4 KiB).
    pub output: String,
}

/// `treeboot health-check --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HealthReport {
    /// Every required check passed.
    pub healthy: bool,
    /// The checks, then the green or red scripts, in the order they ran.
    pub scripts: Vec<Script>,
}

/// The scripts of a kind under `root`: the union of its directories by
/// file name (the first directory wins), sorted by name. Only regular
/// files (through symlinks) that are executable by their owner.
fn scripts(root: &Path, dirs: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let mut found: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for d in dirs {
        let dir = root.join(d);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("Reading {}", dir.display()))),
        };
        for e in entries {
            let e = e.with_context(|| format!("Reading {}", dir.display()))?;
            let Ok(name) = e.file_name().into_string() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let p = e.path();
            let Ok(m) = std::fs::metadata(&p) else { continue };
            if m.is_file() && m.mode() & 0o100 != 0 {
                found.entry(name).or_insert(p);
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Why a script may not run as root at boot, if it may not: it (and its
/// directory) must be root's and writable by nobody else.
fn refusal(path: &Path) -> Option<String> {
    let check = |p: &Path, what: &str| -> Option<String> {
        let m = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) => return Some(format!("cannot examine {what}: {e}")),
        };
        if m.uid() != 0 {
            return Some(format!("{what} is owned by uid {}, not root", m.uid()));
        }
        if m.mode() & 0o002 != 0 {
            return Some(format!("{what} is writable by others (mode {:04o})", m.mode() & 0o7777));
        }
        if m.mode() & 0o020 != 0 && m.gid() != 0 {
            return Some(format!("{what} is writable by group {} (mode {:04o})", m.gid(), m.mode() & 0o7777));
        }
        None
    };
    check(path, "the script").or_else(|| path.parent().and_then(|d| check(d, "its directory")))
}

/// Run one script with a timeout, in a process group of its own, so that
/// a timeout stops whatever it started too. Its output (stdout and stderr
/// together) is kept in a memfd and handed back: printed on stderr (the
/// journal, under the unit), or part of the JSON document.
fn run_one(path: &Path, timeout: Duration) -> (Outcome, String) {
    use std::io::{Read as _, Seek as _};
    let buf = match rustix::fs::memfd_create("treeboot-health-check", rustix::fs::MemfdFlags::CLOEXEC) {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => return (Outcome::Failed { exit_code: None }, format!("cannot make an output buffer: {e}")),
    };
    let mut cmd = Command::new(path);
    cmd.stdin(Stdio::null()).process_group(0);
    if let (Ok(a), Ok(b)) = (buf.try_clone(), buf.try_clone()) {
        cmd.stdout(Stdio::from(a)).stderr(Stdio::from(b));
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (Outcome::Failed { exit_code: None }, format!("cannot run it: {e}")),
    };
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => break Outcome::Passed,
            Ok(Some(st)) => break Outcome::Failed { exit_code: st.code() },
            Ok(None) if Instant::now() >= deadline => {
                if let Some(pg) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
                }
                let _ = child.wait();
                break Outcome::TimedOut;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break Outcome::Failed { exit_code: None },
        }
    };
    let mut text = String::new();
    let mut f = buf;
    let _ = f.rewind();
    let _ = f.take(1 << 20).read_to_string(&mut text);
    // The end is what says why: keep the last 4 KiB.
    if text.len() > 4096 {
        let mut cut = text.len() - 4096;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text = text[cut..].to_string();
    }
    (outcome, text)
}

/// Run the checks under `root` (`/` on the running system), then the green
/// or red scripts.
pub fn health_check(root: &Path, timeout: Duration) -> Result<HealthReport> {
    let mut out = Vec::new();
    let mut healthy = true;
    let shown = |p: &Path| format!("/{}", p.strip_prefix(root).unwrap_or(p).display());
    let run_kind = |kind: Kind, dirs: &[&str], out: &mut Vec<Script>| -> Result<bool> {
        let mut all_ok = true;
        for (_, path) in scripts(root, dirs)? {
            let t = Instant::now();
            let (outcome, output) = match refusal(&path) {
                Some(reason) => (Outcome::Refused { reason }, String::new()),
                None => run_one(&path, timeout),
            };
            if !output.is_empty() && !crate::output::json() {
                for line in output.lines() {
                    eprintln!("{}: {line}", shown(&path));
                }
            }
            let secs = t.elapsed().as_secs_f64();
            match &outcome {
                Outcome::Passed => crate::say!("{} {}: passed ({secs:.1} s)", word(kind), shown(&path)),
                Outcome::Failed { exit_code: Some(c) } => crate::warn!("{} {} failed with exit status {c}", word(kind), shown(&path)),
                Outcome::Failed { exit_code: None } => crate::warn!("{} {} failed (killed by a signal, or could not run)", word(kind), shown(&path)),
                Outcome::TimedOut => crate::warn!("{} {} did not finish within {} s: stopped, counted as failed", word(kind), shown(&path), timeout.as_secs()),
                Outcome::Refused { reason } => crate::warn!("{} {} refused: {reason}", word(kind), shown(&path)),
            }
            all_ok &= outcome == Outcome::Passed;
            out.push(Script { kind, path: shown(&path), outcome, seconds: (secs * 1000.0).round() / 1000.0, output });
        }
        Ok(all_ok)
    };
    healthy &= run_kind(Kind::Required, REQUIRED, &mut out)?;
    run_kind(Kind::Wanted, WANTED, &mut out)?;
    if healthy {
        run_kind(Kind::Green, GREEN, &mut out)?;
    } else {
        run_kind(Kind::Red, RED, &mut out)?;
    }
    Ok(HealthReport { healthy, scripts: out })
}

impl HealthReport {
    /// Why the boot is unhealthy, in a line: the failed required checks.
    pub fn failure_reason(&self) -> String {
        let failed: Vec<String> = self
            .scripts
            .iter()
            .filter(|s| s.kind == Kind::Required && s.outcome != Outcome::Passed)
            .map(|s| match &s.outcome {
                Outcome::Failed { exit_code: Some(c) } => format!("{} exited with status {c}", s.path),
                Outcome::Failed { exit_code: None } => format!("{} was killed or could not run", s.path),
                Outcome::TimedOut => format!("{} timed out", s.path),
                Outcome::Refused { reason } => format!("{} was refused ({reason})", s.path),
                Outcome::Passed => unreachable!(),
            })
            .collect();
        if failed.is_empty() {
            "no required check failed".into()
        } else {
            format!("required check {}", failed.join("; "))
        }
    }
}

fn word(kind: Kind) -> &'static str {
    match kind {
        Kind::Required => "required check",
        Kind::Wanted => "wanted check",
        Kind::Green => "green script",
        Kind::Red => "red script",
    }
}

impl crate::output::Report for HealthReport {
    const ANSWER: bool = true;
    fn human(&self) -> String {
        let n = |k: Kind| self.scripts.iter().filter(|s| s.kind == k).count();
        let failed = self.scripts.iter().filter(|s| s.kind == Kind::Required && s.outcome != Outcome::Passed).count();
        if self.healthy {
            format!("Healthy: {} required and {} wanted check(s) run, {} green script(s)\n", n(Kind::Required), n(Kind::Wanted), n(Kind::Green))
        } else {
            format!("Unhealthy: {failed} of {} required check(s) failed; {} red script(s) run\n", n(Kind::Required), n(Kind::Red))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(root: &Path, rel: &str, body: &str, mode: u32) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// /etc replaces /usr/lib by name; greenboot's directories count.
    #[test]
    fn union_by_name_etc_first() {
        let t = tempfile::tempdir().unwrap();
        script(t.path(), "usr/lib/greenboot/check/required.d/10-net.sh", "exit 1", 0o755);
        script(t.path(), "etc/greenboot/check/required.d/10-net.sh", "exit 0", 0o755);
        script(t.path(), "usr/lib/treeboot/check/required.d/20-disk", "exit 0", 0o755);
        script(t.path(), "etc/treeboot/check/required.d/README", "not a script", 0o644);
        let s = scripts(t.path(), REQUIRED).unwrap();
        let names: Vec<String> = s.iter().map(|(_, p)| p.strip_prefix(t.path()).unwrap().display().to_string()).collect();
        assert_eq!(names, ["etc/greenboot/check/required.d/10-net.sh", "usr/lib/treeboot/check/required.d/20-disk"]);
    }
}
