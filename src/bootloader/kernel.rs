//! Finding a deployment's kernel, its boot checksum, and installing it into
//! `/boot/ostree/$stateroot-$bootcsum/`.

use std::io::Read;
use std::os::fd::AsFd;

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use cap_std_ext::cap_std::fs::Dir;
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;
use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest, Sha256};

use crate::failpoint;
use crate::fsutil;

crate::refusal!(
    /// `/boot` cannot hold the new kernel (for exit codes and callers).
    NoSpace
);

/// Where a deployment keeps its kernel and what it is called in `/boot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub kver: String,
    /// Directory relative to the deployment root (`usr/lib/modules/$kver`).
    pub srcdir: Utf8PathBuf,
    pub vmlinuz: String,
    /// `initramfs.img`, or `initramfs` (libostree looks for both).
    pub initramfs: Option<String>,
    pub devicetree: Option<String>,
    /// `.vmlinuz.hmac`, the kernel's HMAC for FIPS mode: installed as
    /// `.vmlinuz-$kver.hmac` beside the kernel, where dracut's fips module
    /// looks for it; not part of the boot checksum (as in libostree).
    pub hmac: Option<String>,
    /// A `dtb/` directory of device trees (when there is no single
    /// `devicetree`): copied whole into /boot, named by `fdtdir`.
    pub dtb: bool,
    /// `aboot.img`, the Android boot image of aboot devices: installed as
    /// `aboot-$kver.img`, named by `aboot` and `abootcfg`; not part of the
    /// boot checksum (as in libostree since 2025.3).
    pub aboot: Option<String>,
    pub bootcsum: String,
}

impl Kernel {
    pub fn boot_dirname(&self, stateroot: &str) -> String {
        format!("{stateroot}-{}", self.bootcsum)
    }
    /// (source name in srcdir, name in /boot) pairs.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut v = vec![(self.vmlinuz.clone(), format!("vmlinuz-{}", self.kver))];
        if let Some(i) = &self.initramfs {
            v.push((i.clone(), format!("initramfs-{}.img", self.kver)));
        }
        if let Some(d) = &self.devicetree {
            v.push((d.clone(), format!("devicetree-{}", self.kver)));
        }
        if let Some(h) = &self.hmac {
            v.push((h.clone(), format!(".vmlinuz-{}.hmac", self.kver)));
        }
        if let Some(a) = &self.aboot {
            v.push((a.clone(), format!("aboot-{}.img", self.kver)));
        }
        v
    }
    /// Which optional files its directory in /boot holds.
    pub fn boot_files(&self) -> BootFiles {
        BootFiles {
            initramfs: self.initramfs.is_some(),
            devicetree: self.devicetree.is_some(),
            dtb: self.dtb,
            aboot: self.aboot.is_some(),
        }
    }
}

/// The optional files of a kernel directory in
/// `/boot/ostree/$stateroot-$bootcsum/`, which its boot entry names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootFiles {
    /// `initramfs-$kver.img` (`initrd`).
    pub initramfs: bool,
    /// `devicetree-$kver` (`devicetree`).
    pub devicetree: bool,
    /// A `dtb/` directory (`fdtdir`).
    pub dtb: bool,
    /// `aboot-$kver.img` (`aboot`, `abootcfg`).
    pub aboot: bool,
}

impl BootFiles {
    /// Read off the names of a kernel directory in /boot.
    pub fn from_names(names: &[String], kver: &str, has_dtb_dir: bool) -> Self {
        let has = |n: String| names.contains(&n);
        BootFiles {
            initramfs: has(format!("initramfs-{kver}.img")),
            devicetree: has(format!("devicetree-{kver}")),
            dtb: has_dtb_dir,
            aboot: has(format!("aboot-{kver}.img")),
        }
    }
}

