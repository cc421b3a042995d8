//! `/boot` on FAT (an ESP or an XBOOTLDR partition that systemd-boot
//! reads): the deployment list as a directory, `boot/loader/`, since FAT
//! has no symlinks. docs/fat-boot.md has the design; the swap's order is in
//! [`crate::bootloader::swap`].
//!
//! What FAT offers and does not, and what follows here:
//! - a rename writes two directory entries (the new name, then the old one
//!   marked free; RENAME_EXCHANGE rewrites both names' entries), so a power
//!   cut between them can leave two names pointing at the same clusters (a
//!   "cross-link"). Reading such a file system is fine; removing either
//!   name frees clusters the other still names. So on FAT a directory is
//!   removed only when no sibling directory is the same one
//!   ([`same_dir`]) and no two files in it share their first cluster
//!   ([`shared_files`]); otherwise it is moved aside to a `.lost-` name
//!   (a rename frees nothing) and left for `fsck.fat`.
//! - FAT writes its table (the cluster chains) and its directories in no
//!   fixed order, so a cut while a directory or file is being made can
//!   leave a name whose chain runs into a free cluster: Linux then fails to
//!   open the directory (EIO) and would fail the fs on deleting such a file
//!   ("deleting FAT entry beyond EOF", and vfat remounts read-only). Nothing
//!   live is ever in that state (all is synced before the commit point), but
//!   a leftover can be: [`remove_dir`] leaves a directory it cannot read and
//!   one holding a file whose chain is broken ([`broken_file`], every block
//!   mapped with FIBMAP) where it is, and the swap then builds under the
//!   next of [`build_names`].
//! - the boot version of a list (which `ostree/boot.N` its entries name) is
//!   in a file, `loader/ostree-bootversion`, not in a symlink's target.

use std::os::fd::AsFd;

use anyhow::{anyhow, bail, Context, Result};
use cap_std_ext::cap_std::fs::Dir;
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;
use rustix::fs::{Mode, OFlags};

use crate::fsutil;

/// `f_type` of vfat/msdos (linux/magic.h).
const MSDOS_SUPER_MAGIC: i64 = 0x4d44;

/// The file of a list directory that says its boot version.
pub const BOOTVERSION_FILE: &str = "ostree-bootversion";

/// Where the next list is built, and where the old one is after the swap:
/// the first of these names that is free (see [`build_dir`]).
pub const BUILD_DIR: &str = "loader.new";

/// The names a list may be built under: `loader.new`, then `loader.new.1`
/// to `loader.new.9` when an earlier one is a leftover Linux cannot read.
pub fn build_names() -> impl Iterator<Item = String> {
    std::iter::once(BUILD_DIR.to_string()).chain((1..10).map(|k| format!("{BUILD_DIR}.{k}")))
}

/// Whether `name` (in `/boot`) is one of [`build_names`].
pub fn is_build_name(name: &str) -> bool {
    name == BUILD_DIR || name.strip_prefix(BUILD_DIR).and_then(|r| r.strip_prefix('.')).is_some_and(|k| k.len() == 1 && k.as_bytes()[0].is_ascii_digit() && k != "0")
}

/// Whether `e` comes from an I/O error of the device or of FAT's cluster
/// chains (EIO): what a leftover of a cut write can give.
pub fn is_eio(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.raw_os_error() == Some(libc::EIO)))
}

/// A free name to build the next list under, after removing what an
/// interrupted swap left under the earlier ones (see the module
/// documentation: one Linux cannot read is left for `fsck.fat`).
pub fn build_dir(boot: &Dir) -> Result<String> {
    for name in build_names() {
        match remove_dir(boot, &name, &format!("/boot/{name}")) {
            Ok(Removal::Removed | Removal::Missing | Removal::Kept(..)) => return Ok(name),
            Err(e) if is_eio(&e) => {
                crate::warn!("/boot/{name} cannot be read (a power cut while it was written left its FAT cluster chain broken; `fsck.fat -a` repairs it): left alone; {e:#}");
            }
            Err(e) => return Err(e),
        }
    }
    bail!("/boot: {BUILD_DIR} and {BUILD_DIR}.1 to .9 are all unreadable leftovers: run `fsck.fat -a` on /boot's device (unmounted)")
}

/// The prefix of a name moved aside because it is a second name of a
/// directory still in use (see the module documentation).
pub const LOST_PREFIX: &str = ".lost-";

