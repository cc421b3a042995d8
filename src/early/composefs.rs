//! composefs at boot: a deployment's `.ostree.cfs` (an EROFS image of the
//! tree's metadata, written at deploy time) mounted over the repository's
//! objects with overlayfs, as libostree's prepare-root mounts it through
//! libcomposefs.
//!
//! The mount, in order:
//!  1. the image is opened and its composefs header checked (magic, flags);
//!  2. EROFS is mounted read-only with the new mount API (`fsopen`,
//!     `fsconfig`, `fsmount`), from the open file (`/proc/self/fd/N`,
//!     file-backed EROFS of Linux 6.12), or from a read-only autoclear loop
//!     device over it where the kernel answers `ENOTBLK`; `noacl` unless
//!     the image says it has ACLs; then attached at a scratch directory
//!     under /run (overlayfs before 6.15 takes no detached layer);
//!  3. overlayfs on the target: the image's mount as the only lower layer, the
//!     objects as a data-only layer (`lowerdir=IMAGE::OBJECTS`; `:` on
//!     kernels older than 6.5, which answer `EINVAL`), `metacopy=on` and
//!     `redirect_dir=on` (a file of the image names its object in
//!     `trusted.overlay.redirect`), `verity=require` when asked (the kernel
//!     then opens no object whose fs-verity digest is not the one the image
//!     records); read-only, or with an upper and work directory for a
//!     transient root;
//!  4. the image's mount is detached and its directory removed (overlayfs
//!     holds it; nothing else can reach it).
//!
//! The result is one mount on the target, recorded in the caller's undo
//! list: a failure at any step leaves nothing mounted.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{anyhow, bail, Context, Result};
use camino::Utf8Path;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use super::mount::{MountUndo, MS_RDONLY, MS_SILENT};

/// The image's name in a deployment directory (libostree's).
pub const IMAGE_NAME: &str = ".ostree.cfs";

/// The composefs header at the start of the image (libcomposefs's
/// `lcfs_erofs_header_s`, little-endian).
const CFS_MAGIC: u32 = 0xd078_629a;
const CFS_FLAGS_HAS_ACL: u32 = 1;
/// EROFS's superblock: its magic at byte 1024.
const EROFS_SB_OFFSET: usize = 1024;
const EROFS_MAGIC: u32 = 0xe0f5_e1e2;

/// What the image's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub has_acl: bool,
    pub composefs_version: u32,
}

/// Check the first bytes of an image (at least 1028 of them: the composefs
/// header and the EROFS superblock's magic). Pure, for the unit tests.
pub fn parse_header(b: &[u8]) -> Result<Header, String> {
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    if b.len() < 16 {
        return Err(format!("{} bytes, too short for a composefs header (truncated?)", b.len()));
    }
    if u32_at(0) != CFS_MAGIC {
        return Err(format!("not a composefs image (magic {:#010x}, composefs's is {CFS_MAGIC:#010x})", u32_at(0)));
    }
    if b.len() < EROFS_SB_OFFSET + 4 {
        return Err(format!("{} bytes, too short for an EROFS superblock (truncated?)", b.len()));
    }
    if u32_at(EROFS_SB_OFFSET) != EROFS_MAGIC {
        return Err(format!("no EROFS superblock at byte {EROFS_SB_OFFSET} (corrupt?)"));
    }
    Ok(Header { version: u32_at(4), has_acl: u32_at(8) & CFS_FLAGS_HAS_ACL != 0, composefs_version: u32_at(12) })
}

/// How the overlay is made.
#[derive(Debug, Clone, Default)]
pub struct MountOptions<'a> {
    /// `verity=require`: objects without the image's fs-verity digest
    /// cannot be opened.
    pub require_verity: bool,
    /// A transient root: the upper and work directories (on a tmpfs); the
    /// overlay is then writable.
    pub upper: Option<(&'a Utf8Path, &'a Utf8Path)>,
}

