//! A soft reboot's next root: `/run/nextroot`, which `systemctl
//! soft-reboot` (systemd >= 254) switches into without a firmware or kernel
//! boot.
//!
//! [`prepare`] builds it with prepare-root's own steps ([`mount_tree`]), so
//! a soft-rebooted system has the mounts a booted one has: the deployment,
//! `/usr` read-only, `/etc` as prepare-root.conf says, and the physical
//! root at `sysroot` inside (read-only when `[sysroot] readonly`). `/var`
//! and `/boot` are left to the generator, which systemd runs again in the
//! new root, as at every boot.
//!
//! The record of the new root is written as `/run/ostree/nextroot-booted`,
//! libostree's name for it, not over `/run/ostree-booted`: until the switch
//! the old deployment is still the one running. systemd carries `/run`
//! across a soft reboot, and there [`promote`] (treeboot-remount, early in
//! the new root) renames it over `/run/ostree-booted` once `/` is the
//! deployment it names; a soft reboot that did not switch leaves a record
//! that names another root, which it removes.

use std::os::unix::fs::MetadataExt;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use cap_std_ext::cap_std::{self, fs::Dir};

use super::mount::{is_mountpoint, mount, umount_detach, MountUndo, MS_BIND, MS_PRIVATE, MS_SILENT};
use super::prepare_root::{
    check_deployment, finish_sysroot, mount_base, mount_tree, read_config, root_record, write_booted_as, write_marker, write_markers, BOOTED,
    OSTREE_GENERATOR_OFF,
};
use crate::formats::prepareroot::PrepareRootConfig;
use crate::formats::runstate::Booted;

/// Where systemd looks for the next root, relative to `/run`.
pub const NEXTROOT: &str = "nextroot";
/// The next root's record, relative to `/run` (libostree's name).
pub const NEXTROOT_BOOTED: &str = "ostree/nextroot-booted";
/// `/run/reboot-required`, written when an update was staged.
const REBOOT_REQUIRED: &str = "reboot-required";
/// The tmpfs of the next root's transient layers, relative to `/run`.
const NEXTROOT_PRIVATE: &str = "treeboot/nextroot";

/// A prepared next root: its record and the mount units of the mounts made
/// for it (each one kept by [`keep_mounts`]' drop-ins).
#[derive(Debug)]
pub struct Prepared {
    pub record: Booted,
    pub units: Vec<String>,
}

/// Build `RUN/nextroot` from the deployment `deployment` (relative to the
/// sysroot mounted at `sysroot`) and write `RUN/ostree/nextroot-booted`.
/// A failure undoes every mount made, removes the drop-ins and writes no
/// record.
pub fn prepare(sysroot: &Utf8Path, deployment: &Utf8Path, run_dir: &Utf8Path) -> Result<Prepared> {
    let root = Dir::open_ambient_dir(sysroot, cap_std::ambient_authority()).with_context(|| format!("Opening the sysroot {sysroot}"))?;
    // The running kernel's arguments (a soft reboot keeps them: the
    // caller refuses a deployment whose arguments differ).
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let config = read_config(&root, deployment, cmdline.trim())?;
    check_deployment(&root, deployment, &config, false)?;
    let deploy = sysroot.join(deployment);
    let target = run_dir.join(NEXTROOT);
    if is_mountpoint(&target) {
        bail!("{target} is prepared already: `treeboot soft-reboot --reset` first");
    }
    std::fs::create_dir_all(&target).with_context(|| format!("Creating {target}"))?;
    let mut record = root_record(&deploy, &config)?;
    let mut undo = MountUndo::default();
    let built = (|| {
        // Each mount is a mount unit to systemd, and a soft reboot stops
        // (so unmounts) every one that conflicts with umount.target, as
        // default dependencies make them: the next root would arrive
        // without its /usr and /sysroot. Drop-ins keep them
        // (systemd-soft-reboot.service(8)). Written before the first
        // mount: systemd loads a mount unit when the mount appears, and
        // then reads the drop-ins it finds (a new directory in
        // /run/systemd/system makes it look again), so no daemon-reload is
        // needed; a unit loaded before is caught by the caller's check.
        keep_mounts(run_dir)?;
        build(&mut undo, &mut record, sysroot, &deploy, &target, &config, run_dir)?;
        let units: Vec<String> = undo.targets().iter().map(|m| crate::formats::unitname::path_unit(m.as_str(), "mount")).collect();
        if let Some(u) = units.iter().find(|u| !kept(u, run_dir)) {
            bail!("{u} is outside the mounts a soft reboot keeps");
        }
        Ok(units)
    })();
    match built {
        Ok(units) => {
            undo.commit();
            Ok(Prepared { record, units })
        }
        Err(e) => {
            drop(undo);
            let _ = forget_kept_mounts(run_dir);
            Err(e)
        }
    }
}