/// Whether the kernel directory `srcdir` has `name`: false when absent;
/// true for a regular file, directly or through symlinks that stay inside
/// the deployment (libostree follows them too); an error naming it (with
/// `shown`) for a dangling symlink, one that leaves the tree, or anything
/// else. `deploy` is the deployment root, the sandbox symlinks resolve in
/// (an absolute target cannot be followed safely and is refused).
fn kernel_file(deploy: &Dir, srcdir: &Utf8Path, name: &str, shown: &str) -> Result<bool> {
    let rel = srcdir.join(name);
    let Some(m) = deploy.symlink_metadata_optional(rel.as_std_path())? else { return Ok(false) };
    if m.is_file() {
        return Ok(true);
    }
    if !m.is_symlink() {
        bail!("{shown}/{rel} is not a regular file");
    }
    let target = deploy.read_link_contents(rel.as_std_path()).map(|t| t.display().to_string()).unwrap_or_default();
    match deploy.metadata(rel.as_std_path()) {
        Ok(t) if t.is_file() => Ok(true),
        Ok(_) => bail!("{shown}/{rel} is a symlink to {target}, which is not a regular file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{shown}/{rel} is a dangling symlink (to {target})"),
        Err(_) => bail!("{shown}/{rel} is a symlink to {target}, which leaves the deployment's tree"),
    }
}

fn hash_file(dir: &Dir, name: &Utf8Path, h: &mut Sha256) -> Result<u64> {
    let mut f = dir.open(name.as_std_path()).with_context(|| format!("Opening {name}"))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
}

/// Find the kernel of the deployment whose root is `deploy`
/// (`display` names it in errors).
#[context("Finding the kernel in {display}")]
pub fn find_kernel(deploy: &Dir, display: &str) -> Result<Kernel> {
    let mut found = Vec::new();
    // Kernel directories with a FIPS HMAC but no kernel, named if no
    // kernel is found: the image meant to ship one.
    let mut hmac_only = Vec::new();
    if let Some(modules) = deploy.open_dir_optional("usr/lib/modules")? {
        for kver in fsutil::read_names(&modules)? {
            let Ok(kver) = kver.into_string() else { continue };
            if !modules.symlink_metadata(&kver)?.is_dir() {
                continue;
            }
            let srcdir = Utf8PathBuf::from(format!("usr/lib/modules/{kver}"));
            if kernel_file(deploy, &srcdir, "vmlinuz", display)? {
                found.push(kver);
            } else if deploy.symlink_metadata_optional(srcdir.join(".vmlinuz.hmac").as_std_path())?.is_some() {
                hmac_only.push(format!("{srcdir}/.vmlinuz.hmac"));
            }
        }
    }
    let kver = match found.as_slice() {
        [one] => one.clone(),
        [] => {
            let legacy = |dir: &str| -> Result<bool> {
                Ok(match deploy.open_dir_optional(dir)? {
                    Some(d) => fsutil::read_names(&d)?.iter().any(|n| n.to_string_lossy().starts_with("vmlinuz-")),
                    None => false,
                })
            };
            if !hmac_only.is_empty() {
                bail!("{display}: {} exists, but there is no kernel beside it (vmlinuz)", hmac_only.join(", "));
            }
            if legacy("usr/lib/ostree-boot")? || legacy("boot")? {
                bail!("{display}: no usr/lib/modules/$kver/vmlinuz (kernels only in the legacy usr/lib/ostree-boot or /boot layout are not supported)");
            }
            bail!("{display}: the commit has no kernel (expected usr/lib/modules/$kver/vmlinuz)");
        }
        many => bail!(
            "{display}: the commit has {} kernels ({}); exactly one usr/lib/modules/$kver/vmlinuz is supported",
            many.len(),
            many.join(", ")
        ),
    };
    let srcdir = Utf8PathBuf::from(format!("usr/lib/modules/{kver}"));
    let present = |name: &str| -> Result<Option<String>> { Ok(kernel_file(deploy, &srcdir, name, display)?.then(|| name.to_string())) };
    let initramfs = match present("initramfs.img")? {
        Some(i) => Some(i),
        None => present("initramfs")?,
    };
    let devicetree = present("devicetree")?;
    let dtb = devicetree.is_none() && deploy.symlink_metadata_optional(srcdir.join("dtb").as_std_path())?.is_some_and(|m| m.is_dir());
    let hmac = present(".vmlinuz.hmac")?;
    let aboot = present("aboot.img")?;
    // bootcsum: sha256 over vmlinuz, then the initramfs, then the devicetree
    // (through symlinks: their contents, as libostree reads them).
    let mut h = Sha256::new();
    hash_file(deploy, &srcdir.join("vmlinuz"), &mut h)?;
    if let Some(i) = &initramfs {
        hash_file(deploy, &srcdir.join(i), &mut h)?;
    }
    if let Some(d) = &devicetree {
        hash_file(deploy, &srcdir.join(d), &mut h)?;
    }
    if dtb {
        hash_dir(deploy, &srcdir.join("dtb"), display, &mut h)?;
    }
    Ok(Kernel {
        kver,
        srcdir,
        vmlinuz: "vmlinuz".into(),
        initramfs,
        devicetree,
        hmac,
        dtb,
        aboot,
        bootcsum: hex::encode(h.finalize()),
    })
}

