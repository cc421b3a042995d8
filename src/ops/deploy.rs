//! `treeboot deploy`: a commit becomes a bootable deployment.
//!
//! Steps: resolve, check out as `deploy/$csum.$serial`, build `/etc` with the
//! three-way merge, write the origin, install the kernel, mark the deployment
//! immutable, then write the new deployment list (the swap) and clean up.
//! Everything up to the swap only adds files nothing references yet; if a
//! step fails, what it added is removed and the sysroot is as it was.

use anyhow::{anyhow, bail, Context, Result};
use camino::Utf8PathBuf;
use cap_std_ext::cap_std::fs::{Dir, Permissions, PermissionsExt};
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;
use serde::Serialize;

use super::{boot_deployment, commit_list, deployment_os_name, Writer};
use crate::bootloader::kernel;
use crate::bootloader::swap::BootDeployment;
use crate::etcmerge;
use crate::failpoint;
use crate::formats::kargs::Kargs;
use crate::formats::keyfile::KeyFile;
use crate::formats::names::parse_deploy_name;
use crate::fsutil;
use crate::sysroot::{Deployment, Sysroot};

#[derive(Debug, Default, Clone)]
pub struct DeployOpts {
    pub stateroot: Option<String>,
    pub origin_file: Option<Utf8PathBuf>,
    pub karg: Vec<String>,
    pub karg_append: Vec<String>,
    pub karg_proc_cmdline: bool,
    pub karg_none: bool,
    pub not_as_default: bool,
    pub retain: bool,
    pub retain_pending: bool,
    pub retain_rollback: bool,
    pub no_merge: bool,
    /// The new deployment's origin, as a key file (upgrade and switch keep
    /// the base deployment's other keys); wins over `origin_file`.
    pub origin: Option<KeyFile>,
}

/// A checked-out, merged deployment with its kernel in `/boot`, not yet in
/// the deployment list.
/// `treeboot deploy --json`: the new deployment.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Prepared {
    pub stateroot: String,
    pub checksum: String,
    pub serial: u32,
    pub version: Option<String>,
    pub kernel: String,
    pub bootcsum: String,
    pub etc: etcmerge::PlanSummary,
    #[serde(skip)]
    pub boot: BootDeployment,
    #[serde(skip)]
    pub merge: Option<Deployment>,
    /// The equal /etc pairs found (staging only), for finalize.
    #[serde(skip)]
    pub etc_cache: Option<etcmerge::DiffCache>,
}

/// `ostree/deploy/$stateroot/backing/$name` for the deployment directory
/// `ostree/deploy/$stateroot/deploy/$name`.
pub fn backing_path(deploy_path: &str) -> Option<String> {
    let (stateroot_dir, name) = deploy_path.rsplit_once("/deploy/")?;
    Some(format!("{stateroot_dir}/backing/{name}"))
}

/// Removes a half-made deployment (directory, origin, backing) unless disarmed.
struct NewDeploymentGuard<'a> {
    root: &'a Dir,
    path: String,
    armed: bool,
}

impl Drop for NewDeploymentGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = set_immutable(self.root, &self.path, false);
            let _ = self.root.remove_dir_all(&self.path);
            let _ = self.root.remove_file_optional(format!("{}.origin", self.path));
            if let Some(b) = backing_path(&self.path) {
                let _ = self.root.remove_dir_all(b);
            }
        }
    }
}

