//! Executing a merge plan, and copying trees with all their metadata.

use std::io::Write;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use fn_error_context::context;
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};
use serde::Serialize;

use super::{Action, Plan};
use crate::fsutil::{self, display_path};

#[derive(Debug, Default, Clone, Serialize)]
pub struct ApplyStats {
    pub copied: usize,
    pub removed: usize,
    pub mkdirs: usize,
    pub attrs: usize,
    pub skipped: usize,
}

fn owner(st: &rustix::fs::Stat) -> (Option<Uid>, Option<Gid>) {
    (
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
}

fn perm(st: &rustix::fs::Stat) -> Mode {
    Mode::from_raw_mode(st.st_mode & 0o7777)
}

/// Create `dst/name` as a copy of `src/name` (not following symlinks),
/// recursively for directories. Files are created with mode 0 and get their
/// final owner, mode and xattrs before anything is written to a place others
/// could read, so a 0600 file is never readable by others. Returns the number
/// of entries copied; fifos, sockets and devices are skipped with a message.
pub fn copy_entry(src: impl AsFd, dst: impl AsFd, name: &OsStr, shown: &Path) -> Result<usize> {
    copy_entry_except(src, dst, name, shown, Path::new(name), None)
}

/// [`copy_entry`], leaving out the paths (relative to the copied tree's
/// root, `rel` being this entry's) in `skip`.
fn copy_entry_except(
    src: impl AsFd,
    dst: impl AsFd,
    name: &OsStr,
    shown: &Path,
    rel: &Path,
    skip: Option<&HashSet<PathBuf>>,
) -> Result<usize> {
    if skip.is_some_and(|s| s.contains(rel)) {
        return Ok(0);
    }
    let (src, dst) = (src.as_fd(), dst.as_fd());
    let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)
        .with_context(|| format!("Examining {}", display_path(shown)))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            let ctx = || format!("Copying file {}", display_path(shown));
            let sfd = fsutil::open_file_nofollow(src, name).with_context(ctx)?;
            let dfd = rustix::fs::openat(
                dst,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .with_context(ctx)?;
            fsutil::copy_fd_contents(&sfd, &dfd).with_context(ctx)?;
            let (u, g) = owner(&st);
            rustix::fs::fchown(&dfd, u, g).with_context(ctx)?;
            rustix::fs::fchmod(&dfd, perm(&st)).with_context(ctx)?;
            fsutil::set_fd_xattrs(&dfd, &fsutil::fd_xattrs(&sfd)?).with_context(ctx)?;
            rustix::fs::futimens(&dfd, &fsutil::timestamps(&st)).with_context(ctx)?;
            Ok(1)
        }
        FileType::Symlink => {
            let ctx = || format!("Copying symlink {}", display_path(shown));
            let target = rustix::fs::readlinkat(src, name, Vec::new()).with_context(ctx)?;
            rustix::fs::symlinkat(target.as_c_str(), dst, name).with_context(ctx)?;
            let (u, g) = owner(&st);
            rustix::fs::chownat(dst, name, u, g, AtFlags::SYMLINK_NOFOLLOW).with_context(ctx)?;
            fsutil::set_symlink_xattrs(dst, name, &fsutil::symlink_xattrs(src, name)?).with_context(ctx)?;
            rustix::fs::utimensat(dst, name, &fsutil::timestamps(&st), AtFlags::SYMLINK_NOFOLLOW)
                .with_context(ctx)?;
            Ok(1)
        }
        FileType::Directory => {
            let ctx = || format!("Copying directory {}", display_path(shown));
            let sfd = fsutil::open_dir_nofollow(src, name).with_context(ctx)?;
            // Private until its contents and final mode are in place.
            rustix::fs::mkdirat(dst, name, Mode::RWXU).with_context(ctx)?;
            let dfd = fsutil::open_dir_nofollow(dst, name).with_context(ctx)?;
            let mut n = 1;
            for child in fsutil::read_names(&sfd).with_context(ctx)? {
                n += copy_entry_except(&sfd, &dfd, &child, &shown.join(&child), &rel.join(&child), skip)?;
            }
            finish_dir(&dfd, &sfd, &st).with_context(ctx)?;
            Ok(n)
        }
        other => {
            // A note that cannot be written (nobody reads the stream any
            // more) is dropped rather than ending the merge: not eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "note: not copying {}: {} are skipped",
                display_path(shown),
                super::EntryType::from_mode(st.st_mode).noun()
            );
            let _ = other;
            Ok(0)
        }
    }
}

