//! remount: after switch-root, make the mounts writable that should be, as
//! recorded by prepare-root in `/run/ostree-booted`:
//! - `/sysroot` writable, unless `sysroot-ro`;
//! - `/var` writable;
//! - `/etc` writable when the sysroot is read-only and `/etc` is not transient
//!   (prepare-root gave it a bind of its own for this).
//!
//! A path that is not a mount point, or already as wanted, is left alone.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::mount::{is_mountpoint, mount, MS_BIND, MS_RDONLY, MS_REMOUNT, MS_SILENT};
use crate::formats::runstate::Booted;

fn is_readonly(path: &Utf8Path) -> Result<bool> {
    let v = rustix::fs::statvfs(path.as_str()).with_context(|| format!("statvfs {path}"))?;
    Ok(v.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Make `path` writable or read-only; returns what was done, if anything.
pub fn set_writable(path: &Utf8Path, writable: bool) -> Result<Option<String>> {
    if !is_mountpoint(path) || is_readonly(path)? != writable {
        return Ok(None);
    }
    let ro = if writable { 0 } else { MS_RDONLY };
    // The mount's own flag first (a bind made read-only)...
    mount(None, path, None, MS_REMOUNT | MS_BIND | MS_SILENT | ro, None)
        .with_context(|| format!("Remounting {path} {}", if writable { "read-write" } else { "read-only" }))?;
    // ...then the file system's, when the kernel mounted the root `ro`.
    if writable && is_readonly(path)? {
        mount(None, path, None, MS_REMOUNT | MS_SILENT, None)
            .with_context(|| format!("Remounting the file system of {path} read-write"))?;
    }
    Ok(Some(format!("{path}: {}", if writable { "read-write" } else { "read-only" })))
}

/// Apply the policy below `root` (`/` on a real system).
pub fn remount(root: &Utf8Path, booted: &Booted) -> Result<Vec<String>> {
    let p = |s: &str| -> Utf8PathBuf { root.join(s) };
    let mut done = Vec::new();
    done.extend(set_writable(&p("sysroot"), !booted.sysroot_ro)?);
    done.extend(set_writable(&p("var"), true)?);
    if booted.sysroot_ro && booted.transient_etc.is_none() {
        done.extend(set_writable(&p("etc"), true)?);
    }
    Ok(done)
}