/// Create (or complete) a deployment's backing directory,
/// `ostree/deploy/$stateroot/backing/$name/root-transient/{upper,work}`, as
/// libostree does for every deployment since 2024.1 (commit 8fbaebac,
/// prepare-root's `root.transient`, whose overlay lives there): `backing`,
/// its entry, `root-transient` and `work` mode 0700, `upper` the mode of
/// the deployment root (the overlay's `/`). Removed before the deployment
/// by cleanup. Existing directories are kept.
#[context("Creating the backing directory of {deploy_path}")]
pub fn ensure_backing(root: &Dir, deploy_path: &str, deploy: &Dir) -> Result<()> {
    use rustix::fs::{mkdirat, Mode};
    let upper_mode = rustix::fs::fstat(deploy)?.st_mode & 0o7777;
    let backing = backing_path(deploy_path).ok_or_else(|| anyhow!("{deploy_path} is not a deployment directory"))?;
    let base = backing.rsplit_once('/').map_or("", |(b, _)| b);
    let dirs = [
        (base.to_string(), 0o700),
        (backing.clone(), 0o700),
        (format!("{backing}/root-transient"), 0o700),
        (format!("{backing}/root-transient/work"), 0o700),
        (format!("{backing}/root-transient/upper"), upper_mode),
    ];
    for (d, mode) in dirs {
        match mkdirat(root, d.as_str(), Mode::from_raw_mode(mode)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(anyhow!(e).context(format!("Creating {d}"))),
        }
    }
    Ok(())
}

/// Set or clear the immutable attribute of a deployment root (`chattr +i`).
/// File systems without the attribute (tmpfs, overlayfs) are skipped.
pub fn set_immutable(root: &Dir, path: &str, on: bool) -> Result<()> {
    use rustix::fs::{IFlags, Mode, OFlags};
    let fd = match rustix::fs::openat(root, path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let flags = match rustix::fs::ioctl_getflags(&fd) {
        Ok(f) => f,
        Err(rustix::io::Errno::NOTTY) | Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::INVAL) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let new = if on { flags | IFlags::IMMUTABLE } else { flags - IFlags::IMMUTABLE };
    if new != flags {
        match rustix::fs::ioctl_setflags(&fd, new) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOTTY) | Err(rustix::io::Errno::OPNOTSUPP) => {}
            Err(e) => return Err(anyhow!(e).context(format!("Setting the immutable attribute of {path}"))),
        }
    }
    Ok(())
}

/// One more than the highest serial of a directory `$csum.N` in `deploy/`.
fn next_serial(root: &Dir, stateroot: &str, csum: &str) -> Result<u32> {
    let d = root.open_dir(format!("ostree/deploy/{stateroot}/deploy"))?;
    let mut next = 0;
    for n in fsutil::read_names(&d)? {
        let Some(n) = n.to_str() else { continue };
        if let Some((c, s)) = parse_deploy_name(n) {
            if c == csum {
                next = next.max(s + 1);
            }
        }
    }
    Ok(next)
}

/// Kernel arguments for a new deployment, with ostree's rules.
pub fn compute_kargs(merge: Option<&Deployment>, opts: &DeployOpts, proc_cmdline: impl Fn() -> Result<String>) -> Result<Kargs> {
    let mut k = if opts.karg_none {
        Kargs::default()
    } else if opts.karg_proc_cmdline {
        let mut k = Kargs::parse(&proc_cmdline()?).map_err(|e| anyhow!("/proc/cmdline: {e}"))?;
        k.remove_key("BOOT_IMAGE");
        k.remove_key("initrd");
        k
    } else {
        merge.map(|m| m.kargs.clone()).unwrap_or_default()
    };
    for a in &opts.karg {
        k.replace(a).map_err(|e| anyhow!("--karg {a}: {e}"))?;
    }
    for a in &opts.karg_append {
        k.append(a).map_err(|e| anyhow!("--karg-append {a}: {e}"))?;
    }
    Ok(k)
}

/// How `/etc` of the new deployment is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcMode {
    /// deploy: copy the new defaults and apply the merge now.
    Merge,
    /// stage: check the merge plan (refuse on conflicts) and copy the new
    /// defaults; the merge itself is applied at finalize, from the `/etc`
    /// the admin has then.
    CheckAndCopyDefaults,
}

crate::refusal!(
    /// A conflict in the /etc merge plan (for exit codes and callers).
    EtcConflict
);

pub fn prepare(w: &Writer, refspec: &str, opts: &DeployOpts) -> Result<Prepared> {
    prepare_with(w, refspec, opts, EtcMode::Merge)
}