/// The mounts and the record of [`prepare`], below the drop-ins.
fn build(
    undo: &mut MountUndo,
    record: &mut Booted,
    sysroot: &Utf8Path,
    deploy: &Utf8Path,
    target: &Utf8Path,
    config: &PrepareRootConfig,
    run_dir: &Utf8Path,
) -> Result<()> {
    let private = run_dir.join(NEXTROOT_PRIVATE);
    let base = mount_base(undo, sysroot, deploy, target, config, Some(&private))?;
    base.record(record);
    // Private: a bind of a directory of the (shared) physical root joins
    // its peer group, so every mount below it would also appear below the
    // deployment in /sysroot; and when systemd unmounts that copy at the
    // soft reboot, the unmount propagates back and takes ours with it.
    mount(None, target, None, MS_PRIVATE | MS_SILENT, None).with_context(|| format!("Making {target} private"))?;
    record.transient_etc = mount_tree(undo, deploy, target, config, &private, &base)?;
    // The physical root, as prepare-root leaves it at /sysroot (without
    // what is mounted below it: /boot and /var are mounted again anew).
    let inner = target.join("sysroot");
    undo.mount(Some(sysroot.as_str()), &inner, None, MS_BIND | MS_SILENT, None)?;
    finish_sysroot(&inner, config.sysroot_readonly)?;
    write_booted_as(run_dir, NEXTROOT_BOOTED, record)?;
    arm_generators(run_dir)
}

/// ostree-system-generator (ostree-boot) removes its switch
/// `/run/ostree/initramfs-mount-var` at every run, and generators run again
/// in the new root (and at every daemon-reload): put it back, so that
/// there too treeboot's generator alone writes the units.
pub fn arm_generators(run_dir: &Utf8Path) -> Result<()> {
    write_marker(run_dir, OSTREE_GENERATOR_OFF, "")
}

/// The drop-ins that keep the next root's mounts across a soft reboot,
/// under `RUN/systemd/system` (runtime unit configuration).
const KEEP_DROPIN: &str = "50-treeboot-soft-reboot.conf";
const KEEP_TEXT: &str =
    "# Written by treeboot soft-reboot: the next root's mounts stay across the soft reboot.\n[Unit]\nDefaultDependencies=no\n";

fn keep_mounts(run_dir: &Utf8Path) -> Result<()> {
    for unit in kept_units(run_dir) {
        write_marker(run_dir, &format!("systemd/system/{unit}.d/{KEEP_DROPIN}"), KEEP_TEXT)?;
    }
    Ok(())
}

/// The units whose drop-ins [`keep_mounts`] writes: the next root's and its
/// private tmpfs's mount units, and for each the prefix drop-in (`a-b-.mount`
/// for `a-b.mount`), which systemd applies to every unit named `a-b-...`,
/// that is to every mount below (systemd.unit(5), "Description").
pub fn kept_units(run_dir: &Utf8Path) -> Vec<String> {
    let mut out = Vec::new();
    for rel in [NEXTROOT, NEXTROOT_PRIVATE] {
        let unit = crate::formats::unitname::path_unit(run_dir.join(rel).as_str(), "mount");
        let stem = unit.trim_end_matches(".mount");
        out.push(format!("{stem}-.mount"));
        out.push(unit);
    }
    out
}

