//! `treeboot cleanup`: remove what no live entry references.
//!
//! Runs after every swap, and on its own. Only ever removes things the live
//! deployment list does not reach: the other boot version's entries and
//! links, the other sub-boot version's links, deployment directories and
//! kernel directories that no deployment uses, temporary names left by an
//! interrupted run. Then it rewrites the `ostree/B/S/I` refs and prunes the
//! repository.

use std::collections::HashSet;

use anyhow::{Context, Result};
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;
use serde::Serialize;

use super::deploy::{backing_path, set_immutable};
use super::Writer;
use crate::bootloader::fat::{self, LoaderLayout, Removal};
use crate::failpoint;
use crate::formats::names::parse_deploy_name;
use crate::fsutil;
use crate::sysroot::Sysroot;

/// `treeboot cleanup --json`: what was removed.
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct CleanupStats {
    pub deployments_removed: Vec<String>,
    pub kernel_dirs_removed: Vec<String>,
    pub boot_dirs_removed: Vec<String>,
    pub objects_pruned: i32,
    pub bytes_freed: u64,
}

/// What cleanup keeps, from the model: every deployment of the list and
/// the staged one (directory, kernel directory, commit), as libostree
/// derives its keep-set from its deployment list, the staged deployment
/// included. (The booted deployment's directory is kept too, by inode, even
/// when no entry names it.)
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeepSet {
    /// `$stateroot/$csum.$serial`.
    pub deployments: HashSet<String>,
    /// `$stateroot-$bootcsum`, the names under /boot/ostree.
    pub kernels: HashSet<String>,
    /// The commits of the list, in its order (for the `ostree/B/S/I` refs).
    pub listed_commits: Vec<String>,
    /// The staged deployment's commit (kept by [`crate::sysroot::refs::STAGED_REF`]).
    pub staged_commit: Option<String>,
}

impl KeepSet {
    pub fn of(s: &Sysroot) -> Self {
        KeepSet {
            deployments: s.listed().map(|d| format!("{}/{}", d.stateroot, d.name())).collect(),
            kernels: s.listed().map(|d| format!("{}-{}", d.stateroot, d.bootcsum)).collect(),
            listed_commits: s.deployments.iter().map(|d| d.csum.clone()).collect(),
            staged_commit: s.staged.as_ref().map(|d| d.csum.clone()),
        }
    }
}

pub fn cleanup(w: &mut Writer) -> Result<CleanupStats> {
    cleanup_with(w, true)
}

/// Cleanup; `prune` says whether to prune the repository too.
#[context("Cleaning up the sysroot")]
pub fn cleanup_with(w: &mut Writer, prune: bool) -> Result<CleanupStats> {
    let mut stats = CleanupStats::default();
    let s = &w.sysroot;
    let has_loader = s.has_loader()?;
    remove_boot_leftovers(s, has_loader, &mut stats)?;
    let keep = KeepSet::of(s);
    remove_unreferenced_deployments(s, &keep, &mut stats)?;
    remove_unused_kernels(s, &keep, &mut stats)?;

    // Refs and the repository.
    failpoint::hit("cleanup::refs");
    if has_loader {
        crate::sysroot::refs::set_deployment_refs(&s.root, s.bootversion, s.subbootversion, &keep.listed_commits, keep.staged_commit.as_deref())?;
    }
    crate::timing::step("cleanup: boot versions, deployments, kernels, refs");
    // Without the object store (finalize at shutdown) pruning waits for the
    // next cleanup: it is not needed for booting.
    if prune && w.has_store() {
        failpoint::hit("cleanup::prune");
        let progress = crate::output::Progress::start("prune", "Pruning the repository", None, false);
        let (n, bytes) = w.store()?.prune()?;
        progress.finish();
        stats.objects_pruned = n;
        stats.bytes_freed = bytes;
    }
    crate::timing::step("cleanup: prune");
    Ok(stats)
}