/// The names in `rel`, sorted by bytes (libostree sorts with strcmp).
fn sorted_names(deploy: &Dir, rel: &Utf8Path) -> Result<Vec<String>> {
    let d = deploy.open_dir(rel.as_std_path()).with_context(|| format!("Opening {rel}"))?;
    let mut names = Vec::new();
    for n in fsutil::read_names(&d)? {
        names.push(n.into_string().map_err(|n| anyhow!("{rel}/{}: a name that is not UTF-8", n.to_string_lossy()))?);
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// A device tree directory into the boot checksum, as libostree's
/// `checksum_dir_recurse` does: names in byte order, directories
/// recursed, files and the targets of symlinks hashed (a dangling symlink
/// adds nothing). Anything else (a FIFO, a device node) is refused: libostree
/// would block opening a FIFO.
fn hash_dir(deploy: &Dir, rel: &Utf8Path, display: &str, h: &mut Sha256) -> Result<()> {
    for name in sorted_names(deploy, rel)? {
        let p = rel.join(&name);
        let m = deploy.symlink_metadata(p.as_std_path())?;
        if m.is_dir() {
            hash_dir(deploy, &p, display, h)?;
        } else if m.is_file() {
            hash_file(deploy, &p, h)?;
        } else if m.is_symlink() {
            match deploy.metadata(p.as_std_path()) {
                Ok(t) if t.is_file() => {
                    hash_file(deploy, &p, h)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Ok(_) => bail!("{display}: {p} is a symlink to something that is not a regular file"),
                Err(_) => bail!("{display}: {p} is a symlink that leaves the deployment's tree"),
            }
        } else {
            bail!("{display}: {p} is not a regular file, a symlink or a directory");
        }
    }
    Ok(())
}

/// Copy the device tree directory `rel` of the deployment to `name` in
/// `dst`: directories with their mode and owner, files copied and synced,
/// symlinks as symlinks (as libostree's `copy_dir_recurse`, without xattrs).
fn copy_dtb(deploy: &Dir, rel: &Utf8Path, dst: &Dir, name: &str) -> Result<()> {
    use cap_std_ext::cap_std::fs::{MetadataExt, PermissionsExt};
    let m = deploy.symlink_metadata(rel.as_std_path())?;
    dst.create_dir(name).with_context(|| format!("Creating {name}"))?;
    let sub = dst.open_dir(name)?;
    for child in sorted_names(deploy, rel)? {
        let p = rel.join(&child);
        let cm = deploy.symlink_metadata(p.as_std_path())?;
        if cm.is_dir() {
            copy_dtb(deploy, &p, &sub, &child)?;
        } else if cm.is_file() {
            let s = fsutil::open_file_nofollow(deploy, p.as_std_path().as_os_str()).with_context(|| format!("Opening {p}"))?;
            let d = rustix::fs::openat(&sub, child.as_str(), OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))?;
            fsutil::copy_fd_contents(&s, &d).map_err(|e| anyhow!(e).context(format!("Copying {p}")))?;
            rustix::fs::fchown(&d, Some(rustix::fs::Uid::from_raw(cm.uid())), Some(rustix::fs::Gid::from_raw(cm.gid())))?;
            rustix::fs::fchmod(&d, Mode::from_raw_mode(cm.mode() & 0o7777))?;
            rustix::fs::fdatasync(&d).with_context(|| format!("Syncing {name}/{child}"))?;
        } else if cm.is_symlink() {
            let target = deploy.read_link_contents(p.as_std_path())?;
            rustix::fs::symlinkat(target.as_path(), &sub, child.as_str()).with_context(|| format!("Creating symlink {name}/{child}"))?;
        }
    }
    sub.set_permissions(".", cap_std_ext::cap_std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    let fd = rustix::fs::openat(&sub, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fchown(&fd, Some(rustix::fs::Uid::from_raw(m.uid())), Some(rustix::fs::Gid::from_raw(m.gid())))?;
    rustix::fs::fsync(&fd)?;
    Ok(())
}

/// Bytes a device tree directory takes (its files).
fn dir_size(deploy: &Dir, rel: &Utf8Path) -> Result<u64> {
    let mut total = 0;
    for name in sorted_names(deploy, rel)? {
        let p = rel.join(&name);
        let m = deploy.symlink_metadata(p.as_std_path())?;
        if m.is_dir() {
            total += dir_size(deploy, &p)?;
        } else if m.is_file() {
            total += m.len();
        }
    }
    Ok(total)
}

/// Bytes the kernel files take.
pub fn kernel_size(deploy: &Dir, k: &Kernel) -> Result<u64> {
    let mut total = 0;
    for (src, _) in k.files() {
        total += deploy.metadata(k.srcdir.join(&src).as_std_path())?.len();
    }
    if k.dtb {
        total += dir_size(deploy, &k.srcdir.join("dtb"))?;
    }
    Ok(total)
}

/// Install the kernel of the deployment rooted at `deploy` into
/// `boot/ostree/$stateroot-$bootcsum/`. Nothing to do if that directory
/// exists: its name is the checksum of its contents. Otherwise the files go
/// into a temporary directory, are synced, and the directory is renamed into
/// place, so a crash never leaves a half-filled kernel directory under the
/// final name. Files are hardlinked when `/boot` is the same file system as
/// the deployment, else copied and fdatasync'ed. Returns whether anything
/// was written.
#[context("Installing kernel {} into /boot/ostree", k.boot_dirname(stateroot))]
pub fn install_kernel(sysroot: &Dir, deploy: &Dir, stateroot: &str, k: &Kernel) -> Result<bool> {
    let dirname = k.boot_dirname(stateroot);
    sysroot
        .ensure_dir_with("boot/ostree", &cap_std_ext::cap_std::fs::DirBuilder::new())
        .context("Creating /boot/ostree")?;
    let bootostree = sysroot.open_dir("boot/ostree")?;
    if bootostree.symlink_metadata_optional(&dirname)?.is_some() {
        return Ok(false);
    }
    // Refuse early when it cannot fit, rather than failing halfway.
    let need = kernel_size(deploy, k)?;
    let same_fs = {
        let a = rustix::fs::fstat(deploy.as_fd())?;
        let b = rustix::fs::fstat(bootostree.as_fd())?;
        a.st_dev == b.st_dev
    };
    let check_space = !(crate::failpoint::ENABLED && std::env::var_os("TREEBOOT_TEST_NO_SPACE_CHECK").is_some());
    if !same_fs && check_space {
        let vfs = rustix::fs::fstatvfs(bootostree.as_fd())?;
        let avail = vfs.f_bavail * vfs.f_frsize;
        // Leave room for the entries and some slack (1 MiB).
        if need + (1 << 20) > avail {
            return Err(NoSpace(format!(
                "not enough space in /boot: the kernel and initramfs need {} KiB (+1 MiB margin), {} KiB are free",
                need.div_ceil(1024),
                avail / 1024
            ))
            .into());
        }
    }
    // On FAT a cut install can leave a `.tmp-` directory Linux cannot read
    // (its cluster chain broken, see bootloader::fat): it is left for
    // fsck.fat and the next name is used.
    let mut tmpname = format!(".tmp-{dirname}");
    for k in 1..10 {
        match fsutil::remove_all_at(&bootostree, tmpname.as_ref()) {
            Ok(()) => break,
            Err(e) if e.raw_os_error() == Some(libc::EIO) && k < 9 => {
                crate::warn!("/boot/ostree/{tmpname} cannot be read (a cut install on FAT; `fsck.fat -a` repairs it): left alone");
                tmpname = format!(".tmp-{k}-{dirname}");
            }
            Err(e) => return Err(anyhow!(e).context(format!("Removing a stale /boot/ostree/{tmpname}"))),
        }
    }
    rustix::fs::mkdirat(&bootostree, tmpname.as_str(), Mode::from_raw_mode(0o755))?;
    // On any error below, the half-filled temporary directory goes, so a
    // full /boot is not left fuller.
    struct TmpGuard<'a>(&'a Dir, &'a str, bool);
    impl Drop for TmpGuard<'_> {
        fn drop(&mut self) {
            if self.2 {
                let _ = fsutil::remove_all_at(self.0, self.1.as_ref());
            }
        }
    }
    let mut guard = TmpGuard(&bootostree, &tmpname, true);
    let tmp = bootostree.open_dir(&tmpname)?;
    let src = deploy.open_dir(k.srcdir.as_std_path())?;
    // FAT has no modes (the mount's umask gives them), and refuses a
    // chmod to another.
    let on_fat = crate::bootloader::fat::is_fat(&bootostree)?;
    let mut progress = crate::output::Progress::start("kernel", &format!("Copying kernel {} into /boot", k.kver), Some(need), true);
    for (sname, dname) in k.files() {
        failpoint::hit("kernel::before-file");
        // A symlink is copied from its target (opened inside the tree), never
        // linked: /boot gets the file, not a link into the deployment.
        let is_file = src.symlink_metadata(&sname).is_ok_and(|m| m.is_file());
        let linked = same_fs
            && is_file
            && rustix::fs::linkat(&src, sname.as_str(), &tmp, dname.as_str(), AtFlags::empty()).is_ok();
        if !linked {
            let s: std::os::fd::OwnedFd = deploy
                .open(k.srcdir.join(&sname).as_std_path())
                .with_context(|| format!("Opening {}/{sname}", k.srcdir))?
                .into_std()
                .into();
            let d = rustix::fs::openat(
                &tmp,
                dname.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )?;
            fsutil::copy_fd_contents(&s, &d).map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    anyhow!("/boot is full while writing {dname} ({need} bytes needed in all)")
                } else {
                    anyhow!(e).context(format!("Copying {dname}"))
                }
            })?;
            if !on_fat {
                rustix::fs::fchmod(&d, Mode::from_raw_mode(0o644))?;
            }
            rustix::fs::fdatasync(&d).with_context(|| format!("Syncing {dname}"))?;
        }
        progress.inc(src.metadata(&sname).map(|m| m.len()).unwrap_or(0));
    }
    progress.finish();
    if k.dtb {
        copy_dtb(deploy, &k.srcdir.join("dtb"), &tmp, "dtb")?;
    }
    let tmpfd = rustix::fs::openat(&tmp, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fsync(&tmpfd)?;
    failpoint::hit("kernel::before-rename");
    rustix::fs::renameat(&bootostree, tmpname.as_str(), &bootostree, dirname.as_str())?;
    guard.2 = false;
    let bfd = rustix::fs::openat(&bootostree, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fsync(&bfd)?;
    failpoint::hit("kernel::after-rename");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std_ext::{cap_std, cap_tempfile};

    const K: &str = "usr/lib/modules/6.1";

    /// A deployment root with `usr/lib/modules/6.1/` holding `files`.
    fn tree(files: &[(&str, &str)]) -> cap_tempfile::TempDir {
        let d = cap_tempfile::tempdir(cap_std::ambient_authority()).unwrap();
        d.create_dir_all(K).unwrap();
        for (name, content) in files {
            d.write(format!("{K}/{name}"), content).unwrap();
        }
        d
    }

    /// A symlink cap-std would refuse to make (it leaves the directory).
    fn raw_symlink(d: &Dir, target: &str, path: &str) {
        rustix::fs::symlinkat(target, d.as_fd(), path).unwrap();
    }

    fn err(d: &Dir) -> String {
        format!("{:#}", find_kernel(d, "commit x").unwrap_err())
    }

    #[test]
    fn the_layouts_libostree_reads() {
        let plain = find_kernel(&tree(&[("vmlinuz", "K"), ("initramfs.img", "I")]), "x").unwrap();
        assert_eq!(plain.files(), [("vmlinuz".into(), "vmlinuz-6.1".into()), ("initramfs.img".into(), "initramfs-6.1.img".into())]);
        // `initramfs` without .img is libostree's second name.
        let bare = find_kernel(&tree(&[("vmlinuz", "K"), ("initramfs", "I")]), "x").unwrap();
        assert_eq!(bare.initramfs.as_deref(), Some("initramfs"));
        assert_eq!(bare.bootcsum, plain.bootcsum, "the same contents, the same boot checksum");
        // The FIPS HMAC is installed where dracut looks, outside the checksum.
        let fips = find_kernel(&tree(&[("vmlinuz", "K"), ("initramfs.img", "I"), (".vmlinuz.hmac", "H")]), "x").unwrap();
        assert!(fips.files().contains(&(".vmlinuz.hmac".into(), ".vmlinuz-6.1.hmac".into())));
        assert_eq!(fips.bootcsum, plain.bootcsum);
        // An aboot image: installed with the kernel, outside the checksum.
        let aboot = find_kernel(&tree(&[("vmlinuz", "K"), ("initramfs.img", "I"), ("aboot.img", "A")]), "x").unwrap();
        assert!(aboot.files().contains(&("aboot.img".into(), "aboot-6.1.img".into())));
        assert!(aboot.boot_files().aboot && !plain.boot_files().aboot);
        assert_eq!(aboot.bootcsum, plain.bootcsum);
        // Without an initramfs.
        let none = find_kernel(&tree(&[("vmlinuz", "K")]), "x").unwrap();
        assert!(none.initramfs.is_none() && none.bootcsum != plain.bootcsum);
    }

    /// A FIPS HMAC whose kernel is missing: the error names the HMAC.
    #[test]
    fn an_hmac_without_a_kernel_is_named() {
        let d = tree(&[("initramfs.img", "I"), (".vmlinuz.hmac", "H")]);
        let e = err(&d);
        assert!(e.contains(&format!("{K}/.vmlinuz.hmac exists, but there is no kernel beside it")), "{e}");
    }

    #[test]
    fn a_symlinked_kernel_is_read_through_and_copied_as_a_file() {
        let d = tree(&[("initramfs.img", "I")]);
        d.create_dir_all("usr/share/kernel").unwrap();
        d.write("usr/share/kernel/vmlinuz-real", "K").unwrap();
        d.symlink("../../../share/kernel/vmlinuz-real", format!("{K}/vmlinuz")).unwrap();
        let k = find_kernel(&d, "x").unwrap();
        let plain = find_kernel(&tree(&[("vmlinuz", "K"), ("initramfs.img", "I")]), "x").unwrap();
        assert_eq!(k.bootcsum, plain.bootcsum, "the boot checksum is of the contents");
        // Installed: /boot gets the file, not a link into the tree.
        d.create_dir_all("boot").unwrap();
        assert!(install_kernel(&d, &d, "os", &k).unwrap());
        let installed = format!("boot/ostree/os-{}/vmlinuz-6.1", k.bootcsum);
        assert!(d.symlink_metadata(&installed).unwrap().is_file());
        assert_eq!(d.read_to_string(&installed).unwrap(), "K");
    }

    #[test]
    fn bad_kernel_symlinks_are_named() {
        let d = tree(&[]);
        d.symlink("vmlinuz-gone", format!("{K}/vmlinuz")).unwrap();
        let e = err(&d);
        assert!(e.contains("usr/lib/modules/6.1/vmlinuz is a dangling symlink (to vmlinuz-gone)"), "{e}");
        let d = tree(&[]);
        raw_symlink(&d, "/boot/vmlinuz-6.1", &format!("{K}/vmlinuz"));
        let e = err(&d);
        assert!(e.contains("leaves the deployment's tree"), "{e}");
        let d = tree(&[]);
        raw_symlink(&d, "../../../../../../etc/passwd", &format!("{K}/vmlinuz"));
        assert!(err(&d).contains("leaves the deployment's tree"));
        let d = tree(&[("vmlinuz", "K")]);
        d.symlink("nowhere", format!("{K}/initramfs.img")).unwrap();
        assert!(err(&d).contains("initramfs.img is a dangling symlink"));
    }

    #[test]
    fn a_device_tree_directory() {
        let d = tree(&[("vmlinuz", "K"), ("initramfs.img", "I")]);
        d.create_dir_all(format!("{K}/dtb/vendor")).unwrap();
        d.write(format!("{K}/dtb/vendor/a.dtb"), "A").unwrap();
        let k = find_kernel(&d, "x").unwrap();
        assert!(k.dtb && k.devicetree.is_none());
        let plain = find_kernel(&tree(&[("vmlinuz", "K"), ("initramfs.img", "I")]), "x").unwrap();
        assert_ne!(k.bootcsum, plain.bootcsum, "the device trees are part of the boot checksum");
        d.create_dir_all("boot").unwrap();
        install_kernel(&d, &d, "os", &k).unwrap();
        assert_eq!(d.read_to_string(format!("boot/ostree/os-{}/dtb/vendor/a.dtb", k.bootcsum)).unwrap(), "A");
        // A single devicetree file wins, as in libostree.
        d.write(format!("{K}/devicetree"), "DT").unwrap();
        let k = find_kernel(&d, "x").unwrap();
        assert!(!k.dtb && k.devicetree.is_some());
    }

    #[test]
    fn junk_in_a_device_tree_directory_is_named() {
        let d = tree(&[("vmlinuz", "K")]);
        d.create_dir_all(format!("{K}/dtb")).unwrap();
        rustix::fs::mknodat(d.as_fd(), format!("{K}/dtb/pipe").as_str(), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o644), 0).unwrap();
        let e = err(&d);
        assert!(e.contains("usr/lib/modules/6.1/dtb/pipe is not a regular file, a symlink or a directory"), "{e}");
        let d = tree(&[("vmlinuz", "K")]);
        d.create_dir_all(format!("{K}/dtb")).unwrap();
        raw_symlink(&d, "/etc/shadow", &format!("{K}/dtb/x.dtb"));
        assert!(err(&d).contains("dtb/x.dtb is a symlink that leaves the deployment's tree"));
    }
}