/// Whether the mount unit `unit` gets one of [`kept_units`]' drop-ins.
pub fn kept(unit: &str, run_dir: &Utf8Path) -> bool {
    kept_units(run_dir).iter().any(|k| match k.strip_suffix("-.mount") {
        Some(prefix) => unit.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('-') && rest.len() > "-.mount".len()),
        None => unit == k,
    })
}

/// Remove the drop-ins of [`keep_mounts`] (their units are gone after the
/// switch, or taken down by a reset).
fn forget_kept_mounts(run_dir: &Utf8Path) -> Result<()> {
    let dir = run_dir.join("systemd/system");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".mount.d") {
            continue;
        }
        let d = dir.join(&name);
        match std::fs::remove_file(d.join(KEEP_DROPIN)) {
            Ok(()) => {
                let _ = std::fs::remove_dir(&d);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("Removing {d}/{KEEP_DROPIN}")),
        }
    }
    Ok(())
}

/// Undo [`prepare`]: unmount `RUN/nextroot` and what is below it, and
/// remove the record. Returns whether there was anything to undo.
pub fn reset(run_dir: &Utf8Path) -> Result<bool> {
    let mut did = false;
    for rel in [NEXTROOT, NEXTROOT_PRIVATE] {
        let t = run_dir.join(rel);
        // Lazily, with everything mounted below it (the kernel detaches the
        // whole tree), so that a busy file does not keep it.
        while is_mountpoint(&t) {
            umount_detach(&t).with_context(|| format!("Unmounting {t}"))?;
            did = true;
        }
    }
    forget_kept_mounts(run_dir)?;
    match std::fs::remove_file(run_dir.join(NEXTROOT_BOOTED)) {
        Ok(()) => did = true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("Removing {run_dir}/{NEXTROOT_BOOTED}")),
    }
    Ok(did)
}

/// The next root's record, when a soft reboot is prepared.
pub fn prepared(run_dir: &Utf8Path) -> Result<Option<Booted>> {
    let p = run_dir.join(NEXTROOT_BOOTED);
    match std::fs::read(&p) {
        Ok(d) => Booted::parse(&d).map(Some).map_err(|e| anyhow::anyhow!("{p}: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("Reading {p}")),
    }
}

/// What [`promote`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Promoted {
    /// No soft reboot was prepared.
    Nothing,
    /// `root` is the deployment the record names: it is `ostree-booted` now.
    Booted(Utf8PathBuf),
    /// The record names another root (the soft reboot did not switch): removed.
    Stale,
}

/// After a soft reboot, early in the new root (treeboot-remount): make the
/// next root's record `RUN/ostree-booted` when `root` (`/`) is the
/// deployment it names. `sysroot` is the physical root (`/sysroot`).
pub fn promote(run_dir: &Utf8Path, root: &Utf8Path, sysroot: &Utf8Path) -> Result<Promoted> {
    let Some(rec) = prepared(run_dir)? else {
        return Ok(Promoted::Nothing);
    };
    forget_kept_mounts(run_dir)?;
    let st = std::fs::metadata(root).with_context(|| format!("stat {root}"))?;
    let from = run_dir.join(NEXTROOT_BOOTED);
    if rec.backing_root_device_inode != Some((st.dev(), st.ino())) {
        std::fs::remove_file(&from).with_context(|| format!("Removing {from}"))?;
        return Ok(Promoted::Stale);
    }
    // The deployment's path, for the marker.
    let deployment = find_deployment(sysroot, (st.dev(), st.ino()));
    std::fs::rename(&from, run_dir.join(BOOTED)).with_context(|| format!("Renaming {from} to {run_dir}/{BOOTED}"))?;
    if let Some(d) = &deployment {
        write_markers(run_dir, d)?;
    }
    // What the staged update waited for has happened: the deployment runs.
    match std::fs::remove_file(run_dir.join(REBOOT_REQUIRED)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("Removing {run_dir}/{REBOOT_REQUIRED}"));
        }
        _ => {}
    }
    Ok(Promoted::Booted(deployment.unwrap_or_else(|| root.to_owned())))
}