/// Everything a new deployment needs before it is listed: checkout, /etc,
/// /var seed, origin, kernel in /boot, immutable bit. On error nothing of it
/// is left (the guard removes the checkout).
#[context("Preparing a deployment of {refspec}")]
pub fn prepare_with(w: &Writer, refspec: &str, opts: &DeployOpts, mode: EtcMode) -> Result<Prepared> {
    let sysroot = &w.sysroot;
    let root = &sysroot.root;
    let stateroot = match &opts.stateroot {
        Some(s) => s.clone(),
        None => sysroot.default_stateroot()?,
    };
    if root.symlink_metadata_optional(format!("ostree/deploy/{stateroot}/var"))?.is_none() {
        bail!("stateroot {stateroot:?} does not exist: run `treeboot os-init {stateroot}` first");
    }
    root.create_dir_all(format!("ostree/deploy/{stateroot}/deploy"))?;
    crate::timing::step("deploy: start");
    let csum = w.store()?.resolve(refspec)?;
    // A commit whose boot assessment failed (its entry marked bad, `+0-N`)
    // may be deployed again, but not without a word.
    for d in sysroot.deployments.iter().filter(|d| d.csum == csum) {
        if let Some((0, done)) = d.tries {
            if done > 0 {
                crate::warn!(
                    "commit {csum} is also deployment {} (index {}), whose boot assessment failed ({done} failed tries, entry {}): deploying it again",
                    d.name(),
                    d.index,
                    d.entry_file.as_deref().unwrap_or("?")
                );
            }
        }
    }
    let version = sysroot.commit_version(&csum)?;
    let merge = if opts.no_merge { None } else { sysroot.merge_deployment(&stateroot).cloned() };
    let origin = origin_for(refspec, opts)?;
    let kargs = compute_kargs(merge.as_ref(), opts, || Ok(std::fs::read_to_string("/proc/cmdline")?))?;

    let serial = next_serial(root, &stateroot, &csum)?;
    let rel = format!("ostree/deploy/{stateroot}/deploy/{csum}.{serial}");
    let deploy_parent = root.open_dir(format!("ostree/deploy/{stateroot}/deploy"))?;
    failpoint::hit("deploy::checkout");
    let mut guard = NewDeploymentGuard { root, path: rel.clone(), armed: true };
    let progress = crate::output::Progress::start("checkout", &format!("Checking out {}", &csum[..csum.len().min(12)]), None, false);
    w.store()?.checkout(&csum, &deploy_parent, &format!("{csum}.{serial}"))?;
    progress.finish();
    let deploy = root.open_dir(&rel)?;
    ensure_backing(root, &rel, &deploy)?;
    crate::timing::step("deploy: checkout");

    check_etc_layout(&deploy, &csum)?;
    let k = kernel::find_kernel(&deploy, &format!("commit {csum}"))?;
    // Without an initramfs the kernel must run a prepare-root as init.
    let pid1 = match k.initramfs {
        Some(_) => None,
        None => Some(crate::bootloader::swap::pid1_init(&deploy)?.ok_or_else(|| {
            anyhow!(
                "commit {csum} has no initramfs in {} and no prepare-root to boot without one ({}): it could not boot",
                k.srcdir,
                crate::bootloader::swap::PID1_INITS.join(" or ")
            )
        })?),
    };
    crate::timing::step("deploy: find kernel");

    // /etc: the new defaults with the admin's changes from the merge deployment.
    failpoint::hit("deploy::etc");
    let progress = crate::output::Progress::start("etc-merge", "Merging /etc", None, false);
    let (summary, etc_cache) = merge_etc(root, merge.as_ref(), &deploy, mode)?;
    progress.finish();

    crate::timing::step("deploy: /etc merge applied");
    // The composefs image, when the deployment's prepare-root.conf (in
    // the /etc it will have) or the repository asks for one.
    let usr_lib_conf = deploy.read_to_string_optional(crate::formats::prepareroot::FILES[0])?;
    let etc_conf = etc_prepare_root_conf(root, merge.as_ref(), &deploy, mode)?;
    if let Some(want) = super::composefs::wanted(usr_lib_conf.as_deref(), etc_conf.as_deref(), w.opts.composefs)? {
        let progress = crate::output::Progress::start("composefs", "Writing the composefs image", None, false);
        super::composefs::write_image(w.store()?, root, &deploy, &csum, want)?;
        progress.finish();
        crate::timing::step("deploy: composefs image");
    }
    seed_var(root, &deploy, &stateroot)?;

    failpoint::hit("deploy::origin");
    root.atomic_write_with_perms(format!("{rel}.origin"), origin, Permissions::from_mode(0o644))
        .with_context(|| format!("Writing {rel}.origin"))?;

    failpoint::hit("deploy::kernel");
    kernel::install_kernel(root, &deploy, &stateroot, &k)?;
    failpoint::hit("deploy::immutable");
    set_immutable(root, &rel, true)?;
    crate::timing::step("deploy: origin, kernel, immutable");

    let boot = BootDeployment {
        stateroot: stateroot.clone(),
        csum: csum.clone(),
        serial,
        bootcsum: k.bootcsum.clone(),
        kargs,
        kver: k.kver.clone(),
        files: k.boot_files(),
        tries: None,
        pid1_init: pid1,
        os_name: deployment_os_name(&deploy)?,
        version: version.clone(),
    };
    guard.armed = false;
    Ok(Prepared {
        stateroot,
        checksum: csum,
        serial,
        version,
        kernel: k.kver,
        bootcsum: k.bootcsum,
        etc: summary,
        boot,
        merge,
        etc_cache,
    })
}

