//! prepare-root: in the initramfs, turn the physical root mounted at
//! SYSROOT into the root of the deployment named by `ostree=`.
//!
//! The sequence follows libostree's ostree-prepare-root:
//!  1. resolve `ostree=` (a symlink under the sysroot, resolved without
//!     leaving it) to `ostree/deploy/$stateroot/deploy/$csum.$serial`;
//!  2. read prepare-root.conf (usr/lib, then etc, of the deployment);
//!  3. make `/` private (the kernel refuses to move shared mounts);
//!  4. bind the deployment onto itself, so it can be moved later;
//!     (`[root] transient`: an overlay with a tmpfs upper over it);
//!  5. bind `usr` onto itself read-only;
//!  6. `/etc`: writable as part of the deployment; `[etc] transient`: an
//!     overlay of `usr/etc` with a tmpfs upper; with a read-only sysroot, a
//!     bind of its own so that remount can make it writable;
//!  7. without systemd (PID 1 mode), bind `/var` from the stateroot (with
//!     systemd, the generator's var.mount does it);
//!  8. write `/run/ostree-booted` with `backing-root-device-inode` and flags
//!     (PID 1 mode: into a tmpfs mounted on the deployment's `/run`, which
//!     the init it starts keeps, as systemd keeps a mounted /run);
//!  9. move the deployment onto SYSROOT and the physical root to
//!     SYSROOT/sysroot (three moves through SYSROOT.tmp); in PID 1 mode,
//!     where SYSROOT is `/`, `pivot_root` instead: the deployment becomes
//!     `/` and the physical root `/sysroot` (a move cannot take a mount
//!     from under itself);
//! 10. make SYSROOT/sysroot read-only when asked, and private.
//!
//! `/boot` is left to the generator's boot.mount, as newer libostree does.
//! Any failure undoes every mount made (`MountUndo`).

use std::os::unix::fs::MetadataExt;

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use cap_std_ext::cap_std::{self, fs::Dir};
use cap_std_ext::dirext::CapStdExtDirExt;

use super::mount::{MountUndo, MS_BIND, MS_MOVE, MS_NODEV, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SILENT};
use crate::formats::kargs::Kargs;
use crate::formats::keyfile::KeyFile;
use crate::formats::names::{parse_deploy_name, valid_stateroot};
use super::composefs::{self as cfs, IMAGE_NAME};
use crate::formats::prepareroot::{self, Composefs, PrepareRootConfig, COMPOSEFS_KARG};
use crate::formats::runstate::Booted;

#[derive(Debug, Clone)]
pub struct Options {
    /// Where the physical root is mounted (`/sysroot` in the initramfs).
    pub sysroot: Utf8PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// Where to write `ostree-booted` (`/run`).
    pub run_dir: Utf8PathBuf,
    /// Bind /var from the stateroot (no systemd generator to do it).
    pub bind_var: bool,
    /// PID 1 mode (`init=` without an initramfs): SYSROOT is `/`, the new
    /// root is put in place with `pivot_root`, and `run_dir` is unused: the
    /// record goes to a tmpfs on the deployment's `/run`.
    pub pid1: bool,
}

#[derive(Debug, Clone)]
pub struct Resolved {
    /// Relative to the sysroot: `ostree/deploy/$stateroot/deploy/$name`.
    pub deployment: Utf8PathBuf,
    pub stateroot: String,
}

