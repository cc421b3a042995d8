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
        v
    }
}

/// What `name` in the kernel directory `kd` (shown as `shown`) is: None when
/// absent; a regular file, directly or through symlinks that stay inside
/// the deployment (libostree follows them too); an error naming it for a
/// dangling symlink, one that leaves the tree, or anything else. `deploy`
/// is the deployment root, the sandbox symlinks resolve in (an absolute
/// target cannot be followed safely and is refused).
fn kernel_file(deploy: &Dir, srcdir: &Utf8Path, name: &str, shown: &str) -> Result<Option<bool>> {
    let rel = srcdir.join(name);
    let Some(m) = deploy.symlink_metadata_optional(rel.as_std_path())? else { return Ok(None) };
    if m.is_file() {
        return Ok(Some(false));
    }
    if !m.is_symlink() {
        bail!("{shown}/{rel} is not a regular file");
    }
    let target = deploy.read_link_contents(rel.as_std_path()).map(|t| t.display().to_string()).unwrap_or_default();
    match deploy.metadata(rel.as_std_path()) {
        Ok(t) if t.is_file() => Ok(Some(true)),
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
    if let Some(modules) = deploy.open_dir_optional("usr/lib/modules")? {
        for kver in fsutil::read_names(&modules)? {
            let Ok(kver) = kver.into_string() else { continue };
            if !modules.symlink_metadata(&kver)?.is_dir() {
                continue;
            }
            let srcdir = Utf8PathBuf::from(format!("usr/lib/modules/{kver}"));
            if kernel_file(deploy, &srcdir, "vmlinuz", display)?.is_some() {
                found.push(kver);
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
    let mut initramfs = None;
    for name in ["initramfs.img", "initramfs"] {
        if kernel_file(deploy, &srcdir, name, display)?.is_some() {
            initramfs = Some(name.to_string());
            break;
        }
    }
    let devicetree = kernel_file(deploy, &srcdir, "devicetree", display)?.map(|_| "devicetree".to_string());
    let hmac = kernel_file(deploy, &srcdir, ".vmlinuz.hmac", display)?.map(|_| ".vmlinuz.hmac".to_string());
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
    Ok(Kernel {
        kver,
        srcdir,
        vmlinuz: "vmlinuz".into(),
        initramfs,
        devicetree,
        hmac,
        bootcsum: hex::encode(h.finalize()),
    })
}

/// Bytes the kernel files take.
pub fn kernel_size(deploy: &Dir, k: &Kernel) -> Result<u64> {
    let mut total = 0;
    for (src, _) in k.files() {
        total += deploy.metadata(k.srcdir.join(&src).as_std_path())?.len();
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
    let tmpname = format!(".tmp-{dirname}");
    fsutil::remove_all_at(&bootostree, tmpname.as_ref())?;
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
            rustix::fs::fchmod(&d, Mode::from_raw_mode(0o644))?;
            rustix::fs::fdatasync(&d).with_context(|| format!("Syncing {dname}"))?;
        }
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
        // Without an initramfs.
        let none = find_kernel(&tree(&[("vmlinuz", "K")]), "x").unwrap();
        assert!(none.initramfs.is_none() && none.bootcsum != plain.bootcsum);
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
}