/// The origin file of a new deployment: the one given (checked), or
/// `[origin] refspec=`.
fn origin_for(refspec: &str, opts: &DeployOpts) -> Result<String> {
    if let Some(kf) = &opts.origin {
        return Ok(kf.serialize());
    }
    match &opts.origin_file {
        Some(f) => {
            let data = std::fs::read(f).with_context(|| format!("Reading origin file {f}"))?;
            let kf = KeyFile::parse_bytes(&data).map_err(|e| anyhow!("{f}: {e}"))?;
            if !kf.has_group("origin") {
                bail!("{f}: no [origin] group");
            }
            Ok(kf.serialize())
        }
        None => {
            let mut kf = KeyFile::new();
            kf.set("origin", "refspec", refspec);
            Ok(kf.serialize())
        }
    }
}

/// A commit's configuration must be in /usr/etc (ostree's layout), and only
/// there.
fn check_etc_layout(deploy: &Dir, csum: &str) -> Result<()> {
    let has = |p: &str| -> Result<bool> { Ok(deploy.symlink_metadata_optional(p)?.is_some()) };
    match (has("usr/etc")?, has("etc")?) {
        (true, false) => Ok(()),
        (false, true) => bail!("commit {csum} has /etc but no /usr/etc: commit the default configuration as /usr/etc"),
        (false, false) => bail!("commit {csum} has no /usr/etc"),
        (true, true) => bail!("commit {csum} has both /etc and /usr/etc; only /usr/etc is allowed"),
    }
}