/// Step 1: the deployment named by `ostree=`.
pub fn resolve(root: &Dir, sysroot: &Utf8Path, cmdline: &str) -> Result<Resolved> {
    let kargs = Kargs::parse(cmdline).map_err(|e| anyhow!("kernel command line: {e}"))?;
    let value = kargs
        .get("ostree")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("no ostree= argument on the kernel command line"))?
        .trim_matches('"')
        .to_string();
    let rel = value.trim_start_matches('/').trim_end_matches('/');
    if !rel.starts_with("ostree/boot.") && !rel.starts_with("ostree/deploy/") {
        bail!("ostree={value}: not a /ostree/boot.N/... path");
    }
    let meta = root
        .symlink_metadata_optional(rel)
        .with_context(|| format!("ostree={value}"))?
        .ok_or_else(|| anyhow!("ostree={value}: {sysroot}/{rel} does not exist"))?;
    if !meta.file_type().is_symlink() {
        bail!("ostree={value}: {sysroot}/{rel} is not a symlink");
    }
    // Resolved inside the sysroot: an absolute or escaping link is an error.
    let resolved = root
        .canonicalize(rel)
        .map_err(|e| anyhow!("ostree={value}: resolving {sysroot}/{rel}: {e} (a dangling link, or one that leaves the sysroot)"))?;
    let resolved = Utf8PathBuf::try_from(resolved).map_err(|_| anyhow!("ostree={value}: target is not UTF-8"))?;
    let parts: Vec<&str> = resolved.as_str().split('/').collect();
    match parts.as_slice() {
        ["ostree", "deploy", os, "deploy", name] if valid_stateroot(os) && parse_deploy_name(name).is_some() => {
            if !root.symlink_metadata(&resolved)?.is_dir() {
                bail!("ostree={value}: {sysroot}/{resolved} is not a directory");
            }
            Ok(Resolved { deployment: resolved.clone(), stateroot: os.to_string() })
        }
        _ => bail!("ostree={value}: resolves to {sysroot}/{resolved}, which is not a deployment in ostree/deploy/"),
    }
}

/// Step 2: prepare-root.conf of the deployment, the repository's
/// `[sysroot] readonly` (libostree 2022.7 reads it there), and the kernel
/// argument `ostree.prepare-root.composefs=` of `cmdline` over them.
/// Warnings are printed.
pub fn read_config(root: &Dir, deployment: &Utf8Path, cmdline: &str) -> Result<PrepareRootConfig> {
    let mut c = PrepareRootConfig::default();
    if let Some(t) = root.read_to_string_optional("ostree/repo/config")? {
        if let Ok(kf) = KeyFile::parse(&t) {
            if let Ok(Some(v)) = kf.get_bool("sysroot", "readonly") {
                c.sysroot_readonly = v;
            }
        }
    }
    for f in prepareroot::FILES {
        let p = deployment.join(f);
        if let Some(t) = root.read_to_string_optional(&p)? {
            for w in c.apply(&t).map_err(|e| anyhow!("/{f} of the deployment: {e}"))? {
                log(&format!("warning: /{f}: {w}"));
            }
        }
    }
    let kargs = Kargs::parse(cmdline).map_err(|e| anyhow!("kernel command line: {e}"))?;
    c.apply_kargs(&kargs).map_err(|e| anyhow!("kernel command line: {e}"))?;
    if c.composefs != Composefs::No && c.composefs_signed {
        bail!(
            "composefs: enabled = signed (a signed image digest) is not supported by treeboot; \
             `verity` checks every object against the image"
        );
    }
    Ok(c)
}

/// A message to stderr and, in the initramfs, the kernel log.
pub fn log(msg: &str) {
    eprintln!("treeboot-prepare-root: {msg}");
    if std::process::id() == 1 || Utf8Path::new("/etc/initrd-release").exists() {
        if let Ok(mut k) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            use std::io::Write;
            let _ = writeln!(k, "<3>treeboot-prepare-root: {msg}");
        }
    }
}

fn require_dir(root: &Dir, rel: &Utf8Path, what: &str) -> Result<()> {
    match root.symlink_metadata_optional(rel)? {
        Some(m) if m.is_dir() => Ok(()),
        Some(_) => bail!("{what}: {rel} is not a directory (a symlink or a file)"),
        None => bail!("{what}: {rel} does not exist"),
    }
}

