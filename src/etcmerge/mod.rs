//! The `/etc` three-way merge, with ostree's semantics.
//!
//! Inputs are three directory handles: `old_defaults` (the merge deployment's
//! `usr/etc`), `current` (its `etc`, what the admin has) and `new_defaults`
//! (the new deployment's `usr/etc`). The result is a copy of `new_defaults`
//! with the admin's changes applied; local always wins, there is no
//! line-level merge.
//!
//! Two phases: [`plan`] walks the trees and writes nothing; [`apply`] executes
//! a plan. All access goes through directory fds opened one component at a
//! time with `O_NOFOLLOW`, so no symlink or `..` in `/etc` can lead outside
//! the three trees.

pub mod apply;
mod diff;

pub use apply::{apply, copy_defaults_for, copy_tree, ApplyStats};
pub use diff::{diff, diff_cached, diff_trees, Change, ChangeKind, Diff, DiffCache, EntryType};

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::Result;
use fn_error_context::context;
use serde::Serialize;

use crate::fsutil::{self, display_path};

fn ser_path<S: serde::Serializer>(p: &Path, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&display_path(p))
}

/// One step of a plan, in the order apply runs them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Remove the path from the new `/etc` (the admin removed it).
    Remove {
        #[serde(serialize_with = "ser_path")]
        path: PathBuf,
    },
    /// Create a missing parent directory with the attributes it has in `current`.
    Mkdir {
        #[serde(serialize_with = "ser_path")]
        path: PathBuf,
    },
    /// Copy the path from `current`, replacing what the new defaults have
    /// (recursively for a directory).
    Copy {
        #[serde(serialize_with = "ser_path")]
        path: PathBuf,
        #[serde(rename = "type")]
        ftype: EntryType,
    },
    /// Give a directory the new defaults also have the owner, mode and
    /// xattrs it has in `current` (the admin changed its mode or owner),
    /// leaving its contents to the other actions.
    SetAttrs {
        #[serde(serialize_with = "ser_path")]
        path: PathBuf,
    },
    /// Not copied: a fifo, socket or device node.
    Skip {
        #[serde(serialize_with = "ser_path")]
        path: PathBuf,
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Conflict {
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    pub reason: String,
    pub hint: String,
}

/// The /etc merge in numbers.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct PlanSummary {
    pub modified: usize,
    pub added: usize,
    pub removed: usize,
    pub skipped: usize,
    pub conflicts: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub conflicts: Vec<Conflict>,
    pub summary: PlanSummary,
}

impl Plan {
    /// The conflicts as one error message, one path a line, with what to do.
    pub fn conflict_message(&self) -> Option<String> {
        if self.conflicts.is_empty() {
            return None;
        }
        let mut s = format!(
            "the /etc merge has {} conflict(s):",
            self.conflicts.len()
        );
        for c in &self.conflicts {
            s.push_str(&format!(
                "\n  /etc/{}: {}; {}",
                display_path(&c.path),
                c.reason,
                c.hint
            ));
        }
        Some(s)
    }
}

/// Compute what the merge will do, writing nothing.
#[context("Planning the /etc merge")]
pub fn plan(old_defaults: impl AsFd, current: impl AsFd, new_defaults: impl AsFd) -> Result<Plan> {
    let d = diff(&old_defaults, &current)?;
    plan_from_diff(&d, &current, &new_defaults)
}

/// [`plan`] with a [`DiffCache`]: `known` pairs are trusted when their
/// inodes did not change; equal pairs found are recorded in `record`.
pub fn plan_cached(
    old_defaults: impl AsFd,
    current: impl AsFd,
    new_defaults: impl AsFd,
    known: Option<&DiffCache>,
    record: Option<&mut DiffCache>,
) -> Result<Plan> {
    let d = diff_cached(&old_defaults, &current, known, record)?;
    plan_from_diff(&d, &current, &new_defaults)
}

