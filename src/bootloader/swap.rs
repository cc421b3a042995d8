//! Writing a new deployment list: the one place where `boot/loader` and
//! `ostree/boot.N` change. Every other module asks this one.
//!
//! The bootloader reads `boot/loader -> loader.N`; the initramfs resolves the
//! entry's `ostree=/ostree/boot.N/$stateroot/$bootcsum/$serial` through
//! `ostree/boot.N -> boot.N.M`. A new list is written beside the live one and
//! becomes visible through one `rename()` of a symlink, so that power loss at
//! any instant leaves either the old or the new list:
//!
//! Full swap (the entries change):
//!
//! 1. `remove-stale`: remove leftovers of an interrupted swap for the other
//!    boot version (`loader.(1-N)`, `boot.(1-N).M`, `loader.tmp`): nothing
//!    live points at them.
//! 2. `write-entries`: `boot/loader.(1-N)/entries/ostree-K-$stateroot.conf`,
//!    each written to a temporary name and renamed.
//! 3. `write-bootlinks`: `ostree/boot.(1-N).M/$stateroot/$bootcsum/$serial`.
//! 4. `swap-bootlinks`: `ostree/boot.(1-N).tmp -> boot.(1-N).M`, renamed
//!    over `ostree/boot.(1-N)`. Not yet live: the live entries name
//!    `boot.N`, not `boot.(1-N)`.
//! 5. `write-grub`: `boot/loader.(1-N)/grub.cfg` for GRUB without BLS;
//!    with a counted entry, `boot/grub/grubenv` is created if missing
//!    (GRUB's `save_env` only writes into an existing block).
//! 6. `loader-tmp`: `boot/loader.tmp -> loader.(1-N)`; and `loader.prev`, a
//!    second hard link to the live `boot/loader` symlink's inode (see below).
//! 7. `sync`: syncfs of the sysroot, then of `/boot` if it is its own file
//!    system: everything the new entries reference (deployments, links,
//!    kernels, entries) must be on disk *before* the rename makes it live,
//!    else a power cut could leave a live entry pointing at lost data.
//! 8. `rename-loader`: `rename(boot/loader.tmp, boot/loader)`: the commit
//!    point.
//! 9. `sync-boot`: fsync `/boot` (the directory holding the link) and
//!    syncfs it, so the switch itself is durable before we report success
//!    or delete the old list.
//!
//! 10. `grubenv-prune`: GRUB's tries variables of deployments no longer
//!     counted are dropped from `boot/grub/grubenv` (replaced atomically),
//!     after the commit point: before it, the old entries still use them.
//!
//! Steps 7 and 9 end with a freeze/thaw of `/boot`'s file system, which
//! checkpoints its journal: GRUB reads ext4 without replaying the journal,
//! and must see what the kernel will see (found by the VM power-cut test).
//!
//! `loader.prev` keeps the old `loader` symlink's inode alive through the
//! rename of step 8, until step 9's checkpoint is done; step 9 then removes
//! it. Without it the rename frees that inode in the same journal
//! transaction that repoints the `loader` entry, and the checkpoint writes
//! those blocks one by one: a power cut between the inode table block (the
//! inode freed) and the directory block (the entry not yet repointed) left
//! a disk on which a reader that does not replay the journal (GRUB) finds
//! `loader` naming a deleted inode. Found by the lost-writes replay on
//! kernel 6.12 (Debian trixie), whose checkpoint wrote them in that order;
//! with the second link the old inode stays valid, so either block order
//! leaves `loader` naming a whole list.
//!
//! Links-only swap (same entries, only which deployment each serial names
//! changes): steps 3 and 4 for the *current* boot version with the other
//! sub-boot version, a sync before the rename and an fsync of `ostree/` after.
//!
//! Removal of the old list is left to cleanup, after the commit point.
//!
//! Directory swap (`/boot` on FAT, for systemd-boot: no symlinks there;
//! [`crate::bootloader::fat`], docs/fat-boot.md). The live list is the
//! directory `boot/loader/`, its boot version in `loader/ostree-bootversion`:
//!
//! 1. `remove-stale`: `boot/loader.new`, a list a cut left half built or an
//!    old list not yet removed, is removed, unless it is a second name of
//!    `boot/loader` (a cut exchange): then it is moved aside, never removed.
//! 2. `write-entries`: `boot/loader.new/entries/ostree-K.conf`, written in
//!    place (no temporary name: a rename on FAT can leave two names on one
//!    file, and nothing reads `loader.new` before step 7); what else the live
//!    `loader/` holds (`loader.conf`, `random-seed`, other systems' entries)
//!    is copied; `ostree-bootversion` last.
//! 3. to 5. as above: the links of `ostree/boot.(1-N)` (on the root
//!    file system), and `loader.new/grub.cfg` for GRUB.
//! 6. `sync`: syncfs of the sysroot and of `/boot`, for the same reason as
//!    above: all the new list names is on disk before it goes live.
//! 7. `exchange`: `renameat2(loader.new, loader, RENAME_EXCHANGE)` (FAT
//!    since Linux 6.0): the commit point. It rewrites the two names'
//!    directory entries; each is one 32-byte record within a sector, so
//!    whichever of the two writes a cut keeps, `loader` names a whole list,
//!    the old or the new one (and, if only one was written, `loader.new`
//!    names the same directory: step 1 of the next swap sees it).
//! 8. `sync-boot`: fsync `/boot` and syncfs it: the switch is durable.
//! 9. `remove-old`: `loader.new`, now the old list, is removed (with
//!    the same check as step 1); a cut leaves it for the next swap.
//! 10. `grubenv-prune`, as above.