/// How `boot/` holds the live deployment list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoaderLayout {
    /// `boot/loader -> loader.N`, as libostree writes it (any file system
    /// with symlinks).
    #[default]
    Symlink,
    /// `boot/loader/` itself, with `ostree-bootversion` (FAT).
    Directory,
}

impl LoaderLayout {
    /// The layout of `boot`: what `loader` is if it exists, else what the
    /// file system allows (FAT: a directory).
    pub fn detect(boot: &Dir) -> Result<Self> {
        match boot.symlink_metadata_optional("loader").context("Reading /boot/loader")? {
            Some(m) if m.is_dir() => Ok(Self::Directory),
            Some(_) => Ok(Self::Symlink),
            None if is_fat(boot)? => Ok(Self::Directory),
            None => Ok(Self::Symlink),
        }
    }

    /// The live list's directory under `boot/`, for boot version `bv`.
    pub fn loader_dir(self, bv: u32) -> String {
        match self {
            Self::Symlink => format!("loader.{bv}"),
            Self::Directory => "loader".into(),
        }
    }
}

/// Whether `dir` is on a FAT file system.
pub fn is_fat(dir: &Dir) -> Result<bool> {
    let st = rustix::fs::fstatfs(dir.as_fd()).context("statfs of /boot")?;
    Ok(st.f_type as i64 == MSDOS_SUPER_MAGIC)
}

/// The boot version a list file says ("0" or "1", a newline allowed).
pub fn parse_bootversion(s: &str) -> Option<u32> {
    match s.trim_end_matches('\n') {
        "0" => Some(0),
        "1" => Some(1),
        _ => None,
    }
}

/// The boot version of the list directory `boot/name`; None if it has no
/// `ostree-bootversion` (no list was written there yet).
#[context("Reading /boot/{name}/{BOOTVERSION_FILE}")]
pub fn read_bootversion(boot: &Dir, name: &str) -> Result<Option<u32>> {
    let Some(s) = boot.read_to_string_optional(format!("{name}/{BOOTVERSION_FILE}"))? else {
        return Ok(None);
    };
    parse_bootversion(&s).map(Some).ok_or_else(|| anyhow!("it says {:?}, not 0 or 1", s.trim_end()))
}

/// Whether the sibling directories `a` and `b` of `parent` are one
/// directory under two names (a cut rename on FAT). A probe file made in
/// `a` is looked for in `b`: the only test FAT allows, since its inode
/// numbers come from the position of the name, not from the clusters.
pub fn same_dir(parent: &Dir, a: &str, b: &str) -> Result<bool> {
    Ok(same_as_any(parent, a, &[b.to_string()])?.is_some())
}

/// The first of `others` that is the same directory as `name`.
fn same_as_any(parent: &Dir, name: &str, others: &[String]) -> Result<Option<String>> {
    let probe = format!(".treeboot-probe-{}", std::process::id());
    let d = fsutil::open_subdir(parent, "/boot", name)?;
    d.remove_file_optional(&probe)?;
    d.create(&probe).with_context(|| format!("Creating the probe {name}/{probe}"))?;
    let mut found = None;
    for o in others {
        if o != name && parent.symlink_metadata_optional(format!("{o}/{probe}"))?.is_some() {
            found = Some(o.clone());
            break;
        }
    }
    d.remove_file(&probe).with_context(|| format!("Removing the probe {name}/{probe}"))?;
    Ok(found)
}

/// Each non-empty regular file under `dir` (recursively), open, with its
/// path relative to `dir` and its size, until `f` returns `Some`.
fn find_file<T>(dir: &Dir, mut f: impl FnMut(&str, std::os::fd::OwnedFd, u64) -> Result<Option<T>>) -> Result<Option<T>> {
    let mut stack = vec![(String::new(), dir.try_clone()?)];
    while let Some((prefix, d)) = stack.pop() {
        for n in fsutil::read_names(&d)? {
            let n = n.to_string_lossy().to_string();
            let rel = if prefix.is_empty() { n.clone() } else { format!("{prefix}/{n}") };
            let m = d.symlink_metadata(&n)?;
            if m.is_dir() {
                stack.push((rel, d.open_dir(&n)?));
            } else if m.is_file() && m.len() > 0 {
                let fd = rustix::fs::openat(d.as_fd(), n.as_str(), OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty())?;
                if let Some(t) = f(&rel, fd, m.len())? {
                    return Ok(Some(t));
                }
            }
        }
    }
    Ok(None)
}