/// Give a directory its owner, mode, xattrs and times from `src`.
fn finish_dir(dfd: &OwnedFd, sfd: &OwnedFd, st: &rustix::fs::Stat) -> Result<()> {
    let (u, g) = owner(st);
    rustix::fs::fchown(dfd, u, g).context("chown")?;
    rustix::fs::fchmod(dfd, perm(st)).context("chmod")?;
    fsutil::set_fd_xattrs(dfd, &fsutil::fd_xattrs(sfd).context("Reading xattrs")?).context("Writing xattrs")?;
    rustix::fs::futimens(dfd, &fsutil::timestamps(st)).context("Setting times")?;
    Ok(())
}

/// Copy the whole directory `src` to a new directory `dst_parent/name`.
pub fn copy_tree(src: impl AsFd, dst_parent: impl AsFd, name: &str) -> Result<usize> {
    copy_tree_except(src, dst_parent, name, None)
}

/// Copy the new defaults for `plan`: every path the plan will remove or
/// replace is left out, as apply would only delete it again. The result
/// after [`apply`] is the same as with a full copy, with less I/O.
pub fn copy_defaults_for(plan: &Plan, new_defaults: impl AsFd, dst_parent: impl AsFd, name: &str) -> Result<usize> {
    let skip: HashSet<PathBuf> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Remove { path } | Action::Mkdir { path } | Action::Copy { path, .. } => Some(path.clone()),
            Action::SetAttrs { .. } | Action::Skip { .. } => None,
        })
        .collect();
    copy_tree_except(new_defaults, dst_parent, name, Some(&skip))
}

