//! Finding a deployment's kernel, its boot checksum, and installing it into
//! `/boot/ostree/$stateroot-$bootcsum/`.

use std::io::Read;
use std::os::fd::AsFd;

use anyhow::{anyhow, bail, Context, Result};
use camino::Utf8PathBuf;
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
    pub initramfs: Option<String>,
    pub devicetree: Option<String>,
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
        v
    }
}

fn hash_file(dir: &Dir, name: &str, h: &mut Sha256) -> Result<u64> {
    let mut f = dir.open(name).with_context(|| format!("Opening {name}"))?;
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
            let Some(kd) = modules.open_dir_optional(&kver)? else { continue };
            if kd.symlink_metadata_optional("vmlinuz")?.is_some_and(|m| m.is_file()) {
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
    let kd = deploy.open_dir(srcdir.as_std_path())?;
    let initramfs = kd
        .symlink_metadata_optional("initramfs.img")?
        .filter(|m| m.is_file())
        .map(|_| "initramfs.img".to_string());
    let devicetree = kd
        .symlink_metadata_optional("devicetree")?
        .filter(|m| m.is_file())
        .map(|_| "devicetree".to_string());
    // bootcsum: sha256 over vmlinuz, then the initramfs, then the devicetree.
    let mut h = Sha256::new();
    hash_file(&kd, "vmlinuz", &mut h)?;
    if let Some(i) = &initramfs {
        hash_file(&kd, i, &mut h)?;
    }
    if let Some(d) = &devicetree {
        hash_file(&kd, d, &mut h)?;
    }
    Ok(Kernel {
        kver,
        srcdir,
        vmlinuz: "vmlinuz".into(),
        initramfs,
        devicetree,
        bootcsum: hex::encode(h.finalize()),
    })
}

/// Bytes the kernel files take.
pub fn kernel_size(deploy: &Dir, k: &Kernel) -> Result<u64> {
    let kd = deploy.open_dir(k.srcdir.as_std_path())?;
    let mut total = 0;
    for (src, _) in k.files() {
        total += kd.metadata(&src)?.len();
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
        let linked = same_fs
            && rustix::fs::linkat(&src, sname.as_str(), &tmp, dname.as_str(), AtFlags::empty()).is_ok();
        if !linked {
            let s = fsutil::open_file_nofollow(&src, sname.as_ref())?;
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
