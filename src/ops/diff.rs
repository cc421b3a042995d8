//! `treeboot diff`: what changed between two deployments, as files in /usr
//! and, when the trees carry dpkg's database, as packages (the question
//! `rpm-ostree db diff` answers).

use std::cmp::Ordering;

use anyhow::{bail, Context, Result};
use cap_std_ext::cap_std::fs::Dir;
use cap_std_ext::dirext::CapStdExtDirExt;
use schemars::JsonSchema;
use serde::Serialize;

use crate::etcmerge::{self, ChangeKind};
use crate::formats::dpkg;
use crate::sysroot::{Deployment, Sysroot};

/// Where a tree keeps dpkg's status file, first match wins: the database
/// moved under /usr (as image builders that keep /var empty do), then the
/// commit's own /var.
const DPKG_STATUS: &[&str] = &["usr/share/dpkg/database/status", "usr/lib/dpkg/status", "var/lib/dpkg/status"];
/// rpm databases moved under /usr (rpm-ostree; Fedora's sysimage).
const RPMDB: &[&str] = &["usr/share/rpm", "usr/lib/sysimage/rpm"];

/// One changed path under /usr.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FileChange {
    /// The absolute path in the deployment (`/usr/...`).
    pub path: String,
    pub kind: ChangeKind,
    /// For a modification: what differs (`type`, `content`, `mode`, `owner`, `target`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub how: Vec<&'static str>,
}

/// A package in one deployment only.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// A package in both, at different versions.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PackageChange {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// The package-level diff.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PackageDiff {
    /// The database read: `dpkg`.
    pub database: String,
    pub upgraded: Vec<PackageChange>,
    pub downgraded: Vec<PackageChange>,
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
}

/// `treeboot diff --json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeploymentDiff {
    /// The deployment compared from: its index and `stateroot/checksum.serial`.
    pub from_index: usize,
    pub from: String,
    /// The deployment compared to.
    pub to_index: usize,
    pub to: String,
    /// Every path of /usr that was added, modified or removed (a directory added or removed is one change).
    pub files: Vec<FileChange>,
    /// Null when neither tree has a package database treeboot reads.
    pub packages: Option<PackageDiff>,
    /// What could not be compared, in words (an rpm database, say).
    pub notes: Vec<String>,
}

/// The default pair: to the first in boot order (the staged deployment, or
/// the default); from the booted one, or, when that is the first itself
/// (or nothing is booted), the one after it: "what this update changes",
/// else "what the last update changed".
fn default_pair(s: &Sysroot) -> Result<(usize, usize)> {
    let n = s.listed().count();
    if n < 2 {
        bail!("treeboot diff compares two deployments; there {}", if n == 1 { "is only one" } else { "are none" });
    }
    let booted = s.listed().position(|d| d.booted);
    Ok(match booted {
        Some(b) if b != 0 => (b, 0),
        _ => (1, 0),
    })
}

pub fn diff(s: &Sysroot, from: Option<usize>, to: Option<usize>) -> Result<DeploymentDiff> {
    let (df, dt) = match (from, to) {
        (Some(f), Some(t)) => (f, t),
        _ => default_pair(s)?,
    };
    let (fi, ti) = (from.unwrap_or(df), to.unwrap_or(dt));
    let (a, b) = (s.by_index(fi)?, s.by_index(ti)?);
    let (da, db) = (open(s, a)?, open(s, b)?);
    let ua = da.open_dir("usr").with_context(|| format!("Opening {}/usr", a.path()))?;
    let ub = db.open_dir("usr").with_context(|| format!("Opening {}/usr", b.path()))?;
    let d = etcmerge::diff_trees(&ua, &ub, &format!("{}/usr", a.path()), &format!("{}/usr", b.path()))?;
    let files = d
        .changes
        .into_iter()
        .map(|c| FileChange { path: format!("/usr/{}", crate::fsutil::display_path(&c.path)), kind: c.kind, how: c.how })
        .collect();
    let mut notes = Vec::new();
    let packages = package_diff(&da, &db, a, b, &mut notes)?;
    Ok(DeploymentDiff {
        from_index: fi,
        from: format!("{}/{}", a.stateroot, a.name()),
        to_index: ti,
        to: format!("{}/{}", b.stateroot, b.name()),
        files,
        packages,
        notes,
    })
}