/// The new deployment's /etc: its defaults with the admin's changes from
/// the merge deployment (`Merge`), or every default and the plan's check
/// only (`CheckAndCopyDefaults`, staging: finalize merges at shutdown, and
/// gets the diff of the merge deployment's /etc as a cache).
fn merge_etc(root: &Dir, merge: Option<&Deployment>, deploy: &Dir, mode: EtcMode) -> Result<(etcmerge::PlanSummary, Option<etcmerge::DiffCache>)> {
    let new_defaults = deploy.open_dir("usr/etc").context("Opening usr/etc of the new deployment")?;
    let Some(m) = merge else {
        etcmerge::copy_tree(&new_defaults, deploy, "etc")?;
        return Ok((etcmerge::PlanSummary::default(), None));
    };
    let mdir = root.open_dir(m.path().as_std_path()).with_context(|| format!("Opening the merge deployment {}", m.path()))?;
    let old_defaults = mdir.open_dir("usr/etc").context("Opening usr/etc of the merge deployment")?;
    let current = mdir.open_dir("etc").context("Opening etc of the merge deployment")?;
    let mut cache = etcmerge::DiffCache::default();
    let record = (mode == EtcMode::CheckAndCopyDefaults).then_some(&mut cache);
    let plan = etcmerge::plan_cached(&old_defaults, &current, &new_defaults, None, record)?;
    crate::timing::step("deploy: /etc plan");
    if let Some(msg) = plan.conflict_message() {
        return Err(EtcConflict(msg).into());
    }
    match mode {
        EtcMode::Merge => {
            etcmerge::copy_defaults_for(&plan, &new_defaults, deploy, "etc")?;
            crate::timing::step("deploy: /etc copy of new defaults");
            let etc = deploy.open_dir("etc").context("Opening etc of the new deployment")?;
            etcmerge::apply(&plan, &current, &etc)?;
            crate::say!(
                "Copying /etc changes: {} modified, {} removed, {} added",
                plan.summary.modified, plan.summary.removed, plan.summary.added
            );
            Ok((plan.summary, None))
        }
        EtcMode::CheckAndCopyDefaults => {
            // Finalize re-plans against the /etc of that moment, so every
            // default must be there.
            etcmerge::copy_tree(&new_defaults, deploy, "etc")?;
            crate::timing::step("deploy: /etc copy of new defaults");
            Ok((plan.summary, Some(cache)))
        }
    }
}

/// prepare-root.conf relative to `/etc` (the deployment's, its merge
/// deployment's, and their defaults under `usr/etc`).
const PREPARE_ROOT_CONF_ETC: &str = "ostree/prepare-root.conf";

/// The `etc/ostree/prepare-root.conf` the new deployment will have. Once
/// merged (deploy), its own. Staged, the merge runs at finalize: the
/// admin's file when they changed, added or removed it (the three-way
/// merge keeps a local change; a conflict was refused already), the new
/// default otherwise. Read at stage time: a later change of it applies
/// from the next deployment on (docs/composefs.md).
fn etc_prepare_root_conf(root: &Dir, merge: Option<&Deployment>, deploy: &Dir, mode: EtcMode) -> Result<Option<String>> {
    let own = || deploy.read_to_string_optional(format!("etc/{PREPARE_ROOT_CONF_ETC}"));
    let Some(m) = merge.filter(|_| mode == EtcMode::CheckAndCopyDefaults) else { return Ok(own()?) };
    let mdir = root.open_dir(m.path().as_std_path()).with_context(|| format!("Opening the merge deployment {}", m.path()))?;
    let current = mdir.read_to_string_optional(format!("etc/{PREPARE_ROOT_CONF_ETC}"))?;
    let old_default = mdir.read_to_string_optional(format!("usr/etc/{PREPARE_ROOT_CONF_ETC}"))?;
    if current != old_default {
        return Ok(current);
    }
    Ok(own()?)
}