/// overlayfs's escape for a path in `lowerdir=` and such: `\`, `,` and `:`
/// are taken as separators unless escaped with a backslash.
pub fn escape_option(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The overlay's option string. `data_only` is the `::` separator of a
/// data-only lower layer (Linux 6.5).
pub fn overlay_data(image_mnt: &Utf8Path, objects: &Utf8Path, opts: &MountOptions, data_only: bool) -> String {
    let sep = if data_only { "::" } else { ":" };
    let mut d = format!(
        "metacopy=on,redirect_dir=on,lowerdir={}{sep}{}",
        escape_option(image_mnt.as_str()),
        escape_option(objects.as_str())
    );
    if let Some((upper, work)) = opts.upper {
        d.push_str(&format!(",upperdir={},workdir={}", escape_option(upper.as_str()), escape_option(work.as_str())));
    }
    if opts.require_verity {
        d.push_str(",verity=require");
    }
    d
}

/// Mount the composefs `image` with the objects of `objects` on `target`
/// (recorded in `undo`). Returns the header read.
///
/// overlayfs takes its layers by path, and before Linux 6.15 it refuses a
/// detached mount as one ("failed to clone lowerpath"): the image's mount
/// is attached at `scratch` (created, then removed) for the overlay mount,
/// and detached right after. Without a scratch directory (PID 1 mode, which
/// has no /run yet) the detached mount is used directly, which needs 6.15.
pub fn mount_image(
    undo: &mut MountUndo,
    image: &Utf8Path,
    objects: &Utf8Path,
    target: &Utf8Path,
    scratch: Option<&Utf8Path>,
    opts: &MountOptions,
) -> Result<Header> {
    let mut f = std::fs::File::open(image).with_context(|| format!("Opening the composefs image {image}"))?;
    let mut head = Vec::with_capacity(EROFS_SB_OFFSET + 4);
    (&mut f).take((EROFS_SB_OFFSET + 4) as u64).read_to_end(&mut head).with_context(|| format!("Reading {image}"))?;
    let header = parse_header(&head).map_err(|e| anyhow!("The composefs image {image}: {e}"))?;
    match std::fs::symlink_metadata(objects) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("composefs: the objects {objects} are not a directory"),
        Err(e) => bail!("composefs: the objects {objects}: {e}"),
    }
    let lower = mount_erofs(&f, image, header.has_acl).with_context(|| format!("Mounting the composefs image {image} (EROFS)"))?;
    let what = || format!("Mounting the composefs image {image} over {objects} on {target}");
    let Some(scratch) = scratch else {
        let lower_path = format!("/proc/self/fd/{}", lower.as_raw_fd());
        mount_overlay(undo, Utf8Path::new(&lower_path), objects, target, opts)
            .map_err(|e| anyhow!("{e:#} (without an initramfs, composefs needs Linux 6.15 or later)"))
            .with_context(what)?;
        return Ok(header);
    };
    std::fs::create_dir_all(scratch).with_context(|| format!("Creating {scratch}"))?;
    let made = rustix::mount::move_mount(
        &lower,
        "",
        rustix::fs::CWD,
        scratch.as_str(),
        rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| anyhow!("attaching the image's mount at {scratch}: {e}"))
    .and_then(|()| {
        drop(lower);
        let r = mount_overlay(undo, scratch, objects, target, opts);
        // The overlay holds the image's mount; ours goes either way.
        if let Err(e) = super::mount::umount_detach(scratch) {
            eprintln!("treeboot: detaching {scratch}: {e}");
        }
        r
    });
    let _ = std::fs::remove_dir(scratch);
    made.with_context(what)?;
    Ok(header)
}

/// Step 2: a detached EROFS mount of the open image, or of a loop device
/// over it.
fn mount_erofs(f: &std::fs::File, image: &Utf8Path, has_acl: bool) -> Result<OwnedFd> {
    let src = format!("/proc/self/fd/{}", f.as_raw_fd());
    match fsmount_erofs(&src, has_acl) {
        Ok(fd) => return Ok(fd),
        Err(e) if e == rustix::io::Errno::NOTBLK => {}
        Err(e) => return Err(anyhow!("erofs from {src}: {e} (is the image corrupt, or EROFS missing from the kernel?)")),
    }
    // Without file-backed EROFS: a loop device, closed once mounted
    // (autoclear detaches it when the last mount of it goes).
    let (dev, path) = crate::sys::loop_attach_readonly(f.as_fd(), image.as_str())
        .with_context(|| format!("Setting up a loop device for {image}"))?;
    let r = fsmount_erofs(&path, has_acl).map_err(|e| anyhow!("erofs from {path}: {e} (is the image corrupt?)"));
    drop(dev);
    r
}

