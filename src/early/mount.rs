//! Mount system calls and an undo list: every mount prepare-root makes is
//! recorded, and unless the whole sequence succeeds they are all undone, so
//! a failure never leaves a half-mounted root behind.

use std::ffi::CString;
use std::io;

use camino::{Utf8Path, Utf8PathBuf};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

pub use libc::{MS_BIND, MS_MOVE, MS_NODEV, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SHARED, MS_SILENT, MS_SLAVE};

/// `mount(2)`, with errors naming the operation.
///
/// Through rustix's safe calls: a bind, a move or a propagation change goes
/// through the call made for it (which passes no file system type and no
/// data, as callers do), everything else (new mounts, remounts) through
/// `rustix::mount::mount` with the flags as given. `MS_SILENT` only quiets
/// the kernel when it sets up or reconfigures a superblock, so the bind and
/// move calls, which cannot pass it, lose nothing.
pub fn mount(src: Option<&str>, target: &Utf8Path, fstype: Option<&str>, flags: libc::c_ulong, data: Option<&str>) -> io::Result<()> {
    sys_mount(src, target, fstype, flags, data).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "mount({}, {target}, {}, {}): {e}",
                src.unwrap_or("none"),
                fstype.unwrap_or("none"),
                describe(flags)
            ),
        )
    })
}

fn sys_mount(src: Option<&str>, target: &Utf8Path, fstype: Option<&str>, flags: libc::c_ulong, data: Option<&str>) -> io::Result<()> {
    let invalid = |what| io::Error::new(io::ErrorKind::InvalidInput, what);
    let bits = u32::try_from(flags).map_err(|_| invalid("mount flags out of range"))?;
    let data = data.map(CString::new).transpose().map_err(|_| invalid("NUL in mount data"))?;
    let propagation = MS_PRIVATE | MS_SLAVE | MS_SHARED | libc::MS_UNBINDABLE;
    let no_data = fstype.is_none() && data.is_none();
    let op = flags & !MS_SILENT;
    match src {
        Some(src) if no_data && op == MS_BIND => rustix::mount::mount_bind(src, target.as_str())?,
        Some(src) if no_data && op == MS_BIND | MS_REC => rustix::mount::mount_bind_recursive(src, target.as_str())?,
        Some(src) if no_data && op == MS_MOVE => rustix::mount::mount_move(src, target.as_str())?,
        // The kernel ignores the source of a propagation change ("none").
        _ if no_data && (op & !MS_REC).count_ones() == 1 && op & propagation != 0 => {
            rustix::mount::mount_change(target.as_str(), MountPropagationFlags::from_bits_retain(bits))?
        }
        // New mounts and remounts (which ignore source and type: "" then).
        _ => rustix::mount::mount(
            src.unwrap_or(""),
            target.as_str(),
            fstype.unwrap_or(""),
            MountFlags::from_bits_retain(bits),
            data.as_deref(),
        )?,
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

/// `umount2(target, MNT_DETACH)`.
pub fn umount_detach(target: &Utf8Path) -> io::Result<()> {
    rustix::mount::unmount(target.as_str(), UnmountFlags::DETACH)?;
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

    /// Where the mounts were made, in order.
    pub fn targets(&self) -> Vec<Utf8PathBuf> {
        self.made.clone()
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
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
