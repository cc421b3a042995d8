//! Small file-system helpers over directory handles: opening one component at
//! a time without following symlinks, extended attributes, copying with
//! metadata. Everything here works relative to a directory fd, so callers
//! cannot be led outside the tree they were given.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, Mode, OFlags, XattrFlags};

pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Open the directory `name` (one component) below `dir`, refusing symlinks.
pub fn open_dir_nofollow(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open a relative path below `dir`, one component at a time, never
/// following a symlink and refusing `..`.
pub fn open_dir_path(dir: impl AsFd, rel: &Path) -> io::Result<OwnedFd> {
    let mut cur = rustix::io::fcntl_dupfd_cloexec(dir, 0)?;
    for c in rel.components() {
        match c {
            Component::Normal(n) => cur = open_dir_nofollow(&cur, n)?,
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("path {} leaves its tree", rel.display()),
                ))
            }
        }
    }
    Ok(cur)
}

/// The parent directory of `rel` (opened without following symlinks) and the
/// last component.
pub fn open_parent(dir: impl AsFd, rel: &Path) -> io::Result<(OwnedFd, &OsStr)> {
    let name = rel.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("no file name in {}", rel.display()))
    })?;
    let parent = rel.parent().unwrap_or(Path::new(""));
    Ok((open_dir_path(dir, parent)?, name))
}

pub fn lstat_optional(dir: impl AsFd, name: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => Ok(Some(s)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn open_file_nofollow(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Names in a directory, sorted bytewise, without `.` and `..`.
pub fn read_names(dir: impl AsFd) -> io::Result<Vec<std::ffi::OsString>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = rustix::fs::Dir::read_from(&fd)?;
    let mut names = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        names.push(std::ffi::OsString::from(OsStr::from_bytes(n)));
    }
    names.sort();
    Ok(names)
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

fn split_list(list: &[u8]) -> Vec<Vec<u8>> {
    list.split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| n.to_vec())
        .collect()
}

/// Where extended attributes are read: an open file, or a path whose last
/// component is not followed (a symlink's own attributes).
#[derive(Clone, Copy)]
enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    Link(&'a CStr),
}

impl XattrTarget<'_> {
    fn list_size(self) -> rustix::io::Result<usize> {
        match self {
            Self::Fd(fd) => rustix::fs::flistxattr_query(fd),
            Self::Link(p) => rustix::fs::llistxattr_query(p),
        }
    }

    fn list(self, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            Self::Fd(fd) => rustix::fs::flistxattr(fd, buf),
            Self::Link(p) => rustix::fs::llistxattr(p, buf),
        }
    }

    fn value_size(self, name: &CStr) -> rustix::io::Result<usize> {
        match self {
            Self::Fd(fd) => rustix::fs::fgetxattr_query(fd, name),
            Self::Link(p) => rustix::fs::lgetxattr_query(p, name),
        }
    }

    fn value(self, name: &CStr, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            Self::Fd(fd) => rustix::fs::fgetxattr(fd, name, buf),
            Self::Link(p) => rustix::fs::lgetxattr(p, name, buf),
        }
    }
}

/// Read the extended attributes of a file. Returns them sorted by name; none
/// on a file system without xattr support.
fn read_xattrs_impl(target: XattrTarget) -> io::Result<Xattrs> {
    let size = match target.list_size() {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; size];
    let n = target.list(&mut buf)?;
    buf.truncate(n);
    let mut out = Vec::new();
    for name in split_list(&buf) {
        let cname = cstr(&name)?;
        let mut v = vec![0u8; target.value_size(&cname)?];
        let got = target.value(&cname, &mut v)?;
        v.truncate(got);
        out.push((name, v));
    }
    out.sort();
    Ok(out)
}

pub fn fd_xattrs(fd: impl AsFd) -> io::Result<Xattrs> {
    read_xattrs_impl(XattrTarget::Fd(fd.as_fd()))
}

/// A `/proc/self/fd/N/name` path: lets the `l*xattr` calls reach a symlink
/// through its parent's handle without resolving anything else.
fn proc_path(dir: BorrowedFd, name: &OsStr) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    cstr(&p)
}

pub fn symlink_xattrs(dir: impl AsFd, name: &OsStr) -> io::Result<Xattrs> {
    let p = proc_path(dir.as_fd(), name)?;
    read_xattrs_impl(XattrTarget::Link(&p))
}

pub fn set_fd_xattrs(fd: impl AsFd, xattrs: &Xattrs) -> io::Result<()> {
    for (k, v) in xattrs {
        rustix::fs::fsetxattr(&fd, cstr(k)?.as_c_str(), v, XattrFlags::empty())?;
    }
    Ok(())
}

pub fn set_symlink_xattrs(dir: impl AsFd, name: &OsStr, xattrs: &Xattrs) -> io::Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let p = proc_path(dir.as_fd(), name)?;
    for (k, v) in xattrs {
        rustix::fs::lsetxattr(&p, cstr(k)?.as_c_str(), v, XattrFlags::empty())?;
    }
    Ok(())
}

/// Copy all bytes from one fd to another (copy_file_range, with a read/write
/// fallback for file systems that do not support it).
pub fn copy_fd_contents(src: impl AsFd, dst: impl AsFd) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        match rustix::fs::copy_file_range(&src, None, &dst, None, 1 << 30) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(rustix::io::Errno::XDEV) | Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::INVAL)
                if total == 0 =>
            {
                let mut s = std::fs::File::from(rustix::io::fcntl_dupfd_cloexec(&src, 0)?);
                let mut d = std::fs::File::from(rustix::io::fcntl_dupfd_cloexec(&dst, 0)?);
                return std::io::copy(&mut s, &mut d);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Compare the contents of two open files of equal size.
pub fn same_contents(a: impl AsFd, b: impl AsFd) -> io::Result<bool> {
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    loop {
        let na = rustix::io::pread(&a, &mut ba[..], off)?;
        if na == 0 {
            let nb = rustix::io::pread(&b, &mut bb[..1], off)?;
            return Ok(nb == 0);
        }
        let mut got = 0;
        while got < na {
            let nb = rustix::io::pread(&b, &mut bb[got..na], off + got as u64)?;
            if nb == 0 {
                return Ok(false);
            }
            got += nb;
        }
        if ba[..na] != bb[..na] {
            return Ok(false);
        }
        off += na as u64;
    }
}

/// Remove `name` below `dir`, recursively if it is a directory. Missing is fine.
pub fn remove_all_at(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    let dir = dir.as_fd();
    let Some(st) = lstat_optional(dir, name)? else {
        return Ok(());
    };
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
        let sub = open_dir_nofollow(dir, name)?;
        for n in read_names(&sub)? {
            remove_all_at(&sub, &n)?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

pub fn timestamps(st: &rustix::fs::Stat) -> rustix::fs::Timestamps {
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Display a path that may not be UTF-8: invalid bytes are shown as `\xNN`.
pub fn display_path(p: &Path) -> String {
    let bytes = p.as_os_str().as_bytes();
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `dir.open_dir(rel)`, with `shown` (how messages name `dir`) and `rel`
/// in the error: a failure at shutdown must say which directory.
pub fn open_subdir(dir: &cap_std_ext::cap_std::fs::Dir, shown: &str, rel: impl AsRef<Path>) -> anyhow::Result<cap_std_ext::cap_std::fs::Dir> {
    use anyhow::Context as _;
    let rel = rel.as_ref();
    dir.open_dir(rel).with_context(|| format!("Opening {}/{}", shown.trim_end_matches('/'), rel.display()))
}