fn fsmount_erofs(source: &str, has_acl: bool) -> rustix::io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen("erofs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    rustix::mount::fsconfig_set_string(&fs, "source", source)?;
    rustix::mount::fsconfig_set_flag(&fs, "ro")?;
    if !has_acl {
        rustix::mount::fsconfig_set_flag(&fs, "noacl")?;
    }
    rustix::mount::fsconfig_create(&fs)?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::MOUNT_ATTR_RDONLY)
}

/// Step 3: the overlay on the target.
fn mount_overlay(undo: &mut MountUndo, image_mnt: &Utf8Path, objects: &Utf8Path, target: &Utf8Path, opts: &MountOptions) -> Result<()> {
    let flags = if opts.upper.is_some() { MS_SILENT } else { MS_RDONLY | MS_SILENT };
    let data = overlay_data(image_mnt, objects, opts, true);
    match undo.mount(Some("composefs"), target, Some("overlay"), flags, Some(&data)) {
        Ok(()) => Ok(()),
        // Before Linux 6.5 there are no data-only layers: the objects are
        // then an ordinary lower layer (libcomposefs falls back the same way).
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !opts.require_verity => {
            let legacy = overlay_data(image_mnt, objects, opts, false);
            undo.mount(Some("composefs"), target, Some("overlay"), flags, Some(&legacy)).map_err(|e2| anyhow!("{e}; then {e2}"))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_head(magic: u32, flags: u32, erofs: u32) -> Vec<u8> {
        let mut b = vec![0u8; 2048];
        b[0..4].copy_from_slice(&magic.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..12].copy_from_slice(&flags.to_le_bytes());
        b[12..16].copy_from_slice(&2u32.to_le_bytes());
        b[1024..1028].copy_from_slice(&erofs.to_le_bytes());
        b
    }

    #[test]
    fn header_checks() {
        let h = parse_header(&image_head(CFS_MAGIC, 1, EROFS_MAGIC)).unwrap();
        assert_eq!(h, Header { version: 1, has_acl: true, composefs_version: 2 });
        assert!(!parse_header(&image_head(CFS_MAGIC, 0, EROFS_MAGIC)).unwrap().has_acl);
        assert!(parse_header(&image_head(0x1234, 0, EROFS_MAGIC)).unwrap_err().contains("not a composefs image"));
        assert!(parse_header(&image_head(CFS_MAGIC, 0, 0)).unwrap_err().contains("no EROFS superblock"));
        assert!(parse_header(&image_head(CFS_MAGIC, 0, EROFS_MAGIC)[..600]).unwrap_err().contains("truncated"));
        assert!(parse_header(&[1, 2]).unwrap_err().contains("truncated"));
    }

    #[test]
    fn overlay_options() {
        let o = MountOptions::default();
        assert_eq!(
            overlay_data(Utf8Path::new("/run/l"), Utf8Path::new("/sysroot/ostree/repo/objects"), &o, true),
            "metacopy=on,redirect_dir=on,lowerdir=/run/l::/sysroot/ostree/repo/objects"
        );
        let (u, w) = (Utf8Path::new("/run/u"), Utf8Path::new("/run/w"));
        let o = MountOptions { require_verity: true, upper: Some((u, w)) };
        assert_eq!(
            overlay_data(Utf8Path::new("/a,b"), Utf8Path::new("/c:d"), &o, false),
            "metacopy=on,redirect_dir=on,lowerdir=/a\\,b:/c\\:d,upperdir=/run/u,workdir=/run/w,verity=require"
        );
    }
}
