//! The diff between the old defaults (`usr/etc`) and the admin's `/etc`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::FileType;
use serde::Serialize;

use crate::fsutil::{self, display_path};

#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EntryType {
    File,
    Directory,
    Symlink,
    /// fifo, socket, block or character device
    Special(&'static str),
}

impl EntryType {
    pub fn from_mode(mode: u32) -> Self {
        match FileType::from_raw_mode(mode) {
            FileType::RegularFile => EntryType::File,
            FileType::Directory => EntryType::Directory,
            FileType::Symlink => EntryType::Symlink,
            FileType::Fifo => EntryType::Special("fifos"),
            FileType::Socket => EntryType::Special("sockets"),
            FileType::BlockDevice => EntryType::Special("block devices"),
            FileType::CharacterDevice => EntryType::Special("character devices"),
            FileType::Unknown => EntryType::Special("unknown file types"),
        }
    }

    pub fn noun(&self) -> &'static str {
        match self {
            EntryType::File => "file",
            EntryType::Directory => "directory",
            EntryType::Symlink => "symlink",
            EntryType::Special(s) => s,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Added,
    Modified,
    Removed,
}

/// One difference: a path relative to the compared directory.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Change {
    #[serde(serialize_with = "super::ser_path")]
    #[schemars(with = "String")]
    pub path: PathBuf,
    pub kind: ChangeKind,
    /// For modifications: what differs (`type`, `content`, `mode`, `owner`,
    /// `target`; extended attributes are not compared).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub how: Vec<&'static str>,
    /// The type in `current` (None for a removal).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub new_type: Option<EntryType>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Diff {
    pub changes: Vec<Change>,
}

impl Diff {
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }
}

/// Compare `old` (defaults) with `current`, as libostree's
/// `ostree_diff_dirs(IGNORE_XATTRS)` does for the merge: entries present on
/// both sides are compared by type, mode, owner, and content or symlink
/// target; directories present on both sides are compared by mode and owner
/// and recursed into. Extended attributes are not compared: SELinux labels
/// differ between `/usr/etc` and `/etc` on every labelled system, so a file
/// whose only change is a label, ACL or other xattr takes the new default.
/// A subtree present on one side only is one change.
pub fn diff(old: impl AsFd, current: impl AsFd) -> Result<Diff> {
    diff_cached(old, current, None, None)
}

/// Identity of an inode's state: (dev, ino, ctime seconds, ctime nanoseconds).
/// Any change of content, mode, owner or xattrs moves ctime, and ctime cannot
/// be set from user space, so an unchanged key means an unchanged file.
type InodeKey = [i64; 4];

fn key(st: &rustix::fs::Stat) -> InodeKey {
    [st.st_dev as i64, st.st_ino as i64, st.st_ctime, st.st_ctime_nsec as i64]
}

/// Pairs of files found equal by an earlier diff (stage time), so that the
/// diff at shutdown compares only metadata for them instead of reading their
/// contents again.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiffCache {
    equal: HashMap<PathBuf, (InodeKey, InodeKey)>,
}

impl DiffCache {
    pub fn len(&self) -> usize {
        self.equal.len()
    }
    pub fn is_empty(&self) -> bool {
        self.equal.is_empty()
    }

    /// One line per pair: the path in hex, then the eight numbers.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = String::new();
        let mut v: Vec<_> = self.equal.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        for (p, (a, b)) in v {
            out.push_str(&hex::encode(p.as_os_str().as_bytes()));
            for n in a.iter().chain(b.iter()) {
                out.push(' ');
                out.push_str(&n.to_string());
            }
            out.push('\n');
        }
        out.into_bytes()
    }

    pub fn parse(data: &[u8]) -> Option<Self> {
        let mut c = DiffCache::default();
        for line in std::str::from_utf8(data).ok()?.lines() {
            let mut it = line.split(' ');
            let path = PathBuf::from(std::ffi::OsString::from_vec(hex::decode(it.next()?).ok()?));
            let nums: Vec<i64> = it.map(|n| n.parse().ok()).collect::<Option<_>>()?;
            let nums: [i64; 8] = nums.try_into().ok()?;
            c.equal.insert(path, (nums[..4].try_into().ok()?, nums[4..].try_into().ok()?));
        }
        Some(c)
    }
}

struct Walk<'a> {
    known: Option<&'a DiffCache>,
    record: Option<&'a mut DiffCache>,
    /// How errors name the two trees (`/usr/etc` and `/etc` for the merge).
    labels: (&'a str, &'a str),
}

/// [`diff`], trusting `known` equal pairs whose inodes did not change, and
/// recording the equal pairs it finds into `record`.
pub fn diff_cached(old: impl AsFd, current: impl AsFd, known: Option<&DiffCache>, record: Option<&mut DiffCache>) -> Result<Diff> {
    let mut d = Diff::default();
    let old = rustix::io::fcntl_dupfd_cloexec(old.as_fd(), 0)?;
    let cur = rustix::io::fcntl_dupfd_cloexec(current.as_fd(), 0)?;
    let mut w = Walk { known, record, labels: ("/usr/etc", "/etc") };
    walk(&old, &cur, &PathBuf::new(), &mut d, &mut w)?;
    Ok(d)
}

