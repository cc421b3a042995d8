//! The files in `/run` that tie a running system to its sysroot:
//! `/run/ostree-booted` and the staged deployment record.
//!
//! They live in `/run` (a tmpfs), so a reboot forgets a staged deployment
//! that was not finalized; the deployment directory it names is then an
//! orphan that the next cleanup removes.

use anyhow::{anyhow, Context, Result};
use camino::Utf8Path;
use cap_std_ext::cap_std::{self, fs::Dir};
use cap_std_ext::dirext::CapStdExtDirExt;

use crate::formats::runstate::{Booted, Staged};

pub const BOOTED: &str = "/run/ostree-booted";
pub const STAGED: &str = "/run/ostree/staged-deployment";
pub const STAGED_LOCKED: &str = "/run/ostree/staged-deployment-locked";

/// `/run/ostree-booted`, if the system was booted from a deployment.
pub fn read_booted() -> Result<Option<Booted>> {
    match std::fs::read(BOOTED) {
        Ok(d) => Ok(Some(Booted::parse(&d).map_err(|e| anyhow!("{BOOTED}: {e}"))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!(e).context(format!("Reading {BOOTED}"))),
    }
}

/// The staged record, if any. A malformed file is an error naming it.
pub fn read_staged() -> Result<Option<Staged>> {
    match std::fs::read(STAGED) {
        Ok(d) => Ok(Some(Staged::parse(&d).map_err(|e| {
            anyhow!("{STAGED}: {e} (remove the file to discard the staged deployment)")
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!(e).context(format!("Reading {STAGED}"))),
    }
}

fn run_ostree() -> Result<Dir> {
    std::fs::create_dir_all("/run/ostree").context("Creating /run/ostree")?;
    Ok(Dir::open_ambient_dir("/run/ostree", cap_std::ambient_authority())?)
}

/// Write the staged record atomically (0644, as ostree does).
pub fn write_staged(s: &Staged) -> Result<()> {
    use cap_std_ext::cap_std::fs::{Permissions, PermissionsExt};
    run_ostree()?
        .atomic_write_with_perms("staged-deployment", s.serialize(), Permissions::from_mode(0o644))
        .with_context(|| format!("Writing {STAGED}"))
}

/// The /etc diff of stage time (see `etcmerge::DiffCache`), for the
/// deployment pair named on its first line.
pub const ETC_CACHE: &str = "/run/treeboot/etc-diff-cache";

fn cache_header(staged: &str, merge: &str) -> String {
    format!("treeboot-etc-diff-cache 1 {staged} {merge}\n")
}

/// Keep the stage-time diff for finalize. Failing to write it only costs
/// speed at shutdown, so it is a warning.
pub fn write_etc_cache(staged: &str, merge: &str, cache: &crate::etcmerge::DiffCache) {
    let r = (|| -> Result<()> {
        std::fs::create_dir_all("/run/treeboot")?;
        let d = Dir::open_ambient_dir("/run/treeboot", cap_std::ambient_authority())?;
        let mut data = cache_header(staged, merge).into_bytes();
        data.extend(cache.serialize());
        d.atomic_write("etc-diff-cache", data)?;
        Ok(())
    })();
    if let Err(e) = r {
        eprintln!("warning: writing {ETC_CACHE}: {e:#}");
    }
}

/// The stage-time diff, if it is there and for this pair.
pub fn read_etc_cache(staged: &str, merge: &str) -> Option<crate::etcmerge::DiffCache> {
    let data = std::fs::read(ETC_CACHE).ok()?;
    let header = cache_header(staged, merge);
    let rest = data.strip_prefix(header.as_bytes())?;
    crate::etcmerge::DiffCache::parse(rest)
}

/// Forget the staged deployment (record, legacy lock file, diff cache).
pub fn remove_staged() -> Result<()> {
    for p in [STAGED, STAGED_LOCKED, ETC_CACHE] {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!(e).context(format!("Removing {p}"))),
        }
    }
    Ok(())
}

/// The legacy "download now, apply later" lock file.
pub fn legacy_locked() -> bool {
    Utf8Path::new(STAGED_LOCKED).exists()
}

/// Where finalize reports a failure for the next boot to see.
pub const FAILURE_STAMP: &str = "boot/ostree/finalize-failure.stamp";

/// boot-complete's copy of a reported failure, shown by status until the
/// next reboot.
pub const FAILURE_RUN_COPY: &str = "/run/treeboot/last-finalize-failure";