use std::collections::HashMap;
use std::os::fd::AsFd;

use anyhow::{anyhow, Context, Result};
use cap_std_ext::cap_std::fs::{Dir, Permissions, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;
use rustix::fs::{Mode, OFlags};

use crate::bootloader::fat::{self, LoaderLayout};
use crate::bootloader::grub;
use crate::bootloader::kernel::BootFiles;
use crate::failpoint;
use crate::sysroot::opts::SysrootOpts;
use crate::formats::bls::BlsEntry;
use crate::formats::kargs::Kargs;
use crate::fsutil;

/// The second link to the old `boot/loader` symlink during a swap.
pub const LOADER_PREV: &str = "loader.prev";

/// A deployment as it will appear in the new list.
#[derive(Debug, Clone)]
pub struct BootDeployment {
    pub stateroot: String,
    pub csum: String,
    pub serial: u32,
    pub bootcsum: String,
    /// Full kernel arguments; an `ostree=` among them is replaced in place.
    pub kargs: Kargs,
    pub kver: String,
    /// The optional files of its kernel directory in /boot.
    pub files: BootFiles,
    /// The boot counters of its live entry's file name (`+LEFT-DONE`,
    /// (0, 0) for none); None for a new deployment, which has no entry yet.
    pub tries: Option<(u64, u64)>,
    /// Without an initramfs, the prepare-root the kernel runs as `init=`
    /// (a path in the deployment, see [`pid1_init`]).
    pub pid1_init: Option<String>,
    /// `PRETTY_NAME` of the deployment's os-release (else `ID`).
    pub os_name: String,
    /// The commit's `version` metadata.
    pub version: Option<String>,
}

impl BootDeployment {
    fn kargs_without_ostree(&self) -> String {
        let mut k = self.kargs.clone();
        k.remove_key("ostree");
        k.to_cmdline()
    }
}

/// What the bootloader currently sees, for the "only links change" test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfigKey {
    pub stateroot: String,
    pub bootcsum: String,
    pub kargs: String,
    pub title: Option<String>,
    /// The boot counters in the live entry's name (`(0, 0)`: none).
    pub tries: Option<(u64, u64)>,
}

/// The outcome of a swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapResult {
    pub bootversion: u32,
    pub subbootversion: u32,
    pub full: bool,
}

/// The prepare-roots a deployment without an initramfs can boot through as
/// PID 1, in order of preference: libostree's (the path libostree writes
/// into `init=`), then treeboot's static build.
pub const PID1_INITS: [&str; 2] = ["usr/lib/ostree/ostree-prepare-root", "usr/lib/treeboot/treeboot-prepare-root-static"];

/// The first of [`PID1_INITS`] that `deploy` has as a file.
pub fn pid1_init(deploy: &Dir) -> Result<Option<String>> {
    for p in PID1_INITS {
        if deploy.symlink_metadata_optional(p)?.is_some_and(|m| m.is_file()) {
            return Ok(Some(p.to_string()));
        }
    }
    Ok(None)
}

/// Bootserials: for each deployment, how many earlier ones in the list share
/// its bootcsum.
pub fn bootserials(list: &[BootDeployment]) -> Vec<u32> {
    let mut seen: HashMap<&str, u32> = HashMap::new();
    list.iter()
        .map(|d| {
            let c = seen.entry(d.bootcsum.as_str()).or_insert(0);
            let s = *c;
            *c += 1;
            s
        })
        .collect()
}