/// [`diff`] of any two trees (`treeboot diff` compares two deployments'
/// /usr), errors naming them `old_label/PATH` and `cur_label/PATH`.
pub fn diff_trees(old: impl AsFd, current: impl AsFd, old_label: &str, cur_label: &str) -> Result<Diff> {
    let mut d = Diff::default();
    let old = rustix::io::fcntl_dupfd_cloexec(old.as_fd(), 0)?;
    let cur = rustix::io::fcntl_dupfd_cloexec(current.as_fd(), 0)?;
    let mut w = Walk { known: None, record: None, labels: (old_label, cur_label) };
    walk(&old, &cur, &PathBuf::new(), &mut d, &mut w)?;
    Ok(d)
}

fn walk(old: &OwnedFd, cur: &OwnedFd, rel: &Path, out: &mut Diff, w: &mut Walk) -> Result<()> {
    let old_names = fsutil::read_names(old)
        .with_context(|| format!("Reading directory {}/{}", w.labels.0, display_path(rel)))?;
    let cur_names = fsutil::read_names(cur)
        .with_context(|| format!("Reading directory {}/{}", w.labels.1, display_path(rel)))?;
    // Both lists are sorted: merge them.
    let (mut i, mut j) = (0, 0);
    loop {
        let ord = match (old_names.get(i), cur_names.get(j)) {
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match ord {
            std::cmp::Ordering::Less => {
                out.changes.push(Change {
                    path: rel.join(&old_names[i]),
                    kind: ChangeKind::Removed,
                    how: vec![],
                    new_type: None,
                });
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let name = &cur_names[j];
                let st = rustix::fs::statat(cur, name.as_os_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                    .with_context(|| format!("Examining {}/{}", w.labels.1, display_path(&rel.join(name))))?;
                out.changes.push(Change {
                    path: rel.join(name),
                    kind: ChangeKind::Added,
                    how: vec![],
                    new_type: Some(EntryType::from_mode(st.st_mode)),
                });
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let name = old_names[i].as_os_str();
                compare(old, cur, name, rel, out, w)?;
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn compare(old: &OwnedFd, cur: &OwnedFd, name: &OsStr, rel: &Path, out: &mut Diff, w: &mut Walk) -> Result<()> {
    let path = rel.join(name);
    let labels = w.labels;
    let ctx = || format!("Comparing {}/{}", labels.1, display_path(&path));
    let so = rustix::fs::statat(old, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).with_context(ctx)?;
    let sc = rustix::fs::statat(cur, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).with_context(ctx)?;
    let keys = (key(&so), key(&sc));
    if w.known.is_some_and(|k| k.equal.get(&path) == Some(&keys)) {
        if let Some(r) = w.record.as_deref_mut() {
            r.equal.insert(path, keys);
        }
        return Ok(());
    }
    let to = EntryType::from_mode(so.st_mode);
    let tc = EntryType::from_mode(sc.st_mode);
    let mut how = Vec::new();
    if to != tc {
        how.push("type");
    } else {
        if (so.st_mode & 0o7777) != (sc.st_mode & 0o7777) && tc != EntryType::Symlink {
            how.push("mode");
        }
        if so.st_uid != sc.st_uid || so.st_gid != sc.st_gid {
            how.push("owner");
        }
        match tc {
            EntryType::Directory => {
                // A directory whose mode or owner changed is a modification
                // (as `ostree admin config-diff` lists it), and its
                // contents are compared as well.
                if !how.is_empty() {
                    out.changes.push(Change {
                        path: path.clone(),
                        kind: ChangeKind::Modified,
                        how,
                        new_type: Some(tc),
                    });
                }
                let o = fsutil::open_dir_nofollow(old, name).with_context(ctx)?;
                let c = fsutil::open_dir_nofollow(cur, name).with_context(ctx)?;
                return walk(&o, &c, &path, out, w);
            }
            EntryType::File => {
                let same_inode = so.st_dev == sc.st_dev && so.st_ino == sc.st_ino;
                // The files are opened only when their bytes must be compared.
                let differ = || -> Result<bool> {
                    let fo = fsutil::open_file_nofollow(old, name)?;
                    let fc = fsutil::open_file_nofollow(cur, name)?;
                    Ok(!fsutil::same_contents(&fo, &fc)?)
                };
                if !same_inode && (so.st_size != sc.st_size || differ().with_context(ctx)?) {
                    how.push("content");
                }
            }
            EntryType::Symlink => {
                let lo = rustix::fs::readlinkat(old, name, Vec::new()).with_context(ctx)?;
                let lc = rustix::fs::readlinkat(cur, name, Vec::new()).with_context(ctx)?;
                if lo != lc {
                    how.push("target");
                }
            }
            _ => {
                if so.st_rdev != sc.st_rdev {
                    how.push("device");
                }
            }
        }
    }
    if how.is_empty() && tc != EntryType::Directory {
        if let Some(r) = w.record.as_deref_mut() {
            r.equal.insert(path.clone(), keys);
        }
    }
    if !how.is_empty() {
        out.changes.push(Change {
            path,
            kind: ChangeKind::Modified,
            how,
            new_type: Some(tc),
        });
    }
    Ok(())
}