/// Seed the stateroot's `/var` from the commit when it is empty, and leave
/// the SELinux relabel stamp ostree leaves.
fn seed_var(root: &Dir, deploy: &Dir, stateroot: &str) -> Result<()> {
    let var_rel = format!("ostree/deploy/{stateroot}/var");
    let var = root.open_dir(&var_rel)?;
    if fsutil::read_names(&var)?.is_empty() {
        if let Some(src) = deploy.open_dir_optional("var")? {
            for n in fsutil::read_names(&src)? {
                etcmerge::apply::copy_entry(&src, &var, &n, &std::path::Path::new("/var").join(&n))?;
            }
            if deploy.symlink_metadata_optional("usr/lib/tmpfiles.d")?.is_none() {
                crate::ops::init::legacy_var_init(&var)?;
            }
        }
    }
    if var.symlink_metadata_optional(".ostree-selabeled")?.is_none() {
        var.atomic_write_with_perms(".ostree-selabeled", "", Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// Which deployments to keep and where the new one goes, as libostree's
/// `simple_write_deployment` does. `None` in the result is the new one.
pub fn new_order(sysroot: &Sysroot, new_stateroot: &str, merge: Option<&Deployment>, opts: &DeployOpts) -> Vec<Option<usize>> {
    // (The staged deployment is not in `deployments`: it is never kept.)
    let booted = sysroot.booted();
    let mut out = Vec::new();
    let mut added = false;
    if !opts.not_as_default {
        out.push(None);
        added = true;
    }
    let mut before_booted = booted.is_some();
    for (i, d) in sysroot.deployments.iter().enumerate() {
        let is_booted = booted.is_some_and(|b| b.same(d));
        let is_merge = merge.is_some_and(|m| m.same(d));
        if is_booted {
            before_booted = false;
        }
        let keep = d.stateroot != new_stateroot
            || opts.retain
            || is_booted
            || is_merge
            || d.pinned()
            || (opts.retain_pending && before_booted)
            || (opts.retain_rollback && !before_booted && !is_booted);
        if keep {
            out.push(Some(i));
        }
        if !added && (is_booted || is_merge) {
            out.push(None);
            added = true;
        }
    }
    if !added {
        out.push(None);
    }
    out
}

/// The deployment list for an order from [`new_order`], `new` in its slot.
pub fn list_from_order(sysroot: &Sysroot, order: &[Option<usize>], new: &BootDeployment) -> Result<Vec<BootDeployment>> {
    order
        .iter()
        .map(|slot| match slot {
            None => Ok(new.clone()),
            Some(i) => boot_deployment(sysroot, &sysroot.deployments[*i]),
        })
        .collect()
}

pub fn deploy(w: &mut Writer, refspec: &str, opts: &DeployOpts) -> Result<Prepared> {
    let p = prepare(w, refspec, opts)?;
    // A plain deploy replaces a staged deployment, as in libostree: forget
    // the record; cleanup then removes its directory.
    if let Some(st) = w.sysroot.staged.take() {
        super::stage::forget_staged(&w.sysroot.run)?;
        w.sysroot.staged_record = None;
        crate::say!("Dropped the staged deployment {}", st.name());
    }
    let order = new_order(&w.sysroot, &p.stateroot, p.merge.as_ref(), opts);
    let list = list_from_order(&w.sysroot, &order, &p.boot)?;
    if let Some(same) = w.sysroot.deployments.iter().find(|d| d.csum == p.checksum && d.stateroot == p.stateroot) {
        crate::say!("Commit {} is already deployed as {}: deploying it again as {}.{}", p.checksum, same.name(), p.checksum, p.serial);
    }
    // What the new list leaves out (no slot of the order names it), said
    // rather than done silently.
    let dropped: Vec<String> = w
        .sysroot
        .deployments
        .iter()
        .enumerate()
        .filter(|(i, _)| !order.contains(&Some(*i)))
        .map(|(_, d)| format!("{} {}", d.stateroot, d.name()))
        .collect();
    if let Err(e) = commit_list(w, &list) {
        // Failed before the new list went live (a full /boot, say): the
        // new deployment, its kernel and the half-written boot version are
        // not referenced; remove them now rather than at the next cleanup.
        if let Ok(s) = w.sysroot.reload() {
            if !s.deployments.iter().any(|d| d.csum == p.checksum && d.serial == p.serial && d.stateroot == p.stateroot) {
                w.sysroot = s;
                if let Err(ce) = super::cleanup::cleanup_with(w, false) {
                    crate::warn!("removing what the failed deploy left: {ce:#}");
                }
            }
        }
        return Err(e);
    }
    for d in dropped {
        crate::say!("Removed deployment {d}: no longer listed (--retain keeps every deployment)");
    }
    Ok(p)
}