/// The BLS entry libostree writes for deployment `index` of `list`, and
/// its file name: `ostree-N.conf` (ostree 2024.5 and later), or
/// `ostree-N-STATEROOT.conf` with `bootloader-naming-1` (and before 2024.5);
/// N counts down from the number of deployments, so that the default has
/// the highest (GRUB sorts entries by file name, ostree#2961).
pub fn entry_for(list: &[BootDeployment], index: usize, bootversion: u32, bootserial: u32, opts: SysrootOpts) -> (String, BlsEntry) {
    let d = &list[index];
    let n = list.len();
    let multi_os = list.iter().any(|o| o.stateroot != d.stateroot);
    let mut title = d.os_name.clone();
    if let Some(v) = d.version.as_deref().filter(|v| !v.is_empty()) {
        if !title.contains(v) {
            title.push(' ');
            title.push_str(v);
        }
    }
    if multi_os {
        title.push_str(&format!(" (ostree:{}:{index})", d.stateroot));
    } else {
        title.push_str(&format!(" (ostree:{index})"));
    }
    let mut kargs = d.kargs.clone();
    // (Before ostree=, where libostree puts it for a new entry.)
    // Without an initramfs the kernel runs prepare-root itself, through the
    // same boot link as ostree= (libostree writes init= this way, and keeps
    // it right when the boot version changes); with one, an init= of that
    // form inherited from such a deployment would skip the initramfs.
    let ours = |v: &str| v.starts_with("/ostree/boot.") && PID1_INITS.iter().any(|p| v.ends_with(p));
    match (&d.pid1_init, d.files.initramfs) {
        (Some(p), false) => {
            let arg = format!("init=/ostree/boot.{bootversion}/{}/{}/{bootserial}/{p}", d.stateroot, d.bootcsum);
            kargs.replace(&arg).expect("init= is a valid argument");
        }
        (_, true) if kargs.get("init").is_some_and(ours) => {
            kargs.remove_key("init");
        }
        _ => {}
    }
    let ostree_arg = format!(
        "ostree=/ostree/boot.{bootversion}/{}/{}/{bootserial}",
        d.stateroot, d.bootcsum
    );
    kargs.replace(&ostree_arg).expect("ostree= is a valid argument");

    // With `sysroot.bootprefix` the paths a bootloader loads start with
    // `/boot`, as libostree writes them (aboot's does not, in libostree
    // either).
    let plain_bootdir = format!("/ostree/{}-{}", d.stateroot, d.bootcsum);
    let bootdir = if opts.bootprefix { format!("/boot{plain_bootdir}") } else { plain_bootdir.clone() };
    let mut e = BlsEntry::default();
    e.set("title", title);
    e.set("version", (n - index).to_string());
    e.set("options", kargs.to_cmdline());
    if d.files.devicetree {
        e.set("devicetree", format!("{bootdir}/devicetree-{}", d.kver));
    }
    e.set("linux", format!("{bootdir}/vmlinuz-{}", d.kver));
    if d.files.initramfs {
        e.set("initrd", format!("{bootdir}/initramfs-{}.img", d.kver));
    }
    // Only when the image exists (libostree since 2025.3, ostree#3413; the
    // config path is the deployment's since 2025.5, ostree#3493).
    if d.files.aboot {
        e.set("aboot", format!("{plain_bootdir}/aboot-{}.img", d.kver));
        e.set(
            "abootcfg",
            format!("/ostree/deploy/{}/deploy/{}.{}/usr/lib/ostree-boot/aboot.cfg", d.stateroot, d.csum, d.serial),
        );
    }
    // libostree writes it among the keys its parser does not order, after
    // initrd and aboot (ostree#1900).
    if d.files.dtb && !d.files.devicetree {
        e.set("fdtdir", format!("{bootdir}/dtb"));
    }
    let base = if opts.bootloader_naming_1 {
        format!("ostree-{}-{}", n - index, d.stateroot)
    } else {
        format!("ostree-{}", n - index)
    };
    // With boot counting on (ostree 2025.3, `bootloader_entry_filename`): a
    // new entry gets every try; an existing one keeps what the boot loader
    // left in its name (none, once blessed).
    let fname = match (opts.boot_counting_tries, d.tries) {
        (0, _) | (_, Some((0, 0))) => format!("{base}.conf"),
        (max, None) => format!("{base}+{max}.conf"),
        (_, Some((left, done))) => format!("{base}+{left}-{done}.conf"),
    };
    (fname, e)
}

/// Whether the new list can reuse the live entries (only the links change).
/// With boot counting on, a new deployment (no entry yet) always gets new
/// entries, so that it is counted: libostree 2025.3 lets a new deployment
/// whose kernel and arguments equal the replaced one's take over that
/// entry, counter and all, so an update could go live already blessed and
/// never be assessed.
pub fn only_links_change(current: &[BootConfigKey], list: &[BootDeployment], opts: SysrootOpts) -> bool {
    if opts.boot_counting_tries > 0 && list.iter().any(|d| d.tries.is_none()) {
        return false;
    }
    current.len() == list.len()
        && current.iter().zip(list.iter()).enumerate().all(|(i, (c, d))| {
            let (_, e) = entry_for(list, i, 0, 0, SysrootOpts::default());
            c.stateroot == d.stateroot
                && c.bootcsum == d.bootcsum
                && c.kargs == d.kargs_without_ostree()
                && c.title.as_deref() == e.get("title")
                // A counter that changes (a bless, a mark-bad) is in the
                // entry's name: new entries. A new deployment (no counter
                // yet) compares as uncounted, as libostree compares only
                // kernels and arguments (with counting off, a new
                // deployment with the same kernel then keeps the entry of
                // the one it replaces, as in libostree; with it on, see
                // above).
                && c.tries.unwrap_or((0, 0)) == d.tries.unwrap_or((0, 0))
        })
}

