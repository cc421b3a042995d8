//! Mount system calls and an undo list: every mount prepare-root makes is
//! recorded, and unless the whole sequence succeeds they are all undone, so
//! a failure never leaves a half-mounted root behind.

use std::ffi::CString;
use std::io;

use camino::{Utf8Path, Utf8PathBuf};

pub use libc::{MS_BIND, MS_MOVE, MS_NODEV, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SHARED, MS_SILENT, MS_SLAVE};

fn c(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// `mount(2)`, with errors naming the operation.
pub fn mount(src: Option<&str>, target: &Utf8Path, fstype: Option<&str>, flags: libc::c_ulong, data: Option<&str>) -> io::Result<()> {
    let src = src.map(c).transpose()?;
    let target_c = c(target.as_str())?;
    let fstype = fstype.map(c).transpose()?;
    let data = data.map(c).transpose()?;
    let r = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref().map_or(std::ptr::null(), |s| s.as_ptr() as *const libc::c_void),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "mount({}, {target}, {}, {}): {e}",
                src.as_ref().map_or("none".to_string(), |s| s.to_string_lossy().into_owned()),
                fstype.as_ref().map_or("none".to_string(), |s| s.to_string_lossy().into_owned()),
                describe(flags)
            ),
        ));
    }
    Ok(())
}

fn describe(flags: libc::c_ulong) -> String {
    let mut v = Vec::new();
    for (f, n) in [
        (MS_BIND, "bind"),
        (MS_MOVE, "move"),
        (MS_REMOUNT, "remount"),
        (MS_RDONLY, "ro"),
        (MS_REC, "rec"),
        (MS_PRIVATE, "private"),
        (MS_SLAVE, "slave"),
        (MS_SHARED, "shared"),
    ] {
        if flags & f != 0 {
            v.push(n);
        }
    }
    if v.is_empty() {
        "0".into()
    } else {
        v.join("|")
    }
}

pub fn umount_detach(target: &Utf8Path) -> io::Result<()> {
    let t = c(target.as_str())?;
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The mounts made so far; dropping it without `commit` unmounts them in
/// reverse order.
#[derive(Default)]
pub struct MountUndo {
    made: Vec<Utf8PathBuf>,
}

impl MountUndo {
    /// Mount and remember the target for undoing.
    pub fn mount(&mut self, src: Option<&str>, target: &Utf8Path, fstype: Option<&str>, flags: libc::c_ulong, data: Option<&str>) -> io::Result<()> {
        mount(src, target, fstype, flags, data)?;
        if flags & (MS_REMOUNT | MS_PRIVATE | MS_SLAVE | MS_SHARED) == 0 {
            self.made.push(target.to_owned());
        }
        Ok(())
    }

    /// Forget the mounts: they stay.
    pub fn commit(mut self) {
        self.made.clear();
    }
}

impl Drop for MountUndo {
    fn drop(&mut self) {
        for t in self.made.iter().rev() {
            if let Err(e) = umount_detach(t) {
                eprintln!("treeboot: undoing the mount on {t}: {e}");
            }
        }
    }
}

/// Whether `path` is a mount point (its device differs from its parent's,
/// or it is listed in /proc/self/mountinfo).
pub fn is_mountpoint(path: &Utf8Path) -> bool {
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        return info.lines().any(|l| l.split(' ').nth(4).map(unescape).as_deref() == Some(path.as_str()));
    }
    false
}

/// mountinfo escapes spaces and such as `\040`.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() + 0 && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
