//! The writing and reading operations behind each command, each one a
//! sequence of named steps over the sysroot model.

pub mod assess;
pub mod cleanup;
pub mod composefs;
pub mod deploy;
pub mod diff;
pub mod health;
pub mod init;
pub mod lifecycle;
pub mod softreboot;
pub mod stage;
pub mod status;
pub mod upgrade;
pub mod verify;

use anyhow::{anyhow, Context, Result};
use cap_std_ext::cap_std::fs::{Dir, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;

use crate::bootloader::kernel::BootFiles;
use crate::bootloader::swap::{self, BootConfigKey, BootDeployment, SwapResult};
use crate::formats::osrelease;
use crate::fsutil;
use crate::repo::ObjectStore;
use crate::sysroot::opts::SysrootOpts;
use crate::sysroot::{Deployment, Sysroot, SysrootLock};

/// An open sysroot with its write lock and, for operations that check out
/// or prune, the object store.
pub struct Writer {
    pub sysroot: Sysroot,
    /// What shapes the entries (environment switches, repository config),
    /// read when the writer opens, so that a bad config refuses the
    /// operation before it changes anything.
    pub opts: SysrootOpts,
    store: Option<Box<dyn ObjectStore>>,
    _lock: SysrootLock,
}

impl Writer {
    /// Take `/ostree/lock`, load the sysroot (what we read is then what no
    /// other writer is changing) and open the repository with libostree.
    #[cfg(feature = "libostree")]
    pub fn open(path: &camino::Utf8Path) -> Result<Self> {
        let mut w = Self::open_without_store(path)?;
        w.store = Some(Box::new(crate::repo::Repo::open(&w.sysroot.root)?));
        Ok(w)
    }

    /// The object store; operations that need one are only run through
    /// [`Writer::open`].
    pub fn store(&self) -> Result<&dyn ObjectStore> {
        self.store.as_deref().ok_or_else(|| anyhow!("this operation needs the object store (run it with treeboot-writer)"))
    }

    pub fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// [`Writer::open`] without libostree: enough to write a deployment list
    /// (finalize at shutdown).
    pub fn open_without_store(path: &camino::Utf8Path) -> Result<Self> {
        let root = Dir::open_ambient_dir(path, cap_std_ext::cap_std::ambient_authority())
            .with_context(|| format!("Opening {path}"))?;
        if root.symlink_metadata_optional("ostree")?.is_none() {
            anyhow::bail!("{path} is not an ostree sysroot: {path}/ostree does not exist");
        }
        let lock = SysrootLock::acquire(&root)?;
        let sysroot = Sysroot::load(path)?;
        let opts = SysrootOpts::load(&sysroot.root)?;
        Ok(Self {
            sysroot,
            opts,
            store: None,
            _lock: lock,
        })
    }
}

/// The os-release title name of the deployment rooted at `deploy`.
pub fn deployment_os_name(deploy: &Dir) -> Result<String> {
    for p in ["usr/lib/os-release", "etc/os-release"] {
        if let Some(t) = deploy.read_to_string_optional(p)? {
            return Ok(osrelease::title_name(&t));
        }
    }
    Ok("(Unknown)".into())
}

/// The kernel version installed for an existing deployment, from the names
/// in its `/boot/ostree/$stateroot-$bootcsum/` directory.
/// The kernel version and the optional files of a deployment's kernel
/// directory in /boot.
#[context("Reading /boot/ostree/{}-{}", d.stateroot, d.bootcsum)]
pub(crate) fn installed_kernel(root: &Dir, d: &Deployment) -> Result<(String, BootFiles)> {
    let dir = root
        .open_dir(format!("boot/ostree/{}-{}", d.stateroot, d.bootcsum))
        .map_err(|e| anyhow!("kernel directory of deployment {} is missing: {e}", d.name()))?;
    let names: Vec<String> = fsutil::read_names(&dir)?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .collect();
    let kver = names
        .iter()
        .find_map(|n| n.strip_prefix("vmlinuz-"))
        .ok_or_else(|| anyhow!("no vmlinuz-* file"))?
        .to_string();
    let dtb = dir.symlink_metadata_optional("dtb")?.is_some_and(|m| m.is_dir());
    let files = BootFiles::from_names(&names, &kver, dtb);
    Ok((kver, files))
}

/// Rewrite deployment `d`'s origin after `edit` (its other groups and keys
/// kept), atomically: `pin`, and the boot assessment's failure record.
pub fn edit_origin(w: &Writer, d: &Deployment, edit: impl FnOnce(&mut crate::formats::keyfile::KeyFile)) -> Result<()> {
    let mut origin = d
        .origin
        .clone()
        .ok_or_else(|| anyhow!("deployment {} has no origin file {}", d.name(), d.origin_path()))?;
    edit(&mut origin);
    w.sysroot
        .root
        .atomic_write_with_perms(d.origin_path(), origin.serialize(), cap_std_ext::cap_std::fs::Permissions::from_mode(0o644))
        .map_err(|e| anyhow!("Writing {}: {e}", d.origin_path()))
}

/// The swap's view of an existing deployment.
pub fn boot_deployment(sysroot: &Sysroot, d: &Deployment) -> Result<BootDeployment> {
    let (kver, files) = installed_kernel(&sysroot.root, d)?;
    let deploy = fsutil::open_subdir(&sysroot.root, sysroot.path.as_str(), d.path())?;
    Ok(BootDeployment {
        stateroot: d.stateroot.clone(),
        csum: d.csum.clone(),
        serial: d.serial,
        bootcsum: d.bootcsum.clone(),
        kargs: d.kargs.clone(),
        kver,
        files,
        // As the boot loader counted them (GRUB's grubenv folded into the
        // name); (0, 0) for an entry that is not counted.
        tries: d.entry_file.as_ref().map(|_| d.tries.unwrap_or((0, 0))),
        pid1_init: if files.initramfs { None } else { swap::pid1_init(&deploy)? },
        os_name: deployment_os_name(&deploy)?,
        version: sysroot.commit_version(&d.csum)?,
    })
}

/// The live entries, for the "only links change" test.
pub fn current_keys(sysroot: &Sysroot) -> Vec<BootConfigKey> {
    sysroot
        .deployments
        .iter()
        .map(|d| {
            let mut k = d.kargs.clone();
            k.remove_key("ostree");
            BootConfigKey {
                stateroot: d.stateroot.clone(),
                bootcsum: d.bootcsum.clone(),
                kargs: k.to_cmdline(),
                title: d.entry.as_ref().and_then(|e| e.get("title").map(String::from)),
                tries: d.entry_file.as_deref().map(crate::formats::bls::entry_tries),
            }
        })
        .collect()
}

/// Write a new deployment list, then update refs and clean up what the old
/// list alone referenced.
pub fn commit_list(w: &mut Writer, list: &[BootDeployment]) -> Result<SwapResult> {
    let grub = crate::bootloader::grub::generator(&w.sysroot.root)?;
    let r = swap::write_deployments(
        &w.sysroot.root,
        w.sysroot.bootversion,
        w.sysroot.subbootversion,
        &current_keys(&w.sysroot),
        list,
        grub,
        w.opts,
    )?;
    crate::detail!(
        "Boot configuration: {} (ostree/boot.{}.{}), {} deployment(s) listed",
        if r.full { format!("new entries in {}, swapped in", w.sysroot.loader_rel_for(r.bootversion)) } else { "same entries, new deployment links".into() },
        r.bootversion,
        r.subbootversion,
        list.len()
    );
    crate::timing::step("swap");
    let csums: Vec<String> = list.iter().map(|d| d.csum.clone()).collect();
    crate::failpoint::hit("refs::write");
    let staged = w.sysroot.staged.as_ref().map(|d| d.csum.clone());
    crate::sysroot::refs::set_deployment_refs(&w.sysroot.root, r.bootversion, r.subbootversion, &csums, staged.as_deref())?;
    crate::timing::step("refs");
    // Pruning walks every reachable object: only worth it when a commit
    // lost its last deployment. (`treeboot cleanup` always prunes.)
    let dropped_commit = w.sysroot.deployments.iter().any(|d| !csums.contains(&d.csum));
    w.sysroot = w.sysroot.reload()?;
    // The new list is live: what cleanup meets from here (a stray file, a
    // directory it cannot remove) is said, and the write still succeeds, as
    // with libostree; the next cleanup tries again.
    if let Err(e) = cleanup::cleanup_with(w, dropped_commit) {
        crate::warn!("the new deployment list is in place, but cleaning up failed (run `treeboot cleanup` again): {e:#}");
    }
    crate::timing::step("cleanup");
    Ok(r)
}