/// The whole sequence; returns the record written to `ostree-booted`.
pub fn prepare_root(opts: &Options) -> Result<Booted> {
    let sysroot = &opts.sysroot;
    let root = Dir::open_ambient_dir(sysroot, cap_std::ambient_authority())
        .with_context(|| format!("Opening the sysroot {sysroot}"))?;
    let r = resolve(&root, sysroot, &opts.cmdline)?;
    let drel = &r.deployment;
    let config = read_config(&root, drel, &opts.cmdline)?;
    check_deployment(&root, drel, &config, opts.pid1)?;
    let deploy = sysroot.join(drel);
    let mut booted = root_record(&deploy, &config)?;
    let mut undo = MountUndo::default();

    // 3. `/` private: the kernel refuses to move mounts under a shared parent.
    super::mount::mount(None, Utf8Path::new("/"), None, MS_REC | MS_PRIVATE | MS_SILENT, None)
        .context("Making / private")?;
    // 4. The deployment, bound onto itself so that it is a mount we can
    //    move, or its composefs image mounted there. (PID 1 mode has no
    //    /run yet for a transient composefs root's layers.)
    let early_private = (!opts.pid1).then(|| opts.run_dir.join("treeboot"));
    let base = mount_base(&mut undo, sysroot, &deploy, &deploy, &config, early_private.as_deref())?;
    base.record(&mut booted);
    // PID 1 mode: there is no /run yet; the new root's is a tmpfs, made now
    // (on the composefs root, when there is one) so that the transient
    // layers and the record live in it.
    let run_dir = if opts.pid1 {
        let run = deploy.join("run");
        undo.mount(Some("tmpfs"), &run, Some("tmpfs"), MS_NOSUID | MS_NODEV | MS_SILENT, Some("mode=0755"))?;
        run
    } else {
        opts.run_dir.clone()
    };
    let run_private = run_dir.join("treeboot");
    booted.transient_etc = mount_tree(&mut undo, &deploy, &deploy, &config, &run_private, &base)?;
    // 7. /var without systemd.
    if opts.bind_var {
        let var_src = sysroot.join(format!("ostree/deploy/{}/var", r.stateroot));
        let var = deploy.join("var");
        undo.mount(Some(var_src.as_str()), &var, None, MS_BIND | MS_SILENT, None)?;
    }
    // 8. The record tools read to find the booted deployment, and the
    //    markers that say treeboot prepared this root.
    write_booted_as(&run_dir, BOOTED, &booted)?;
    write_markers(&run_dir, drel)?;
    if opts.pid1 {
        // 9. (PID 1) The deployment becomes / and the physical root, the
        //    old /, goes to its /sysroot.
        pivot_into(&deploy).context("Making the deployment the root (pivot_root)")?;
        undo.commit();
        // 10.
        finish_sysroot(Utf8Path::new("/sysroot"), config.sysroot_readonly)?;
        return Ok(booted);
    }
    // 9. The deployment onto SYSROOT, the physical root under it.
    if let Err(e) = move_onto_sysroot(sysroot, &deploy) {
        let _ = std::fs::remove_file(run_dir.join(BOOTED));
        remove_markers(&run_dir);
        return Err(e.context(format!("Moving the deployment onto {sysroot}")));
    }
    undo.commit();
    // 10.
    finish_sysroot(&sysroot.join("sysroot"), config.sysroot_readonly)?;
    Ok(booted)
}

/// The record of a root built from `deploy` with `config` (its
/// `transient_etc` is filled in by [`mount_tree`]).
pub(crate) fn root_record(deploy: &Utf8Path, config: &PrepareRootConfig) -> Result<Booted> {
    let st = std::fs::metadata(deploy).with_context(|| format!("stat {deploy}"))?;
    Ok(Booted {
        backing_root_device_inode: Some((st.dev(), st.ino())),
        sysroot_ro: config.sysroot_readonly,
        transient_etc: None,
        root_transient: config.root_transient,
        composefs: false,
        composefs_verity: false,
    })
}

/// What step 4 put on the target.
#[derive(Debug, Clone, Default)]
pub(crate) struct Base {
    /// The deployment's composefs image, mounted over the objects (the
    /// whole tree read-only, or transient; `/etc` bound in already unless
    /// it is transient); otherwise a bind of the deployment.
    pub composefs: bool,
    /// The image's objects must have its fs-verity digests.
    pub verity: bool,
}

