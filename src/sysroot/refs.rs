//! The `ostree/$bootversion/$subbootversion/$index` refs that keep deployed
//! commits from being pruned, written without libostree: loose refs are
//! files `ostree/repo/refs/heads/NAME` holding the checksum and a newline,
//! replaced atomically, as libostree writes them. Emptied directories stay,
//! as libostree leaves them.

use anyhow::{Context, Result};
use cap_std_ext::cap_std::fs::{Dir, Permissions, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;

use crate::fsutil;

fn remove_refs_below(dir: &Dir, rel: &str) -> Result<()> {
    let Some(d) = dir.open_dir_optional(rel)? else { return Ok(()) };
    for n in fsutil::read_names(&d)? {
        let n = n.to_string_lossy().into_owned();
        let p = format!("{rel}/{n}");
        if d.symlink_metadata(&n)?.is_dir() {
            remove_refs_below(dir, &p)?;
        } else {
            dir.remove_file(&p).with_context(|| format!("Removing ref {p}"))?;
        }
    }
    Ok(())
}

/// The ref that keeps the staged deployment's commit from being pruned.
///
/// libostree keeps that commit by putting the staged deployment in the set
/// its prune starts from (`ostree_repo_prune_from_reachable`), which the
/// `ostree` crate does not bind; a ref does the same for any pruner, under
/// `ostree/`, the prefix whose refs every writer (libostree's
/// `generate_deployment_refs` and this module) replaces at each write, so
/// it cannot outlive the staged deployment by more than one write.
pub const STAGED_REF: &str = "ostree/staged";

/// Replace every `ostree/...` ref by `ostree/B/S/I` for each deployment,
/// and [`STAGED_REF`] for the staged deployment's commit, if any.
#[context("Writing the ostree/ refs")]
pub fn set_deployment_refs(root: &Dir, bootversion: u32, subbootversion: u32, csums: &[String], staged: Option<&str>) -> Result<()> {
    let heads = root.open_dir("ostree/repo/refs/heads").context("Opening ostree/repo/refs/heads")?;
    remove_refs_below(&heads, "ostree")?;
    if let Some(c) = staged {
        heads.create_dir_all("ostree")?;
        heads
            .atomic_write_with_perms(STAGED_REF, format!("{c}\n"), Permissions::from_mode(0o644))
            .with_context(|| format!("Writing ref {STAGED_REF}"))?;
    }
    for (i, c) in csums.iter().enumerate() {
        let dir = format!("ostree/{bootversion}/{subbootversion}");
        heads.create_dir_all(&dir)?;
        heads
            .atomic_write_with_perms(format!("{dir}/{i}"), format!("{c}\n"), Permissions::from_mode(0o644))
            .with_context(|| format!("Writing ref {dir}/{i}"))?;
    }
    Ok(())
}