/// The other boot version's entries and links, the other sub-boot
/// version's links, and temporary names an interrupted swap left.
#[context("Removing the boot versions not in use")]
fn remove_boot_leftovers(s: &Sysroot, has_loader: bool, stats: &mut CleanupStats) -> Result<()> {
    let (bv, other) = (s.bootversion, 1 - s.bootversion);
    let boot = fsutil::open_subdir(&s.root, s.path.as_str(), "boot")?;
    let ostree = fsutil::open_subdir(&s.root, s.path.as_str(), "ostree")?;
    failpoint::hit("cleanup::boot-versions");
    if s.layout == LoaderLayout::Directory {
        // An interrupted swap's list (built, or the old one not yet gone);
        // one Linux cannot read is left for fsck.fat.
        for n in fsutil::read_names(&boot)? {
            let Some(n) = n.to_str().filter(|n| fat::is_build_name(n)) else { continue };
            match fat::remove_dir(&boot, n, &format!("/boot/{n}")) {
                Ok(Removal::Removed) => stats.boot_dirs_removed.push(format!("boot/{n}")),
                Ok(_) => {}
                Err(e) if fat::is_eio(&e) => crate::warn!("/boot/{n} cannot be read (a power cut while it was written; `fsck.fat -a` repairs it): left alone"),
                Err(e) => return Err(e),
            }
        }
    }
    if has_loader {
        let name = format!("loader.{other}");
        if s.layout == LoaderLayout::Symlink && boot.symlink_metadata_optional(&name)?.is_some() {
            fsutil::remove_all_at(&boot, name.as_ref()).with_context(|| format!("Removing /boot/{name}"))?;
            stats.boot_dirs_removed.push(format!("boot/{name}"));
        }
        for name in [
            format!("boot.{other}"),
            format!("boot.{other}.0"),
            format!("boot.{other}.1"),
            format!("boot.{bv}.{}", 1 - s.subbootversion),
        ] {
            if ostree.symlink_metadata_optional(&name)?.is_some() {
                fsutil::remove_all_at(&ostree, name.as_ref()).with_context(|| format!("Removing ostree/{name}"))?;
                stats.boot_dirs_removed.push(format!("ostree/{name}"));
            }
        }
    }
    boot.remove_file_optional("loader.tmp").context("Removing /boot/loader.tmp")?;
    boot.remove_file_optional(crate::bootloader::swap::LOADER_PREV).context("Removing /boot/loader.prev")?;
    for n in fsutil::read_names(&ostree)? {
        let n = n.to_string_lossy().to_string();
        if n.starts_with("boot.") && n.ends_with(".tmp") {
            ostree.remove_file_optional(&n).with_context(|| format!("Removing ostree/{n}"))?;
        }
    }
    Ok(())
}

/// Deployment directories and origins that nothing in `keep` references;
/// never the running system's own root, even if no entry names it.
#[context("Removing unreferenced deployments")]
fn remove_unreferenced_deployments(s: &Sysroot, keep: &KeepSet, stats: &mut CleanupStats) -> Result<()> {
    let booted = s.booted_root_devino()?;
    for stateroot in s.stateroots()? {
        let rel = format!("ostree/deploy/{stateroot}/deploy");
        let Some(dd) = s.root.open_dir_optional(&rel)? else { continue };
        for n in fsutil::read_names(&dd)? {
            let Some(n) = n.to_str() else { continue };
            let base = n.strip_suffix(".origin").unwrap_or(n);
            if parse_deploy_name(base).is_none() {
                continue;
            }
            let key = format!("{stateroot}/{base}");
            if keep.deployments.contains(&key) {
                continue;
            }
            if let (Some(b), Ok(m)) = (booted, rustix::fs::statat(&dd, base, rustix::fs::AtFlags::empty())) {
                if (m.st_dev, m.st_ino) == b {
                    continue;
                }
            }
            failpoint::hit("cleanup::deployment");
            if n.ends_with(".origin") {
                dd.remove_file_optional(n).with_context(|| format!("Removing {rel}/{n}"))?;
            } else {
                // Its backing directory first, as in libostree: the
                // deployment directory is the source of truth, and one left
                // without its backing is still whole (the next deploy or
                // finalize makes a backing again).
                let path = format!("{rel}/{n}");
                if let Some(backing) = backing_path(&path) {
                    if s.root.symlink_metadata_optional(&backing)?.is_some() {
                        s.root.remove_dir_all(&backing).with_context(|| format!("Removing {backing}"))?;
                    }
                }
                set_immutable(&s.root, &path, false)?;
                fsutil::remove_all_at(&dd, n.as_ref()).with_context(|| format!("Removing {rel}/{n}"))?;
                stats.deployments_removed.push(key);
            }
        }
        // Backing directories whose deployment is gone (an interrupted
        // removal); libostree leaves these.
        let brel = format!("ostree/deploy/{stateroot}/backing");
        let Some(bd) = s.root.open_dir_optional(&brel)? else { continue };
        for n in fsutil::read_names(&bd)? {
            let Some(n) = n.to_str() else { continue };
            if parse_deploy_name(n).is_none() || keep.deployments.contains(&format!("{stateroot}/{n}")) || dd.symlink_metadata_optional(n)?.is_some() {
                continue;
            }
            fsutil::remove_all_at(&bd, n.as_ref()).with_context(|| format!("Removing {brel}/{n}"))?;
        }
    }
    Ok(())
}