/// The plan for an already computed diff (see [`plan`]).
pub fn plan_from_diff(d: &Diff, current: impl AsFd, new_defaults: impl AsFd) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut made_dirs: std::collections::BTreeSet<PathBuf> = Default::default();
    // Directories copied whole from `current`: what is under them is in the
    // copy already.
    let mut copied_dirs: Vec<PathBuf> = Vec::new();
    for c in &d.changes {
        match c.kind {
            ChangeKind::Removed => plan.summary.removed += 1,
            ChangeKind::Modified => plan.summary.modified += 1,
            ChangeKind::Added => plan.summary.added += 1,
        }
        if copied_dirs.iter().any(|p| c.path.starts_with(p)) {
            continue;
        }
        match c.kind {
            ChangeKind::Removed => {
                plan.actions.push(Action::Remove { path: c.path.clone() });
            }
            ChangeKind::Modified | ChangeKind::Added => {
                let ftype = c.new_type.expect("added or modified entries have a type");
                if let EntryType::Special(what) = ftype {
                    plan.summary.skipped += 1;
                    plan.actions.push(Action::Skip {
                        path: c.path.clone(),
                        reason: format!("{what} are not copied"),
                    });
                    continue;
                }
                // What do the new defaults have at this path?
                let target = lookup(&new_defaults, &c.path)?;
                match target {
                    Lookup::Dir if ftype != EntryType::Directory => {
                        plan.conflicts.push(Conflict {
                            path: c.path.clone(),
                            reason: format!(
                                "a local {} where the new defaults have a directory",
                                ftype.noun()
                            ),
                            hint: format!(
                                "move it aside (for example to /etc/{}.local) and re-apply the change inside the new directory after the update",
                                display_path(&c.path)
                            ),
                        });
                        continue;
                    }
                    // A directory the admin changed the mode or owner of,
                    // and the new defaults still have: it keeps the admin's
                    // attributes. (libostree 2022.7 to 2026.4 keep them only
                    // when a file inside it changed too; docs/compatibility.md.)
                    Lookup::Dir if c.kind == ChangeKind::Modified => {
                        plan.actions.push(Action::SetAttrs { path: c.path.clone() });
                        continue;
                    }
                    Lookup::Dir => continue, // two directories: nothing to do
                    Lookup::BlockedBy(ref p) => {
                        plan.conflicts.push(Conflict {
                            path: c.path.clone(),
                            reason: format!(
                                "the new defaults have a non-directory at /etc/{}, a parent of this local {}",
                                display_path(p),
                                ftype.noun()
                            ),
                            hint: "move the local file aside before updating".into(),
                        });
                        continue;
                    }
                    Lookup::Missing | Lookup::NonDir => {}
                }
                // Parents missing from the new defaults are created as in `current`.
                let mut missing = Vec::new();
                let mut p = c.path.parent();
                while let Some(parent) = p {
                    if parent.as_os_str().is_empty() || made_dirs.contains(parent) {
                        break;
                    }
                    match lookup(&new_defaults, parent)? {
                        Lookup::Dir => break,
                        _ => missing.push(parent.to_path_buf()),
                    }
                    p = parent.parent();
                }
                for m in missing.into_iter().rev() {
                    made_dirs.insert(m.clone());
                    plan.actions.push(Action::Mkdir { path: m });
                }
                if ftype == EntryType::Directory {
                    // The new defaults dropped (or replaced by a file) a
                    // directory the admin changed: it is kept, whole.
                    copied_dirs.push(c.path.clone());
                }
                plan.actions.push(Action::Copy {
                    path: c.path.clone(),
                    ftype,
                });
            }
        }
    }
    plan.summary.conflicts = plan.conflicts.len();
    let _ = &current;
    Ok(plan)
}

enum Lookup {
    Missing,
    Dir,
    NonDir,
    /// A parent component exists but is not a directory.
    BlockedBy(PathBuf),
}

fn lookup(root: impl AsFd, rel: &Path) -> Result<Lookup> {
    let mut cur = rustix::io::fcntl_dupfd_cloexec(root.as_fd(), 0)?;
    let comps: Vec<_> = rel.components().collect();
    let mut sofar = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let name = c.as_os_str();
        sofar.push(name);
        let Some(st) = fsutil::lstat_optional(&cur, name)? else {
            return Ok(Lookup::Missing);
        };
        let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
        if i + 1 == comps.len() {
            return Ok(if is_dir { Lookup::Dir } else { Lookup::NonDir });
        }
        if !is_dir {
            return Ok(Lookup::BlockedBy(sofar));
        }
        cur = fsutil::open_dir_nofollow(&cur, name)?;
    }
    Ok(Lookup::Dir)
}