impl Base {
    /// What the root's record says of it (`composefs`, `composefs.verity`).
    pub fn record(&self, rec: &mut Booted) {
        rec.composefs = self.composefs;
        rec.composefs_verity = self.verity;
    }
}

/// Step 4 on `target`: a bind of the deployment `deploy`, or, when
/// composefs is asked for and (with `maybe`) the deployment has an image,
/// the image mounted over the repository's objects with the deployment's
/// own `/etc` bound into it (the image has an empty `/etc` for it, as it
/// has `/var` and `/sysroot`). `run_private` holds a transient root's
/// layers and, for a moment, the image's own mount (None: PID 1 mode,
/// which has no /run for them yet).
pub(crate) fn mount_base(
    undo: &mut MountUndo,
    sysroot: &Utf8Path,
    deploy: &Utf8Path,
    target: &Utf8Path,
    config: &PrepareRootConfig,
    run_private: Option<&Utf8Path>,
) -> Result<Base> {
    let image = deploy.join(IMAGE_NAME);
    let wanted = match config.composefs {
        Composefs::No => false,
        Composefs::Maybe if !image.exists() => {
            log(&format!("composefs: maybe, and the deployment has no image ({image}): booting without it"));
            false
        }
        Composefs::Maybe | Composefs::Yes => true,
    };
    if !wanted {
        undo.mount(Some(deploy.as_str()), target, None, MS_BIND | MS_SILENT, None)?;
        return Ok(Base::default());
    }
    if !image.exists() {
        bail!("composefs is required (prepare-root.conf [composefs] enabled, or {COMPOSEFS_KARG}=), but the deployment has no image: {image} does not exist");
    }
    // The deployment's /etc, held open before the image covers it.
    let etc = if config.etc_transient {
        None
    } else {
        let p = deploy.join("etc");
        Some(rustix::fs::open(p.as_str(), rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .with_context(|| format!("Opening {p}"))?)
    };
    let upper = if config.root_transient {
        let Some(run_private) = run_private else {
            bail!("composefs with [root] transient needs an initramfs: in PID 1 mode there is no /run for its layers yet");
        };
        let scratch = run_private.join("root");
        std::fs::create_dir_all(&scratch).with_context(|| format!("Creating {scratch}"))?;
        undo.mount(Some("tmpfs"), &scratch, Some("tmpfs"), MS_SILENT, Some("mode=0755"))?;
        for d in ["upper", "work"] {
            std::fs::create_dir_all(scratch.join(d))?;
        }
        Some((scratch.join("upper"), scratch.join("work")))
    } else {
        None
    };
    let opts = cfs::MountOptions {
        require_verity: config.composefs_verity,
        upper: upper.as_ref().map(|(u, w)| (u.as_path(), w.as_path())),
    };
    let objects = sysroot.join("ostree/repo/objects");
    let scratch = run_private.map(|p| p.join("composefs-lower"));
    let h = cfs::mount_image(undo, &image, &objects, target, scratch.as_deref(), &opts)?;
    log(&format!(
        "composefs: mounted {image} (format {}, verity {})",
        h.version,
        if config.composefs_verity { "required" } else { "not required" }
    ));
    if let Some(fd) = etc {
        use std::os::fd::AsRawFd;
        let src = format!("/proc/self/fd/{}", fd.as_raw_fd());
        undo.mount(Some(&src), &target.join("etc"), None, MS_BIND | MS_SILENT, None)
            .with_context(|| format!("Binding the deployment's {deploy}/etc into the composefs root"))?;
    }
    Ok(Base { composefs: true, verity: config.composefs_verity })
}

/// Steps 5 and 6 on `target`, where step 4 ([`mount_base`]) put the
/// deployment `deploy`: the deployment itself in the initramfs,
/// `/run/nextroot` for a soft reboot ([`super::nextroot`]), so that both
/// build the same root. Transient layers get their tmpfs under
/// `run_private`; returns the upper directory of a transient `/etc`.
pub(crate) fn mount_tree(
    undo: &mut MountUndo,
    deploy: &Utf8Path,
    target: &Utf8Path,
    config: &PrepareRootConfig,
    run_private: &Utf8Path,
    base: &Base,
) -> Result<Option<String>> {
    if base.composefs {
        // The image is the whole tree, read-only (or transient already);
        // /etc is in place unless it is transient.
    } else if config.root_transient {
        transient_overlay(undo, &run_private.join("root"), deploy, target)?;
        std::fs::create_dir_all(target.join("sysroot"))?;
    } else {
        // 5. /usr read-only.
        let usr = target.join("usr");
        undo.mount(Some(usr.as_str()), &usr, None, MS_BIND | MS_SILENT, None)?;
        undo.mount(Some(usr.as_str()), &usr, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_SILENT, None)?;
    }
    // 6. /etc.
    let etc = target.join("etc");
    if config.etc_transient {
        std::fs::create_dir_all(&etc).ok();
        let t = run_private.join("etc");
        transient_overlay(undo, &t, &target.join("usr/etc"), &etc)?;
        return Ok(Some(t.join("upper").to_string()));
    }
    if config.sysroot_readonly && !base.composefs {
        undo.mount(Some(etc.as_str()), &etc, None, MS_BIND | MS_SILENT, None)?;
    }
    Ok(None)
}

/// What the deployment must have for the mounts that follow: /usr, and the
/// mount points the configuration needs.
pub(crate) fn check_deployment(root: &Dir, drel: &Utf8Path, config: &PrepareRootConfig, pid1: bool) -> Result<()> {
    require_dir(root, &drel.join("usr"), "the deployment has no /usr")?;
    if !config.root_transient {
        require_dir(root, &drel.join("sysroot"), "the deployment has no /sysroot mount point")?;
    }
    if !config.etc_transient {
        require_dir(root, &drel.join("etc"), "the deployment has no /etc")?;
    }
    if pid1 {
        require_dir(root, &drel.join("run"), "the deployment has no /run mount point")?;
    }
    Ok(())
}

/// Step 9 (initramfs): three moves, as libostree does, because /sysroot
/// cannot be moved under itself: the deployment to SYSROOT.tmp, the
/// physical root into its `sysroot`, then SYSROOT.tmp to SYSROOT. A failed
/// move puts back what it moved, so the undo list still matches.
fn move_onto_sysroot(sysroot: &Utf8Path, deploy: &Utf8Path) -> Result<()> {
    let tmp = Utf8PathBuf::from(format!("{sysroot}.tmp"));
    let moved = (|| -> Result<()> {
        std::fs::create_dir(&tmp).with_context(|| format!("Creating {tmp}"))?;
        super::mount::mount(Some(deploy.as_str()), &tmp, None, MS_MOVE | MS_SILENT, None)?;
        let inner = tmp.join("sysroot");
        if let Err(e) = super::mount::mount(Some(sysroot.as_str()), &inner, None, MS_MOVE | MS_SILENT, None) {
            let _ = super::mount::mount(Some(tmp.as_str()), deploy, None, MS_MOVE | MS_SILENT, None);
            return Err(e.into());
        }
        if let Err(e) = super::mount::mount(Some(tmp.as_str()), sysroot, None, MS_MOVE | MS_SILENT, None) {
            let _ = super::mount::mount(Some(inner.as_str()), sysroot, None, MS_MOVE | MS_SILENT, None);
            let _ = super::mount::mount(Some(tmp.as_str()), deploy, None, MS_MOVE | MS_SILENT, None);
            return Err(e.into());
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir(&tmp);
    moved
}

/// Step 10: the physical root, now at `inner`: read-only if asked, and
/// private so that mounts under /var do not propagate into it.
pub(crate) fn finish_sysroot(inner: &Utf8Path, readonly: bool) -> Result<()> {
    if readonly {
        super::mount::mount(Some(inner.as_str()), inner, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_SILENT, None)
            .context("Making /sysroot read-only")?;
    }
    super::mount::mount(Some("none"), inner, None, MS_PRIVATE | MS_SILENT, None).context("Making /sysroot private")?;
    Ok(())
}

/// `pivot_root(deploy, deploy/sysroot)`, then `/` as the working directory.
fn pivot_into(deploy: &Utf8Path) -> Result<()> {
    std::env::set_current_dir(deploy).with_context(|| format!("chdir {deploy}"))?;
    rustix::process::pivot_root(".", "sysroot")?;
    std::env::set_current_dir("/").context("chdir /")?;
    Ok(())
}

/// An overlay of `lower` on `target` whose upper layer is a fresh tmpfs at
/// `scratch` (changes vanish at reboot).
fn transient_overlay(undo: &mut MountUndo, scratch: &Utf8Path, lower: &Utf8Path, target: &Utf8Path) -> Result<()> {
    std::fs::create_dir_all(scratch).with_context(|| format!("Creating {scratch}"))?;
    undo.mount(Some("tmpfs"), scratch, Some("tmpfs"), MS_SILENT, Some("mode=0755"))?;
    std::fs::create_dir_all(scratch.join("upper"))?;
    std::fs::create_dir_all(scratch.join("work"))?;
    let data = format!("lowerdir={lower},upperdir={scratch}/upper,workdir={scratch}/work");
    undo.mount(Some("overlay"), target, Some("overlay"), MS_SILENT, Some(&data))?;
    Ok(())
}

/// `/run/treeboot/prepared-root` (the deployment's path): treeboot's
/// generator writes the units only for a root treeboot prepared.
pub const PREPARED_MARKER: &str = "treeboot/prepared-root";
/// `/run/ostree/initramfs-mount-var`: ostree-system-generator (ostree-boot)
/// removes it and writes nothing when it is there (libostree's own switch
/// for a root whose /var someone else takes care of, since 2018.6), so with
/// ostree-boot installed one generator, treeboot's, writes var.mount,
/// boot.mount and the remount (docs/coexistence.md).
pub const OSTREE_GENERATOR_OFF: &str = "ostree/initramfs-mount-var";

pub(crate) fn write_markers(run_dir: &Utf8Path, deployment: &Utf8Path) -> Result<()> {
    write_marker(run_dir, PREPARED_MARKER, &format!("/{deployment}\n"))?;
    write_marker(run_dir, OSTREE_GENERATOR_OFF, "")
}

pub(crate) fn write_marker(run_dir: &Utf8Path, rel: &str, text: &str) -> Result<()> {
    let p = run_dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap_or(run_dir)).with_context(|| format!("Creating the parent of {p}"))?;
    std::fs::write(&p, text).with_context(|| format!("Writing {p}"))
}

fn remove_markers(run_dir: &Utf8Path) {
    for rel in [PREPARED_MARKER, OSTREE_GENERATOR_OFF] {
        let _ = std::fs::remove_file(run_dir.join(rel));
    }
}

/// `/run/ostree-booted`, relative to the run directory.
pub const BOOTED: &str = "ostree-booted";

/// Write a record of the root (`ostree-booted`, or a soft reboot's
/// `ostree/nextroot-booted`) under `run_dir`, atomically.
pub(crate) fn write_booted_as(run_dir: &Utf8Path, name: &str, b: &Booted) -> Result<()> {
    std::fs::create_dir_all(run_dir)?;
    let d = Dir::open_ambient_dir(run_dir, cap_std::ambient_authority())?;
    use cap_std_ext::cap_std::fs::{Permissions, PermissionsExt};
    if let Some(parent) = Utf8Path::new(name).parent().filter(|p| !p.as_str().is_empty()) {
        d.create_dir_all(parent)?;
    }
    d.atomic_write_with_perms(name, b.serialize(), Permissions::from_mode(0o644))
        .with_context(|| format!("Writing {run_dir}/{name}"))
}