/// Two files under `dir` (recursively) whose data starts in the same block:
/// names a cut rename left on one file. Empty files have no block.
pub fn shared_files(dir: &Dir) -> Result<Option<(String, String)>> {
    let mut seen: std::collections::HashMap<u32, String> = std::collections::HashMap::new();
    let mut no_fibmap = false;
    let found = find_file(dir, |rel, fd, _| match crate::sys::fibmap(fd.as_fd(), 0) {
        Ok(0) => Ok(None),
        Ok(b) => Ok(seen.insert(b, rel.to_string()).map(|other| (other, rel.to_string()))),
        // Not FAT (tmpfs has no FIBMAP) or not permitted: no cross-links
        // to find there.
        Err(_) => {
            no_fibmap = true;
            Ok(Some((String::new(), String::new())))
        }
    })?;
    Ok(found.filter(|_| !no_fibmap))
}

/// A file under `dir` (recursively) whose cluster chain does not reach its
/// size (a block FIBMAP cannot map): deleting it would make Linux free a
/// free cluster.
pub fn broken_file(dir: &Dir) -> Result<Option<String>> {
    let mut no_fibmap = false;
    let found = find_file(dir, |rel, fd, len| {
        // FIBMAP counts in the device's blocks (512 bytes on FAT): one per
        // cluster (statfs's block size) is enough.
        let step = (rustix::fs::fstatfs(fd.as_fd())?.f_bsize.max(512) as u64 / 512).max(1);
        for b in (0..len.div_ceil(512)).step_by(step as usize) {
            match crate::sys::fibmap(fd.as_fd(), b as u32) {
                Ok(0) | Err(rustix::io::Errno::IO) => return Ok(Some(rel.to_string())),
                Ok(_) => {}
                // No FIBMAP here (not FAT) or not permitted.
                Err(_) => {
                    no_fibmap = true;
                    return Ok(Some(String::new()));
                }
            }
        }
        Ok(None)
    })?;
    Ok(found.filter(|_| !no_fibmap))
}

/// What [`remove_dir`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// Moved aside to this name, with the reason.
    Kept(String, String),
    Missing,
}