#[context("Syncing the directory {what}")]
fn sync_dir(dir: &Dir, what: &str) -> Result<()> {
    let fd = rustix::fs::openat(dir.as_fd(), ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fsync(&fd).with_context(|| format!("fsync of {what}"))?;
    Ok(())
}

/// Freeze and thaw the file system of `dir` (FIFREEZE/FITHAW): this
/// checkpoints its journal. Bootloaders read the file system without
/// replaying the journal (GRUB on ext4), so a rename that is only in the
/// journal is invisible to them while the kernel sees it: after a power cut
/// GRUB would boot one list and the system see another. libostree does the
/// same cycle. File systems that cannot freeze (tmpfs, overlayfs) are
/// skipped.
///
/// A frozen file system blocks every writer until it is thawed, so a
/// watchdog process is armed first (see [`crate::sys::ThawWatchdog`]): it
/// thaws if this process dies or stalls between the two calls, and ignores
/// the signals a shell or systemd sends.
fn freeze_thaw(dir: &Dir, what: &str) -> Result<()> {
    let fd = rustix::fs::openat(dir.as_fd(), ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let timeout_ms = std::env::var("TREEBOOT_FREEZE_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::sys::THAW_TIMEOUT_MS);
    let watchdog = crate::sys::ThawWatchdog::arm(fd.as_fd(), timeout_ms)
        .with_context(|| format!("Starting the thaw watchdog for {what}"))?;
    // Nothing between the freeze and the thaw may write to a file: if it
    // lived on the frozen file system (a log, stderr redirected to
    // /var/tmp), it would block until the watchdog's timeout.
    let frozen = crate::sys::fifreeze(fd.as_fd());
    if frozen.is_ok() {
        failpoint::hit_without_log("swap::frozen");
        // EINVAL: already thawed (by the watchdog, after a stall).
        match crate::sys::fithaw(fd.as_fd()) {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(anyhow!(e).context(format!("Thawing {what}"))),
        }
    }
    watchdog.disarm();
    if frozen.is_ok() {
        crate::timing::step(&format!("froze and thawed {what}"));
    }
    match frozen {
        Ok(()) => Ok(()),
        // Cannot freeze (tmpfs, overlay), or someone else froze it.
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOTTY | rustix::io::Errno::INVAL | rustix::io::Errno::BUSY) => Ok(()),
        Err(rustix::io::Errno::PERM) => {
            crate::warn!("cannot freeze {what} to flush its journal (not permitted)");
            Ok(())
        }
        Err(e) => Err(anyhow!(e).context(format!("Freezing {what}"))),
    }
}

#[context("Syncing the file system of {what}")]
fn syncfs(dir: &Dir, what: &str) -> Result<()> {
    let fd = rustix::fs::openat(dir.as_fd(), ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::syncfs(&fd).with_context(|| format!("syncfs of {what}"))?;
    Ok(())
}

/// Replace the symlink `dir/name` by one pointing at `target`: write
/// `name.tmp` and rename it over `name`.
fn replace_symlink(dir: &Dir, name: &str, target: &str) -> Result<()> {
    let tmp = format!("{name}.tmp");
    dir.remove_file_optional(&tmp).with_context(|| format!("Removing a stale {tmp}"))?;
    dir.symlink(target, &tmp)
        .with_context(|| format!("Creating symlink {tmp} -> {target}"))?;
    dir.rename(&tmp, dir, name)
        .with_context(|| format!("Renaming {tmp} over {name}"))?;
    Ok(())
}

/// Fill `ostree/boot.B.S/` with one link per deployment.
fn write_bootlinks(ostree: &Dir, bv: u32, sub: u32, list: &[BootDeployment], serials: &[u32]) -> Result<()> {
    let dname = format!("boot.{bv}.{sub}");
    fsutil::remove_all_at(ostree, dname.as_ref()).with_context(|| format!("Removing stale ostree/{dname}"))?;
    ostree.create_dir(&dname).with_context(|| format!("Creating ostree/{dname}"))?;
    let links = fsutil::open_subdir(ostree, "ostree", &dname)?;
    for (d, serial) in list.iter().zip(serials) {
        let sub = format!("{}/{}", d.stateroot, d.bootcsum);
        links.create_dir_all(&sub).with_context(|| format!("Creating ostree/{dname}/{sub}"))?;
        failpoint::hit("swap::bootlink");
        let target = format!("../../../deploy/{}/deploy/{}.{}", d.stateroot, d.csum, d.serial);
        links
            .symlink(&target, format!("{sub}/{serial}"))
            .with_context(|| format!("Creating ostree/{dname}/{sub}/{serial}"))?;
    }
    Ok(())
}

/// Write `list` as the new deployment list. `bootversion`/`subbootversion`
/// are the live ones; `current` describes the live entries.
#[context("Writing the deployment list")]
pub fn write_deployments(
    root: &Dir,
    bootversion: u32,
    subbootversion: u32,
    current: &[BootConfigKey],
    list: &[BootDeployment],
    grub_cfg: Option<crate::bootloader::grub::Renderer>,
    opts: SysrootOpts,
) -> Result<SwapResult> {
    let ostree = root.open_dir("ostree").context("Opening ostree/")?;
    let boot = root.open_dir("boot").context("Opening /boot")?;
    let separate_boot = rustix::fs::fstat(root.as_fd()).context("stat of the sysroot")?.st_dev
        != rustix::fs::fstat(boot.as_fd()).context("stat of /boot")?.st_dev;
    let serials = bootserials(list);
    let layout = LoaderLayout::detect(&boot)?;
    let has_loader = match layout {
        LoaderLayout::Symlink => boot.symlink_metadata_optional("loader")?.is_some(),
        LoaderLayout::Directory => fat::read_bootversion(&boot, "loader")?.is_some(),
    };

    if has_loader && only_links_change(current, list, opts) {
        let new_sub = 1 - subbootversion;
        failpoint::hit("swap::links-only::before-bootlinks");
        write_bootlinks(&ostree, bootversion, new_sub, list, &serials)?;
        failpoint::hit("swap::links-only::before-sync");
        syncfs(root, "the sysroot")?;
        failpoint::hit("swap::links-only::before-rename");
        replace_symlink(&ostree, &format!("boot.{bootversion}"), &format!("boot.{bootversion}.{new_sub}"))?;
        failpoint::hit("swap::links-only::after-rename");
        sync_dir(&ostree, "ostree/")?;
        return Ok(SwapResult {
            bootversion,
            subbootversion: new_sub,
            full: false,
        });
    }

    let new_bv = if has_loader { 1 - bootversion } else { 1 };
    if layout == LoaderLayout::Directory {
        return write_list_directory(root, &ostree, &boot, new_bv, list, &serials, grub_cfg, opts);
    }
    // 1. remove-stale
    failpoint::hit("swap::remove-stale");
    let loader_dir = format!("loader.{new_bv}");
    fsutil::remove_all_at(&boot, loader_dir.as_ref()).with_context(|| format!("Removing stale /boot/{loader_dir}"))?;
    boot.remove_file_optional("loader.tmp").context("Removing a stale /boot/loader.tmp")?;
    boot.remove_file_optional(LOADER_PREV).context("Removing a stale /boot/loader.prev")?;
    // `boot/boot -> .` lets `/boot/...` paths work whether or not /boot is
    // its own partition (GRUB and the entries rely on it).
    if boot.symlink_metadata_optional("boot")?.is_none() {
        boot.symlink(".", "boot").context("Creating /boot/boot -> .")?;
    }
    // The sub-boot version alternates per boot version, as in libostree.
    let new_sub = next_subbootversion(&ostree, new_bv);

    // 2. write-entries
    failpoint::hit("swap::write-entries");
    boot.create_dir(&loader_dir).with_context(|| format!("Creating /boot/{loader_dir}"))?;
    let entries_dir = format!("{loader_dir}/entries");
    boot.create_dir(&entries_dir).with_context(|| format!("Creating /boot/{entries_dir}"))?;
    let entries = fsutil::open_subdir(&boot, "/boot", &entries_dir)?;
    let mut written = Vec::new();
    for (i, serial) in serials.iter().enumerate() {
        let (fname, e) = entry_for(list, i, new_bv, *serial, opts);
        entries
            .atomic_write_with_perms(&fname, e.serialize(), Permissions::from_mode(0o644))
            .map_err(|err| enospc(err, &format!("/boot/{entries_dir}/{fname}")))?;
        failpoint::hit("swap::after-entry");
        written.push((fname, e));
    }

    // 3. write-bootlinks
    failpoint::hit("swap::write-bootlinks");
    write_bootlinks(&ostree, new_bv, new_sub, list, &serials)?;
    // 4. swap-bootlinks
    failpoint::hit("swap::swap-bootlinks");
    replace_symlink(&ostree, &format!("boot.{new_bv}"), &format!("boot.{new_bv}.{new_sub}"))?;

    // 5. write-grub
    let menu = menu_items(&written, list);
    let counted = menu.iter().any(|m| m.file.contains('+'));
    if let Some(gen) = grub_cfg {
        failpoint::hit("swap::write-grub");
        let cfg = gen(&menu);
        boot.atomic_write_with_perms(format!("{loader_dir}/grub.cfg"), cfg, Permissions::from_mode(0o644))
            .map_err(|err| enospc(err, &format!("/boot/{loader_dir}/grub.cfg")))?;
        // 5b. grubenv: GRUB counts tries there, and `save_env` cannot
        // create it: it must exist before a counted entry goes live.
        if counted {
            failpoint::hit("swap::grubenv-create");
            grub::ensure_env(&boot)?;
        }
    }

    // 6. loader-tmp
    failpoint::hit("swap::loader-tmp");
    boot.symlink(&loader_dir, "loader.tmp").context("Creating /boot/loader.tmp")?;
    if has_loader {
        // The symlink itself, not its target (no AT_SYMLINK_FOLLOW).
        rustix::fs::linkat(&boot, "loader", &boot, LOADER_PREV, rustix::fs::AtFlags::empty())
            .context("Linking /boot/loader.prev to the live /boot/loader")?;
    }

    // 7. sync
    failpoint::hit("swap::sync");
    syncfs(root, "the sysroot")?;
    if separate_boot {
        syncfs(&boot, "/boot")?;
    }
    // ...and checkpointed where the bootloader reads it (see freeze_thaw).
    freeze_thaw(&boot, "/boot")?;

    // 8. rename-loader: the commit point.
    failpoint::hit("swap::rename-loader");
    boot.rename("loader.tmp", &boot, "loader").context("Renaming /boot/loader.tmp over /boot/loader")?;

    // 9. sync-boot
    failpoint::hit("swap::sync-boot");
    sync_dir(&boot, "/boot")?;
    if separate_boot {
        syncfs(&boot, "/boot")?;
    }
    freeze_thaw(&boot, "/boot")?;
    // The switch is checkpointed: the old link may go (a cut before this
    // leaves it for the next swap or cleanup).
    boot.remove_file_optional(LOADER_PREV).context("Removing /boot/loader.prev")?;
    // 10. grubenv-prune: the tries variables of deployments no longer
    // counted go, now that no live entry uses them (before the commit a
    // power cut could bring back the old list, whose entries still count
    // with them). A cut before this leaves a stale variable, which the next
    // swap removes.
    if grub_cfg.is_some() {
        failpoint::hit("swap::grubenv-prune");
        let live = counted_tries_vars(&menu);
        if grub::prune_env(&boot, &live)? {
            sync_dir(&boot.open_dir("grub").context("Opening /boot/grub")?, "/boot/grub")?;
            syncfs(&boot, "/boot")?;
            freeze_thaw(&boot, "/boot")?;
        }
    }
    failpoint::hit("swap::done");
    Ok(SwapResult {
        bootversion: new_bv,
        subbootversion: new_sub,
        full: true,
    })
}

/// The sub-boot version the links of boot version `bv` get next: the one
/// `ostree/boot.bv` does not point at (libostree alternates them too).
fn next_subbootversion(ostree: &Dir, bv: u32) -> u32 {
    match ostree.read_link_contents(format!("boot.{bv}")) {
        Ok(t) if t.to_string_lossy() == format!("boot.{bv}.1") => 0,
        _ => 1,
    }
}

/// The directory swap (`/boot` on FAT): see the module documentation for
/// the order and why.
#[allow(clippy::too_many_arguments)]
fn write_list_directory(
    root: &Dir,
    ostree: &Dir,
    boot: &Dir,
    new_bv: u32,
    list: &[BootDeployment],
    serials: &[u32],
    grub_cfg: Option<crate::bootloader::grub::Renderer>,
    opts: SysrootOpts,
) -> Result<SwapResult> {
    // Entry paths are relative to the FAT partition systemd-boot reads
    // them from: no `/boot` prefix there (and no `boot -> .` link to
    // resolve one).
    if opts.bootprefix {
        crate::warn!("sysroot.bootprefix is ignored on a FAT /boot: the entries' paths are relative to the partition they are on");
    }
    let opts = SysrootOpts { bootprefix: false, ..opts };
    // 1. remove-stale: and the name to build under (the next one, if a
    // leftover is unreadable).
    failpoint::hit("swap::remove-stale");
    let build_name = fat::build_dir(boot)?;
    let build = build_name.as_str();
    let new_sub = next_subbootversion(ostree, new_bv);

    // 2. write-entries, in place (see above), then what else `loader/` has.
    failpoint::hit("swap::write-entries");
    boot.create_dir(build).with_context(|| format!("Creating /boot/{build}"))?;
    let built = fsutil::open_subdir(boot, "/boot", build)?;
    built.create_dir("entries").with_context(|| format!("Creating /boot/{build}/entries"))?;
    let entries = fsutil::open_subdir(&built, &format!("/boot/{build}"), "entries")?;
    let mut written = Vec::new();
    for (i, serial) in serials.iter().enumerate() {
        let (fname, e) = entry_for(list, i, new_bv, *serial, opts);
        write_in_place(&entries, &fname, e.serialize().as_bytes(), &format!("/boot/{build}/entries/{fname}"))?;
        failpoint::hit("swap::after-entry");
        written.push((fname, e));
    }
    if boot.symlink_metadata_optional("loader")?.is_some_and(|m| m.is_dir()) {
        let live = fsutil::open_subdir(boot, "/boot", "loader")?;
        carry_over(&live, &built, "/boot/loader", true)?;
    }

    // 3. write-bootlinks, 4. swap-bootlinks (the root file system).
    failpoint::hit("swap::write-bootlinks");
    write_bootlinks(ostree, new_bv, new_sub, list, serials)?;
    failpoint::hit("swap::swap-bootlinks");
    replace_symlink(ostree, &format!("boot.{new_bv}"), &format!("boot.{new_bv}.{new_sub}"))?;

    // 5. write-grub
    let menu = menu_items(&written, list);
    if let Some(gen) = grub_cfg {
        failpoint::hit("swap::write-grub");
        write_in_place(&built, "grub.cfg", gen(&menu).as_bytes(), &format!("/boot/{build}/grub.cfg"))?;
        if menu.iter().any(|m| m.file.contains('+')) {
            failpoint::hit("swap::grubenv-create");
            grub::ensure_env(boot)?;
        }
    }
    // Last: a list without it is not one (step 1 removes it).
    failpoint::hit("swap::write-bootversion");
    write_in_place(&built, fat::BOOTVERSION_FILE, format!("{new_bv}\n").as_bytes(), &format!("/boot/{build}/{}", fat::BOOTVERSION_FILE))?;

    // 6. sync: everything the new list names is on disk before it is live.
    failpoint::hit("swap::sync");
    syncfs(root, "the sysroot")?;
    syncfs(boot, "/boot")?;
    freeze_thaw(boot, "/boot")?;

    // 7. exchange: the commit point.
    failpoint::hit("swap::rename-loader");
    let flags = if boot.symlink_metadata_optional("loader")?.is_some() {
        rustix::fs::RenameFlags::EXCHANGE
    } else {
        rustix::fs::RenameFlags::NOREPLACE
    };
    rustix::fs::renameat_with(boot, build, boot, "loader", flags)
        .map_err(|e| anyhow!(e).context(format!("Exchanging /boot/{build} and /boot/loader (renameat2 RENAME_EXCHANGE needs Linux 6.0 on FAT)")))?;

    // 8. sync-boot
    failpoint::hit("swap::sync-boot");
    sync_dir(boot, "/boot")?;
    syncfs(boot, "/boot")?;
    freeze_thaw(boot, "/boot")?;

    // 9. remove-old: the old list, unless the exchange was cut (then the
    // same check keeps it; the switch above was durable, so it is not).
    failpoint::hit("swap::remove-old");
    fat::remove_dir(boot, build, &format!("/boot/{build} (the old list)"))?;

    // 10. grubenv-prune
    if grub_cfg.is_some() {
        failpoint::hit("swap::grubenv-prune");
        let live = counted_tries_vars(&menu);
        if grub::prune_env(boot, &live)? {
            syncfs(boot, "/boot")?;
        }
    }
    failpoint::hit("swap::done");
    Ok(SwapResult {
        bootversion: new_bv,
        subbootversion: new_sub,
        full: true,
    })
}

/// GRUB's menu items: each written entry with the deployment it boots.
fn menu_items<'a>(written: &'a [(String, BlsEntry)], list: &'a [BootDeployment]) -> Vec<grub::MenuItem<'a>> {
    written
        .iter()
        .zip(list)
        .map(|((file, entry), d)| grub::MenuItem { file, entry, csum: &d.csum, serial: d.serial })
        .collect()
}

/// GRUB's tries variables of the counted entries of `menu` (those still in
/// use after a swap).
fn counted_tries_vars(menu: &[grub::MenuItem]) -> Vec<String> {
    menu.iter().filter(|m| m.file.contains('+')).map(|m| grub::tries_var(m.csum, m.serial)).collect()
}

/// Create `dir/name` with `data` (it must not exist), written and
/// fdatasync'ed; for a directory no reader looks at yet.
fn write_in_place(dir: &Dir, name: &str, data: &[u8], shown: &str) -> Result<()> {
    use std::io::Write;
    let mut f = dir
        .open_with(name, cap_std_ext::cap_std::fs::OpenOptions::new().write(true).create_new(true))
        .map_err(|err| enospc(err, shown))?;
    f.write_all(data).map_err(|err| enospc(err, shown))?;
    f.sync_data().with_context(|| format!("Syncing {shown}"))?;
    Ok(())
}

/// Copy what the live list directory holds besides treeboot's own files
/// (`loader.conf`, `random-seed`, `keys/`, other systems' entries) into
/// the new one, so a swap keeps them.
fn carry_over(live: &Dir, new: &Dir, shown: &str, top: bool) -> Result<()> {
    for n in fsutil::read_names(live)? {
        let Some(n) = n.to_str() else { continue };
        let ours = if top {
            n == fat::BOOTVERSION_FILE || n == "grub.cfg" || n.starts_with(".treeboot-probe-")
        } else {
            crate::formats::bls::entry_file_is_ostree(n)
        };
        if ours {
            continue;
        }
        let m = live.symlink_metadata(n)?;
        if m.is_dir() {
            new.ensure_dir_with(n, &cap_std_ext::cap_std::fs::DirBuilder::new()).with_context(|| format!("Creating {n} in the new list"))?;
            carry_over(&live.open_dir(n)?, &new.open_dir(n)?, &format!("{shown}/{n}"), false)?;
        } else if m.is_file() {
            let data = live.read(n).with_context(|| format!("Reading {shown}/{n}"))?;
            write_in_place(new, n, &data, &format!("{shown}/{n} (copied into the new list)"))?;
        }
    }
    Ok(())
}

fn enospc(err: std::io::Error, path: &str) -> anyhow::Error {
    if err.raw_os_error() == Some(libc::ENOSPC) {
        anyhow!("/boot is full: writing {path} failed (no space left on device)")
    } else {
        anyhow!(err).context(format!("Writing {path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(stateroot: &str, bootcsum: &str, version: &str) -> BootDeployment {
        BootDeployment {
            stateroot: stateroot.into(),
            csum: "c".repeat(64),
            serial: 0,
            bootcsum: bootcsum.into(),
            kargs: Kargs::parse("root=LABEL=root").unwrap(),
            kver: "6.1.0-test".into(),
            files: BootFiles { initramfs: true, ..Default::default() },
            tries: None,
            pid1_init: None,
            os_name: "Test OS 1".into(),
            version: Some(version.into()),
        }
    }

    #[test]
    fn entries_match_ostree_2022_7() {
        let b = "a".repeat(64);
        let list = vec![dep("testos", &b, "2.0"), dep("testos", &b, "1.0")];
        let s = bootserials(&list);
        assert_eq!(s, vec![0, 1]);
        let (name, e) = entry_for(&list, 1, 0, s[1], SysrootOpts { bootloader_naming_1: true, ..Default::default() });
        assert_eq!(name, "ostree-1-testos.conf");
        assert_eq!(
            e.serialize(),
            format!("title Test OS 1 1.0 (ostree:1)\nversion 1\noptions root=LABEL=root ostree=/ostree/boot.0/testos/{b}/1\nlinux /ostree/testos-{b}/vmlinuz-6.1.0-test\ninitrd /ostree/testos-{b}/initramfs-6.1.0-test.img\n")
        );
    }

    /// The keys of optional kernel files, in libostree's order (HEAD's
    /// install_deployment_kernel): aboot and abootcfg after initrd, fdtdir
    /// after them; none without its file.
    #[test]
    fn aboot_and_fdtdir_keys_only_with_their_files() {
        let b = "a".repeat(64);
        let mut d = dep("testos", &b, "1.0");
        d.files = BootFiles { initramfs: true, aboot: true, dtb: true, devicetree: false };
        let (_, e) = entry_for(std::slice::from_ref(&d), 0, 1, 0, SysrootOpts::default());
        let c = "c".repeat(64);
        assert!(
            e.serialize().ends_with(&format!(
                "initrd /ostree/testos-{b}/initramfs-6.1.0-test.img\naboot /ostree/testos-{b}/aboot-6.1.0-test.img\nabootcfg /ostree/deploy/testos/deploy/{c}.0/usr/lib/ostree-boot/aboot.cfg\nfdtdir /ostree/testos-{b}/dtb\n"
            )),
            "{}",
            e.serialize()
        );
        let plain = dep("testos", &b, "1.0");
        let (_, e) = entry_for(std::slice::from_ref(&plain), 0, 1, 0, SysrootOpts::default());
        for k in ["aboot", "abootcfg", "fdtdir", "devicetree"] {
            assert!(e.get(k).is_none(), "{k}: {}", e.serialize());
        }
    }

    /// `sysroot.boot-counting-tries` (ostree 2025.3): new entries get
    /// `+TRIES`, existing ones keep their counters, blessed ones none.
    #[test]
    fn boot_counting_suffixes() {
        let b = "a".repeat(64);
        let mut list = vec![dep("testos", &b, "3.0"), dep("testos", &b, "2.0"), dep("testos", &b, "1.0")];
        list[1].tries = Some((2, 1));
        list[2].tries = Some((0, 0));
        let on = SysrootOpts { boot_counting_tries: 3, ..Default::default() };
        let names: Vec<String> = (0..3).map(|i| entry_for(&list, i, 1, 0, on).0).collect();
        assert_eq!(names, ["ostree-3+3.conf", "ostree-2+2-1.conf", "ostree-1.conf"]);
        let old = SysrootOpts { boot_counting_tries: 3, bootloader_naming_1: true, ..Default::default() };
        assert_eq!(entry_for(&list, 0, 1, 0, old).0, "ostree-3-testos+3.conf");
        assert_eq!(entry_for(&list, 0, 1, 0, SysrootOpts::default()).0, "ostree-3.conf", "off by default");
        assert_eq!(entry_for(&list, 1, 1, 0, SysrootOpts::default()).0, "ostree-2.conf", "off: counters dropped");
    }

    #[test]
    fn titles_name_the_stateroot_when_several() {
        let b = "a".repeat(64);
        let list = vec![dep("testos", &b, "2.0"), dep("other", &b, "9")];
        let (name, e) = entry_for(&list, 1, 1, 1, SysrootOpts { bootloader_naming_1: true, ..Default::default() });
        assert_eq!(name, "ostree-1-other.conf");
        assert_eq!(e.get("title"), Some("Test OS 1 9 (ostree:other:1)"));
        // A version already in the name is not repeated.
        let list = vec![dep("testos", &b, "1")];
        assert_eq!(entry_for(&list, 0, 1, 0, SysrootOpts::default()).1.get("title"), Some("Test OS 1 (ostree:0)"));
        assert_eq!(entry_for(&list, 0, 1, 0, SysrootOpts::default()).0, "ostree-1.conf", "naming 2, the default");
    }
}