#[context("Copying a tree to {name}")]
fn copy_tree_except(src: impl AsFd, dst_parent: impl AsFd, name: &str, skip: Option<&HashSet<PathBuf>>) -> Result<usize> {
    let src = rustix::io::fcntl_dupfd_cloexec(src.as_fd(), 0)?;
    let st = rustix::fs::fstat(&src).context("stat of the source directory")?;
    rustix::fs::mkdirat(&dst_parent, name, Mode::RWXU).with_context(|| format!("Creating {name}"))?;
    let dfd = fsutil::open_dir_nofollow(&dst_parent, OsStr::new(name)).with_context(|| format!("Opening {name}"))?;
    let mut n = 0;
    for child in fsutil::read_names(&src).context("Reading the source directory")? {
        n += copy_entry_except(&src, &dfd, &child, &Path::new(name).join(&child), Path::new(&child), skip)?;
    }
    // An fd opened with O_PATH cannot read xattrs: reopen the source.
    let sfd = rustix::fs::openat(&src, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .context("Opening the source directory")?;
    finish_dir(&dfd, &sfd, &st).with_context(|| format!("Setting attributes of {name}"))?;
    Ok(n)
}

/// Execute `plan` into `new_etc` (a copy of the new defaults), reading the
/// admin's files from `current`. Refuses a plan with conflicts. If it fails
/// midway, `new_etc` is half-written; it belongs to a deployment that is not
/// bootable yet, and the error names the path and the step.
pub fn apply(plan: &Plan, current: impl AsFd, new_etc: impl AsFd) -> Result<ApplyStats> {
    if let Some(msg) = plan.conflict_message() {
        bail!("{msg}");
    }
    let (current, new_etc) = (current.as_fd(), new_etc.as_fd());
    let mut stats = ApplyStats::default();
    let mut parents: Option<(PathBuf, OwnedFd, OwnedFd)> = None;
    for action in &plan.actions {
        crate::failpoint::hit("etcmerge::action");
        if !matches!(action, Action::Copy { .. }) {
            // Removals and new directories change the tree: reopen after them.
            parents = None;
        }
        match action {
            Action::Remove { path } => {
                let shown = Path::new("/etc").join(path);
                match fsutil::open_parent(new_etc, path) {
                    Ok((parent, name)) => fsutil::remove_all_at(&parent, name)
                        .with_context(|| format!("Removing {}", display_path(&shown)))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {}
                    Err(e) => return Err(anyhow!(e).context(format!("Removing {}", display_path(&shown)))),
                }
                stats.removed += 1;
            }
            Action::Mkdir { path } => {
                let shown = Path::new("/etc").join(path);
                let ctx = || format!("Creating directory {}", display_path(&shown));
                let (dparent, name) = fsutil::open_parent(new_etc, path).with_context(ctx)?;
                if fsutil::lstat_optional(&dparent, name)?.is_some() {
                    // A non-directory here is removed, as the admin has a directory.
                    fsutil::remove_all_at(&dparent, name).with_context(ctx)?;
                }
                let (sparent, _) = fsutil::open_parent(current, path).with_context(ctx)?;
                let sfd = fsutil::open_dir_nofollow(&sparent, name).with_context(ctx)?;
                let st = rustix::fs::fstat(&sfd).with_context(ctx)?;
                rustix::fs::mkdirat(&dparent, name, Mode::RWXU).with_context(ctx)?;
                let dfd = fsutil::open_dir_nofollow(&dparent, name).with_context(ctx)?;
                finish_dir(&dfd, &sfd, &st).with_context(ctx)?;
                stats.mkdirs += 1;
            }
            Action::Copy { path, .. } => {
                let shown = Path::new("/etc").join(path);
                let ctx = || format!("Copying {}", display_path(&shown));
                let name = path.file_name().ok_or_else(|| anyhow!("empty path in plan"))?;
                let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
                // Consecutive actions (the plan is sorted) mostly share a
                // parent: keep its two handles instead of reopening them.
                if parents.as_ref().map(|(p, _, _)| p) != Some(&parent) {
                    let s = fsutil::open_dir_path(current, &parent).with_context(ctx)?;
                    let d = fsutil::open_dir_path(new_etc, &parent).with_context(ctx)?;
                    parents = Some((parent, s, d));
                }
                let (_, sparent, dparent) = parents.as_ref().expect("just set");
                let sst = rustix::fs::statat(sparent, name, AtFlags::SYMLINK_NOFOLLOW).with_context(ctx)?;
                if let Some(dst) = fsutil::lstat_optional(dparent, name)? {
                    let ddir = FileType::from_raw_mode(dst.st_mode) == FileType::Directory;
                    let sdir = FileType::from_raw_mode(sst.st_mode) == FileType::Directory;
                    match (sdir, ddir) {
                        (true, true) => continue,
                        (false, true) => bail!(
                            "{}: a local file where the new defaults have a directory",
                            display_path(&shown)
                        ),
                        _ => rustix::fs::unlinkat(dparent, name, AtFlags::empty()).with_context(ctx)?,
                    }
                }
                stats.copied += copy_entry(sparent, dparent, name, &shown)?;
            }
            Action::SetAttrs { path } => {
                let shown = Path::new("/etc").join(path);
                let ctx = || format!("Setting the attributes of directory {}", display_path(&shown));
                let sfd = fsutil::open_dir_path(current, path).with_context(ctx)?;
                let dfd = fsutil::open_dir_path(new_etc, path).with_context(ctx)?;
                let st = rustix::fs::fstat(&sfd).with_context(ctx)?;
                finish_dir(&dfd, &sfd, &st).with_context(ctx)?;
                stats.attrs += 1;
            }
            Action::Skip { path, reason } => {
                let _ = writeln!(std::io::stderr(), "note: /etc/{}: skipped, {reason}", display_path(path));
                stats.skipped += 1;
            }
        }
    }
    Ok(stats)
}