/// Remove the directory `parent/name` (shown as `shown`), unless it is a
/// second name of a sibling directory or holds two names of one file:
/// then it is renamed to a `.lost-` name, which frees nothing.
#[context("Removing {shown}")]
pub fn remove_dir(parent: &Dir, name: &str, shown: &str) -> Result<Removal> {
    match parent.symlink_metadata_optional(name)? {
        None => return Ok(Removal::Missing),
        Some(m) if !m.is_dir() => bail!("{shown} is not a directory"),
        Some(_) => {}
    }
    let siblings: Vec<String> = fsutil::read_names(parent)?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n != name && parent.symlink_metadata(n).is_ok_and(|m| m.is_dir()))
        .collect();
    let why = if let Some(o) = same_as_any(parent, name, &siblings)? {
        Some(format!("it is the same directory as {o} (a power cut during a rename on FAT)"))
    } else {
        let d = fsutil::open_subdir(parent, shown, name)?;
        match shared_files(&d)? {
            Some((a, b)) => Some(format!("{a} and {b} in it are one file under two names (a power cut during a rename on FAT)")),
            None => broken_file(&d)?.map(|f| format!("the FAT cluster chain of {f} in it is broken (a power cut while it was written)")),
        }
    };
    match why {
        None => {
            fsutil::remove_all_at(parent, name.as_ref())?;
            Ok(Removal::Removed)
        }
        Some(why) => {
            let lost = (0..)
                .map(|k| format!("{LOST_PREFIX}{k}-{name}"))
                .find(|n| !parent.symlink_metadata_optional(n).is_ok_and(|m| m.is_some()))
                .expect("an unused name");
            parent.rename(name, parent, &lost).with_context(|| format!("Moving {shown} aside to {lost}"))?;
            crate::warn!("{shown} was not removed: {why}; it is now {lost}, which `fsck.fat` repairs");
            Ok(Removal::Kept(lost, why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std_ext::{cap_std, cap_tempfile};

    #[test]
    fn bootversion_files() {
        assert_eq!(parse_bootversion("1\n"), Some(1));
        assert_eq!(parse_bootversion("0"), Some(0));
        assert_eq!(parse_bootversion("2\n"), None);
        assert_eq!(parse_bootversion(""), None);
        let t = cap_tempfile::tempdir(cap_std::ambient_authority()).unwrap();
        t.create_dir_all("loader").unwrap();
        assert_eq!(read_bootversion(&t, "loader").unwrap(), None);
        t.write("loader/ostree-bootversion", "junk").unwrap();
        let e = format!("{:#}", read_bootversion(&t, "loader").unwrap_err());
        assert!(e.contains("/boot/loader/ostree-bootversion") && e.contains("\"junk\""), "{e}");
    }

    #[test]
    fn build_names_in_order() {
        let n: Vec<String> = build_names().collect();
        assert_eq!(n.len(), 10);
        assert_eq!((n[0].as_str(), n[1].as_str(), n[9].as_str()), ("loader.new", "loader.new.1", "loader.new.9"));
        assert!(n.iter().all(|n| is_build_name(n)));
        for other in ["loader", "loader.new.0", "loader.new.10", "loader.newer", "loader.1"] {
            assert!(!is_build_name(other), "{other}");
        }
    }

    #[test]
    fn layout_follows_what_loader_is() {
        let t = cap_tempfile::tempdir(cap_std::ambient_authority()).unwrap();
        assert_eq!(LoaderLayout::detect(&t).unwrap(), LoaderLayout::Symlink, "not FAT, no loader");
        t.create_dir("loader").unwrap();
        assert_eq!(LoaderLayout::detect(&t).unwrap(), LoaderLayout::Directory);
        assert_eq!(LoaderLayout::Directory.loader_dir(1), "loader");
        assert_eq!(LoaderLayout::Symlink.loader_dir(1), "loader.1");
    }

    /// Two directories are told apart, and the probe leaves nothing behind.
    #[test]
    fn a_directory_is_removed_unless_a_sibling_is_the_same() {
        let t = cap_tempfile::tempdir(cap_std::ambient_authority()).unwrap();
        t.create_dir_all("loader/entries").unwrap();
        t.create_dir_all("loader.new/entries").unwrap();
        t.write("loader.new/entries/a.conf", "x").unwrap();
        assert!(!same_dir(&t, "loader.new", "loader").unwrap());
        assert_eq!(remove_dir(&t, "loader.new", "/boot/loader.new").unwrap(), Removal::Removed);
        assert!(t.symlink_metadata_optional("loader.new").unwrap().is_none());
        assert!(t.symlink_metadata_optional("loader/entries").unwrap().is_some());
        assert_eq!(remove_dir(&t, "loader.new", "/boot/loader.new").unwrap(), Removal::Missing);
        assert_eq!(fsutil::read_names(t.open_dir("loader").unwrap()).unwrap().len(), 1, "no probe left behind");
    }

    /// Two names of one file (here hard links, which share their first
    /// block as FAT's cross-linked names do): the directory is moved aside,
    /// not removed, and a second one gets the next name.
    #[test]
    fn a_directory_holding_one_file_under_two_names_is_kept() {
        // On disk (FIBMAP): /var/tmp, not a tmpfs /tmp.
        let vt = Dir::open_ambient_dir("/var/tmp", cap_std::ambient_authority()).unwrap();
        let t = cap_tempfile::TempDir::new_in(&vt).unwrap();
        for _ in 0..2 {
            t.create_dir_all("loader.new/entries").unwrap();
            t.write("loader.new/entries/ostree-1+3.conf", "title x\n").unwrap();
            t.hard_link("loader.new/entries/ostree-1+3.conf", &t, "loader.new/entries/ostree-1+2-1.conf").unwrap();
            assert!(shared_files(&t.open_dir("loader.new").unwrap()).unwrap().is_some(), "FIBMAP finds the two names (as root, /var/tmp on disk)");
            let r = remove_dir(&t, "loader.new", "/boot/loader.new").unwrap();
            let Removal::Kept(name, why) = r else { panic!("{r:?}") };
            assert!(why.contains("entries/ostree-1+") && why.contains("two names"), "{why}");
            assert!(t.read_to_string(format!("{name}/entries/ostree-1+3.conf")).unwrap() == "title x\n");
        }
        let mut names: Vec<String> = fsutil::read_names(&*t).unwrap().into_iter().map(|n| n.into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, [".lost-0-loader.new", ".lost-1-loader.new"]);
    }
}
