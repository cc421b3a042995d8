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

use super::deploy::set_immutable;
use super::Writer;
use crate::failpoint;
use crate::formats::names::parse_deploy_name;
use crate::fsutil;

#[derive(Debug, Default, Serialize)]
pub struct CleanupStats {
    pub deployments_removed: Vec<String>,
    pub kernel_dirs_removed: Vec<String>,
    pub boot_dirs_removed: Vec<String>,
    pub objects_pruned: i32,
    pub bytes_freed: u64,
}

pub fn cleanup(w: &mut Writer) -> Result<CleanupStats> {
    cleanup_with(w, true)
}

/// Cleanup; `prune` says whether to prune the repository too.
#[context("Cleaning up the sysroot")]
pub fn cleanup_with(w: &mut Writer, prune: bool) -> Result<CleanupStats> {
    let mut stats = CleanupStats::default();
    let s = &w.sysroot;
    let root = &s.root;
    let bv = s.bootversion;
    let other = 1 - bv;
    let has_loader = root.symlink_metadata_optional("boot/loader")?.is_some();

    // Boot-version leftovers.
    let boot = root.open_dir("boot")?;
    let ostree = root.open_dir("ostree")?;
    failpoint::hit("cleanup::boot-versions");
    if has_loader {
        for name in [format!("loader.{other}")] {
            if boot.symlink_metadata_optional(&name)?.is_some() {
                fsutil::remove_all_at(&boot, name.as_ref())?;
                stats.boot_dirs_removed.push(format!("boot/{name}"));
            }
        }
        for name in [
            format!("boot.{other}"),
            format!("boot.{other}.0"),
            format!("boot.{other}.1"),
            format!("boot.{bv}.{}", 1 - s.subbootversion),
        ] {
            if ostree.symlink_metadata_optional(&name)?.is_some() {
                fsutil::remove_all_at(&ostree, name.as_ref())?;
                stats.boot_dirs_removed.push(format!("ostree/{name}"));
            }
        }
    }
    boot.remove_file_optional("loader.tmp")?;
    for n in fsutil::read_names(&ostree)? {
        let n = n.to_string_lossy().to_string();
        if n.starts_with("boot.") && n.ends_with(".tmp") {
            ostree.remove_file_optional(&n)?;
        }
    }

    // Deployment directories nothing references.
    let live: HashSet<String> = s
        .deployments
        .iter()
        .map(|d| format!("{}/{}", d.stateroot, d.name()))
        .collect();
    let booted = crate::sysroot::booted_root_devino(&s.path)?;
    let staged: HashSet<String> = s.staged.iter().map(|d| format!("{}/{}", d.stateroot, d.name())).collect();
    for stateroot in s.stateroots()? {
        let rel = format!("ostree/deploy/{stateroot}/deploy");
        let Some(dd) = root.open_dir_optional(&rel)? else { continue };
        for n in fsutil::read_names(&dd)? {
            let Some(n) = n.to_str() else { continue };
            let base = n.strip_suffix(".origin").unwrap_or(n);
            if parse_deploy_name(base).is_none() {
                continue;
            }
            let key = format!("{stateroot}/{base}");
            if live.contains(&key) || staged.contains(&key) {
                continue;
            }
            // Never the running system's own root, even if no entry names it.
            if let (Some(b), Ok(m)) = (booted, rustix::fs::statat(&dd, base, rustix::fs::AtFlags::empty())) {
                if (m.st_dev, m.st_ino) == b {
                    continue;
                }
            }
            failpoint::hit("cleanup::deployment");
            if n.ends_with(".origin") {
                dd.remove_file_optional(n)?;
            } else {
                set_immutable(root, &format!("{rel}/{n}"), false)?;
                fsutil::remove_all_at(&dd, n.as_ref()).with_context(|| format!("Removing {rel}/{n}"))?;
                stats.deployments_removed.push(key);
            }
        }
    }

    // Kernel directories nothing references (and interrupted installs).
    let mut live_kernels: HashSet<String> = s
        .deployments
        .iter()
        .map(|d| format!("{}-{}", d.stateroot, d.bootcsum))
        .collect();
    live_kernels.extend(s.staged.iter().map(|d| format!("{}-{}", d.stateroot, d.bootcsum)));
    if let Some(bo) = root.open_dir_optional("boot/ostree")? {
        for n in fsutil::read_names(&bo)? {
            let Some(n) = n.to_str() else { continue };
            let is_kernel_dir = n.starts_with(".tmp-") || n.rsplit_once('-').is_some_and(|(_, c)| c.len() == 64);
            if !is_kernel_dir || live_kernels.contains(n) {
                continue;
            }
            failpoint::hit("cleanup::kernel");
            fsutil::remove_all_at(&bo, n.as_ref())?;
            stats.kernel_dirs_removed.push(n.to_string());
        }
    }

    // Refs and the repository.
    failpoint::hit("cleanup::refs");
    let csums: Vec<String> = s.deployments.iter().map(|d| d.csum.clone()).collect();
    if has_loader {
        crate::sysroot::refs::set_deployment_refs(&s.root, bv, s.subbootversion, &csums)?;
    }
    crate::timing::step("cleanup: boot versions, deployments, kernels, refs");
    // Without the object store (finalize at shutdown) pruning waits for the
    // next cleanup: it is not needed for booting.
    if prune && w.has_store() {
        failpoint::hit("cleanup::prune");
        let (n, bytes) = w.store()?.prune()?;
        stats.objects_pruned = n;
        stats.bytes_freed = bytes;
    }
    crate::timing::step("cleanup: prune");
    Ok(stats)
}