fn open(s: &Sysroot, d: &Deployment) -> Result<Dir> {
    s.root.open_dir(d.path().as_std_path()).with_context(|| format!("Opening deployment {}", d.path()))
}

/// The installed packages of a tree, and where they were read.
fn packages(dir: &Dir, d: &Deployment) -> Result<Option<(&'static str, dpkg::Packages)>> {
    for rel in DPKG_STATUS {
        if let Some(text) = dir.read_to_string_optional(rel).with_context(|| format!("Reading {}/{rel}", d.path()))? {
            return Ok(Some((rel, dpkg::parse_status(&text))));
        }
    }
    Ok(None)
}

fn package_diff(da: &Dir, db: &Dir, a: &Deployment, b: &Deployment, notes: &mut Vec<String>) -> Result<Option<PackageDiff>> {
    let (pa, pb) = (packages(da, a)?, packages(db, b)?);
    let (pa, pb) = match (&pa, &pb) {
        (Some((_, x)), Some((_, y))) => (x, y),
        (None, None) => {
            for (d, dir) in [(a, da), (b, db)] {
                if let Some(rel) = RPMDB.iter().find(|r| dir.symlink_metadata_optional(r).ok().flatten().is_some()) {
                    notes.push(format!("{}/{rel}: an rpm database; treeboot reads dpkg's only, so there is no package diff", d.path()));
                    break;
                }
            }
            return Ok(None);
        }
        (Some(_), None) | (None, Some(_)) => {
            let missing = if pb.is_none() { b } else { a };
            notes.push(format!("{}: no dpkg status file ({}): no package diff", missing.path(), DPKG_STATUS.join(", ")));
            return Ok(None);
        }
    };
    let mut out = PackageDiff { database: "dpkg".into(), upgraded: vec![], downgraded: vec![], added: vec![], removed: vec![] };
    for (name, from) in pa {
        match pb.get(name) {
            None => out.removed.push(Package { name: name.clone(), version: from.clone() }),
            Some(to) => {
                let c = PackageChange { name: name.clone(), from: from.clone(), to: to.clone() };
                match dpkg::compare_versions(from, to) {
                    Ordering::Less => out.upgraded.push(c),
                    Ordering::Greater => out.downgraded.push(c),
                    // Equal by dpkg's order but spelled differently (1.0 / 1.00): not a change.
                    Ordering::Equal => {}
                }
            }
        }
    }
    for (name, v) in pb {
        if !pa.contains_key(name) {
            out.added.push(Package { name: name.clone(), version: v.clone() });
        }
    }
    Ok(Some(out))
}

impl crate::output::Report for DeploymentDiff {
    const ANSWER: bool = true;
    fn human(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "From {} {}\n  To {} {}", self.from_index, self.from, self.to_index, self.to);
        if let Some(p) = &self.packages {
            let sections: [(&str, Vec<String>); 4] = [
                ("Upgraded", p.upgraded.iter().map(|c| format!("{} {} -> {}", c.name, c.from, c.to)).collect()),
                ("Downgraded", p.downgraded.iter().map(|c| format!("{} {} -> {}", c.name, c.from, c.to)).collect()),
                ("Removed", p.removed.iter().map(|c| format!("{} {}", c.name, c.version)).collect()),
                ("Added", p.added.iter().map(|c| format!("{} {}", c.name, c.version)).collect()),
            ];
            for (title, lines) in sections.iter().filter(|(_, l)| !l.is_empty()) {
                let _ = writeln!(out, "{title}:");
                for l in lines {
                    let _ = writeln!(out, "  {l}");
                }
            }
            if sections.iter().all(|(_, l)| l.is_empty()) {
                out.push_str("No package changes.\n");
            }
        }
        if crate::output::verbose() || self.packages.is_none() {
            for f in &self.files {
                let m = match f.kind {
                    ChangeKind::Added => "A",
                    ChangeKind::Removed => "D",
                    ChangeKind::Modified => "M",
                };
                let _ = writeln!(out, "{m}    {}", f.path);
            }
        }
        let count = |k: ChangeKind| self.files.iter().filter(|f| f.kind == k).count();
        let _ = writeln!(
            out,
            "Files in /usr: {} modified, {} added, {} removed{}",
            count(ChangeKind::Modified),
            count(ChangeKind::Added),
            count(ChangeKind::Removed),
            if self.packages.is_some() && !crate::output::verbose() && !self.files.is_empty() { " (--verbose lists them)" } else { "" }
        );
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}