/// `ostree/deploy/$stateroot/deploy/$name` under `sysroot` with this
/// (dev, ino), if any.
fn find_deployment(sysroot: &Utf8Path, devino: (u64, u64)) -> Option<Utf8PathBuf> {
    let states = std::fs::read_dir(sysroot.join("ostree/deploy")).ok()?;
    for os in states.flatten() {
        let dir = Utf8PathBuf::from(format!("ostree/deploy/{}/deploy", os.file_name().to_string_lossy()));
        for d in std::fs::read_dir(sysroot.join(&dir)).into_iter().flatten().flatten() {
            if let Ok(m) = d.metadata() {
                if m.is_dir() && (m.dev(), m.ino()) == devino {
                    return Some(dir.join(d.file_name().to_string_lossy().as_ref()));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mount_below_the_next_root_is_kept() {
        let run = Utf8Path::new("/run");
        assert_eq!(
            kept_units(run),
            ["run-nextroot-.mount", "run-nextroot.mount", "run-treeboot-nextroot-.mount", "run-treeboot-nextroot.mount"]
        );
        for unit in ["run-nextroot.mount", "run-nextroot-usr.mount", "run-nextroot-sysroot.mount", "run-nextroot-etc.mount", "run-treeboot-nextroot.mount", "run-treeboot-nextroot-etc\\x2dupper.mount"] {
            assert!(kept(unit, run), "{unit}");
        }
        // Not below: another directory whose name starts the same, the
        // parent, and what is neither.
        for unit in ["run-nextrootx.mount", "run.mount", "run-treeboot.mount", "var.mount", "run-nextroot-.mount"] {
            assert!(!kept(unit, run), "{unit}");
        }
        // Another run directory (the tests' own): the names follow it.
        assert!(kept("tmp-x-run-nextroot-usr.mount", Utf8Path::new("/tmp/x/run")));
        assert!(!kept("run-nextroot-usr.mount", Utf8Path::new("/tmp/x/run")));
    }

    fn record_for(path: &Utf8Path) -> Booted {
        let m = std::fs::metadata(path).unwrap();
        Booted { backing_root_device_inode: Some((m.dev(), m.ino())), ..Default::default() }
    }

    #[test]
    fn promote_renames_the_record_of_the_root_it_names() {
        let t = tempfile::tempdir().unwrap();
        let base = Utf8Path::from_path(t.path()).unwrap();
        let run = base.join("run");
        let phys = base.join("sysroot");
        let dep = phys.join("ostree/deploy/os/deploy/abc.0");
        std::fs::create_dir_all(&dep).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        assert_eq!(promote(&run, &dep, &phys).unwrap(), Promoted::Nothing);
        write_booted_as(&run, BOOTED, &Booted::default()).unwrap();
        write_booted_as(&run, NEXTROOT_BOOTED, &record_for(&dep)).unwrap();
        // The root is another directory: the record is stale, ostree-booted stays.
        assert_eq!(promote(&run, &phys, &phys).unwrap(), Promoted::Stale);
        assert!(!run.join(NEXTROOT_BOOTED).exists());
        assert_eq!(Booted::parse(&std::fs::read(run.join(BOOTED)).unwrap()).unwrap(), Booted::default());
        // The root is the deployment named.
        write_booted_as(&run, NEXTROOT_BOOTED, &record_for(&dep)).unwrap();
        std::fs::write(run.join(REBOOT_REQUIRED), "*** System restart required ***\n").unwrap();
        let p = promote(&run, &dep, &phys).unwrap();
        assert!(!run.join(REBOOT_REQUIRED).exists(), "the soft reboot was the reboot required");
        assert_eq!(p, Promoted::Booted("ostree/deploy/os/deploy/abc.0".into()));
        assert!(!run.join(NEXTROOT_BOOTED).exists());
        assert_eq!(Booted::parse(&std::fs::read(run.join(BOOTED)).unwrap()).unwrap(), record_for(&dep));
        assert_eq!(std::fs::read_to_string(run.join(super::super::prepare_root::PREPARED_MARKER)).unwrap(), "/ostree/deploy/os/deploy/abc.0\n");
    }
}