/// Kernel directories in /boot/ostree that no deployment in `keep` boots,
/// and interrupted installs (`.tmp-*`).
#[context("Removing unused kernels")]
fn remove_unused_kernels(s: &Sysroot, keep: &KeepSet, stats: &mut CleanupStats) -> Result<()> {
    let Some(bo) = s.root.open_dir_optional("boot/ostree")? else { return Ok(()) };
    // On FAT a cut rename of `.tmp-X` to `X` can leave both names on one
    // directory: fat::remove_dir keeps such a name instead.
    let on_fat = fat::is_fat(&bo)?;
    for n in fsutil::read_names(&bo)? {
        let Some(n) = n.to_str() else { continue };
        let is_kernel_dir = n.starts_with(".tmp-") || n.rsplit_once('-').is_some_and(|(_, c)| c.len() == 64);
        if !is_kernel_dir || n.starts_with(fat::LOST_PREFIX) || keep.kernels.contains(n) {
            continue;
        }
        failpoint::hit("cleanup::kernel");
        if on_fat {
            match fat::remove_dir(&bo, n, &format!("/boot/ostree/{n}")) {
                Ok(Removal::Removed) => {}
                Ok(_) => continue,
                Err(e) if fat::is_eio(&e) => {
                    crate::warn!("/boot/ostree/{n} cannot be read (a power cut while it was written; `fsck.fat -a` repairs it): left alone");
                    continue;
                }
                Err(e) => return Err(e),
            }
        } else {
            fsutil::remove_all_at(&bo, n.as_ref()).with_context(|| format!("Removing /boot/ostree/{n}"))?;
        }
        stats.kernel_dirs_removed.push(n.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysroot::fixture::*;

    #[test]
    fn keep_set_holds_the_list_and_the_staged_deployment() {
        let f = Fixture::new(&[('a', '1'), ('b', '2')]);
        f.boot_into(&format!("{}.0", csum('a')));
        f.stage('c', '3', false);
        let k = KeepSet::of(&f.load().unwrap());
        let dep = |c| format!("{OS}/{}.0", csum(c));
        let kern = |b| format!("{OS}-{}", csum(b));
        assert_eq!(k.deployments, [dep('a'), dep('b'), dep('c')].into_iter().collect());
        assert_eq!(k.kernels, [kern('1'), kern('2'), kern('3')].into_iter().collect());
        assert_eq!(k.listed_commits, [csum('a'), csum('b')]);
        assert_eq!(k.staged_commit, Some(csum('c')));
        // Not booted from it: the record is not this sysroot's, nothing staged.
        let f = Fixture::new(&[('a', '1')]);
        f.stage('c', '3', false);
        let k = KeepSet::of(&f.load().unwrap());
        assert!(!k.deployments.contains(&dep('c')) && k.staged_commit.is_none());
    }
}
