//! `treeboot init-fs` and `treeboot os-init`: the empty layouts, as
//! `ostree admin init-fs` and `os-init` make them.

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use cap_std_ext::cap_std::fs::{Dir, DirBuilder, DirBuilderExt, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;

use crate::formats::names::valid_stateroot;

fn mkdir_mode(d: &Dir, name: &str, mode: u32) -> Result<()> {
    if d.symlink_metadata_optional(name)?.is_some() {
        return Ok(());
    }
    let mut b = DirBuilder::new();
    b.mode(mode);
    d.create_dir_with(name, &b).with_context(|| format!("Creating {name}"))?;
    // The umask must not change the mode ostree gives it.
    rustix::fs::chmodat(d, name, rustix::fs::Mode::from_raw_mode(mode), rustix::fs::AtFlags::empty())?;
    Ok(())
}

#[context("Initializing sysroot {path}")]
pub fn init_fs(path: &Utf8Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("Creating {path}"))?;
    let d = Dir::open_ambient_dir(path, cap_std_ext::cap_std::ambient_authority())?;
    for (name, mode) in [
        ("boot", 0o755),
        ("dev", 0o755),
        ("home", 0o755),
        ("proc", 0o755),
        ("run", 0o755),
        ("sys", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("ostree", 0o755),
        ("ostree/deploy", 0o755),
    ] {
        mkdir_mode(&d, name, mode)?;
    }
    if d.symlink_metadata_optional("ostree/repo")?.is_none() {
        #[cfg(feature = "libostree")]
        crate::repo::Repo::create(&d)?;
        #[cfg(not(feature = "libostree"))]
        bail!("cannot create ostree/repo: treeboot was built without the libostree feature");
    }
    Ok(())
}

#[context("Initializing stateroot {name}")]
pub fn os_init(sysroot: &Utf8Path, name: &str) -> Result<()> {
    if !valid_stateroot(name) {
        bail!("{name:?} is not a valid stateroot name");
    }
    let d = Dir::open_ambient_dir(sysroot, cap_std_ext::cap_std::ambient_authority())
        .with_context(|| format!("Opening {sysroot}"))?;
    if d.symlink_metadata_optional("ostree/deploy")?.is_none() {
        bail!("{sysroot} is not an ostree sysroot: run `treeboot init-fs {sysroot}` first");
    }
    let base = format!("ostree/deploy/{name}");
    mkdir_mode(&d, &base, 0o755)?;
    // An empty var, as libostree since 2024.3 (commit f81b9fa1, "Rework
    // /var handling to act like Docker `VOLUME /var`"): the first deployment
    // fills it (deploy::seed_var). 2022.7 made lib, log, tmp, lock and run
    // here.
    mkdir_mode(&d, &format!("{base}/var"), 0o755)?;
    Ok(())
}

/// The subset of systemd's tmpfiles.d `var.conf` that libostree makes in a
/// stateroot's var for an OS without `usr/lib/tmpfiles.d`: lib, log,
/// tmp (1777), run -> ../run, lock -> ../run/lock. Existing entries stay.
#[context("Creating the legacy /var directories")]
pub fn legacy_var_init(var: &Dir) -> Result<()> {
    for (n, mode) in [("tmp", 0o1777), ("lib", 0o755), ("log", 0o755)] {
        if var.symlink_metadata_optional(n)?.is_none() {
            var.create_dir(n)?;
            var.set_permissions(n, cap_std_ext::cap_std::fs::Permissions::from_mode(mode))?;
        }
    }
    for (n, target) in [("run", "../run"), ("lock", "../run/lock")] {
        if var.symlink_metadata_optional(n)?.is_none() {
            var.symlink(target, n)?;
        }
    }
    Ok(())
}
