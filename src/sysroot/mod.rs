//! The model of an ostree sysroot: boot versions, deployments in boot order,
//! which one is booted, staged or pinned.
//!
//! Loading is read-only. The list of deployments comes from the BLS entries of
//! the current boot version, as libostree reads it: each entry's `ostree=`
//! argument is resolved through `ostree/boot.N.M` to a deployment directory,
//! and entries are ordered by their `version` key, highest (the default) first.

pub mod lock;
pub mod opts;
pub mod refs;
pub mod runstate;

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use cap_std_ext::cap_std::{self, fs::Dir};
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;
use cap_std_ext::cap_std::fs::MetadataExt;

use crate::bootloader::fat::LoaderLayout;
use crate::formats::bls::{entry_file_is_ostree, BlsEntry};
use crate::formats::kargs::Kargs;
use crate::formats::keyfile::KeyFile;
use crate::formats::names::{parse_deploy_name, parse_ostree_karg};

pub use lock::SysrootLock;
pub use runstate::RunState;

/// Where finalize reports a failure for the next boot to see (in /boot, so
/// that it survives the reboot).
pub const FAILURE_STAMP: &str = "boot/ostree/finalize-failure.stamp";

/// One deployment as the bootloader sees it.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub index: usize,
    pub stateroot: String,
    pub csum: String,
    pub serial: u32,
    pub bootcsum: String,
    pub bootserial: u32,
    /// Kernel arguments as in the entry, `ostree=` included (it keeps its
    /// place when the arguments are rewritten, as libostree does).
    pub kargs: Kargs,
    /// The BLS entry it was read from (None for a deployment that is being
    /// added and has no entry yet).
    pub entry: Option<BlsEntry>,
    /// The name of that entry's file in `boot/loader.N/entries`.
    pub entry_file: Option<String>,
    /// Boot counting: (tries left, tries done) while the entry is being
    /// assessed (`+LEFT-DONE` in its name), as the boot loader counted
    /// them: systemd-boot renames the entry, GRUB lowers its grubenv
    /// variable ([`crate::bootloader::grub::effective_tries`]). None when
    /// the entry is not counted (blessed, or counting off).
    pub tries: Option<(u64, u64)>,
    pub origin: Option<KeyFile>,
    pub booted: bool,
    pub staged: bool,
}

/// Why and when a deployment's boot assessment failed, as kept in its
/// origin's `[libostree-transient]` group: a deployment made from this one
/// does not inherit it (both libostree and treeboot drop the group for a
/// new origin), and it goes with the deployment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct BootFailure {
    /// When it was recorded, RFC 3339 (UTC).
    pub time: String,
    /// Failed tries counted by the boot loader.
    pub tries: u64,
    pub reason: String,
}

impl BootFailure {
    pub const GROUP: &'static str = "libostree-transient";
    pub const TIME: &'static str = "treeboot-boot-failed";
    pub const TRIES: &'static str = "treeboot-boot-failed-tries";
    pub const REASON: &'static str = "treeboot-boot-failed-reason";
}

impl Deployment {
    pub fn name(&self) -> String {
        format!("{}.{}", self.csum, self.serial)
    }

    /// Path of the deployment root, relative to the sysroot.
    pub fn path(&self) -> Utf8PathBuf {
        format!("ostree/deploy/{}/deploy/{}", self.stateroot, self.name()).into()
    }

    pub fn origin_path(&self) -> Utf8PathBuf {
        format!("ostree/deploy/{}/deploy/{}.origin", self.stateroot, self.name()).into()
    }

    /// `[libostree-transient] pinned`, read as libostree reads it: a value
    /// that is not a boolean is false.
    pub fn pinned(&self) -> bool {
        self.origin
            .as_ref()
            .and_then(|o| o.get_bool("libostree-transient", "pinned").ok().flatten())
            .unwrap_or(false)
    }

    /// The failure of this deployment's boot assessment, once recorded
    /// (the permanent rollback, or `mark-bad`): transient state of its
    /// origin, like `pinned` ([`BootFailure`]).
    pub fn boot_failure(&self) -> Option<BootFailure> {
        let o = self.origin.as_ref()?;
        let time = o.get(BootFailure::GROUP, BootFailure::TIME)?.into_owned();
        Some(BootFailure {
            time,
            tries: o.get(BootFailure::GROUP, BootFailure::TRIES).and_then(|t| t.parse().ok()).unwrap_or(0),
            reason: o.get(BootFailure::GROUP, BootFailure::REASON).map(|r| r.into_owned()).unwrap_or_default(),
        })
    }

    /// `[origin] refspec`, what ostree pulls and upgrades from.
    pub fn refspec(&self) -> Option<String> {
        Some(self.origin.as_ref()?.get("origin", "refspec")?.into_owned())
    }

    /// `[origin] container-image-reference`, written by bootc and
    /// rpm-ostree for a deployment of a container image
    /// (`ostree-unverified-registry:quay.io/...`).
    pub fn container_image(&self) -> Option<String> {
        Some(self.origin.as_ref()?.get("origin", "container-image-reference")?.into_owned())
    }

    /// Same deployment (stateroot, checksum and serial).
    pub fn same(&self, other: &Deployment) -> bool {
        self.stateroot == other.stateroot && self.csum == other.csum && self.serial == other.serial
    }
}

pub struct Sysroot {
    pub root: Dir,
    /// How messages name the sysroot (it is only ever reached through `root`).
    pub path: Utf8PathBuf,
    /// The running system's `/run` (or what stands for it).
    pub run: RunState,
    pub bootversion: u32,
    pub subbootversion: u32,
    /// `boot/loader -> loader.N`, or the directory `boot/loader/` of a
    /// FAT `/boot`.
    pub layout: crate::bootloader::fat::LoaderLayout,
    /// The bootable deployments (those with an entry), default first.
    pub deployments: Vec<Deployment>,
    /// The staged deployment, when this sysroot is the booted one and
    /// `/run/ostree/staged-deployment` names one. In user-facing indices it
    /// comes first (index 0), as in libostree.
    pub staged: Option<Deployment>,
    pub staged_record: Option<crate::formats::runstate::Staged>,
    /// Finalization of the staged deployment is locked (the record's
    /// `locked` key or the legacy lock file).
    pub locked: bool,
    /// A finalize failure not yet acknowledged: the stamp in /boot, or
    /// boot-complete's copy of it during the boot that reported it.
    pub finalize_failure: Option<String>,
    /// What the loader found wrong without failing: two entries with the
    /// same `version`; with [`Sysroot::inspect_at`], every unreadable entry.
    pub problems: Vec<String>,
}

/// What a user-facing index designates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Staged,
    /// Position in `Sysroot::deployments`.
    Deployment(usize),
}

/// Read a symlink named `name` in `dir` whose target must be `prefix0` or
/// `prefix1`. A missing link means 0.
fn read_version_link(dir: &Dir, name: &str, prefix: &str, display: &str) -> Result<u32> {
    match dir.read_link_contents(name) {
        Ok(target) => {
            let t = target.to_string_lossy();
            match t.strip_prefix(prefix) {
                Some("0") => Ok(0),
                Some("1") => Ok(1),
                _ => bail!("{display} points to {t:?}, expected {prefix}0 or {prefix}1"),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(anyhow!(e).context(format!("Reading symlink {display}"))),
    }
}

#[context("Reading origin {path}")]
pub fn read_origin(root: &Dir, path: &Utf8Path) -> Result<Option<KeyFile>> {
    let Some(data) = root.read_optional(path)? else {
        return Ok(None);
    };
    // Any key file is an origin, as for libostree: one without [origin]
    // (or with keys only another tool knows) shows as an unknown type.
    let kf = KeyFile::parse_bytes(&data).map_err(|e| anyhow!("{path}: {e}"))?;
    Ok(Some(kf))
}

impl Sysroot {
    /// Open the sysroot at `path` and load its deployments, with the
    /// running system's `/run`. (The edge where a path becomes handles.)
    pub fn load(path: &Utf8Path) -> Result<Self> {
        let root = Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .with_context(|| format!("Opening {path}"))?;
        Self::load_at(root, path, RunState::open_ambient()?)
    }

    /// Load the sysroot whose root is `root` (named `path` in messages),
    /// with `run` standing for `/run`.
    ///
    /// Readers take no lock, so a writer may swap and clean up while we
    /// read: if loading fails and `boot/loader` changed meanwhile, what we
    /// read was being replaced, and we read again.
    #[context("Loading sysroot {path}")]
    pub fn load_at(root: Dir, path: &Utf8Path, run: RunState) -> Result<Self> {
        // (On FAT the list's boot version is in a file.)
        let loader = |root: &Dir| {
            root.read_link_contents("boot/loader")
                .map(|t| t.to_string_lossy().to_string())
                .ok()
                .or_else(|| root.read_to_string(format!("boot/loader/{}", crate::bootloader::fat::BOOTVERSION_FILE)).ok())
        };
        let mut tries = 0;
        loop {
            let before = loader(&root);
            match Self::load_once(root.try_clone()?, path, run.try_clone()?, true) {
                Ok(s) => return Ok(s),
                Err(_) if tries < 5 && loader(&root) != before => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Load the same sysroot again (after a write).
    pub fn reload(&self) -> Result<Self> {
        Self::load_at(self.root.try_clone()?, &self.path, self.run.try_clone()?)
    }

    /// The model as far as it can be read, for `verify`: an entry that
    /// cannot be read (or names a missing deployment, or one listed twice)
    /// is left out of the list and described in `problems`, instead of
    /// failing the load. What cannot be read at all (the version links, the
    /// entries directory) is still an error.
    pub fn inspect_at(root: Dir, path: &Utf8Path, run: RunState) -> Result<Self> {
        Self::load_once(root, path, run, false)
    }

    fn load_once(root: Dir, path: &Utf8Path, run: RunState, strict: bool) -> Result<Self> {
        if root.symlink_metadata_optional("ostree/deploy")?.is_none() {
            bail!("{path} is not an ostree sysroot: {path}/ostree/deploy does not exist");
        }
        if root.symlink_metadata_optional("boot")?.is_none() {
            bail!("{path}/boot does not exist (is /boot mounted?)");
        }
        let layout = match root.open_dir_optional("boot")? {
            Some(boot) => LoaderLayout::detect(&boot)?,
            None => LoaderLayout::Symlink,
        };
        let bootversion = match layout {
            LoaderLayout::Symlink => read_version_link(&root, "boot/loader", "loader.", &format!("{path}/boot/loader"))?,
            LoaderLayout::Directory => crate::bootloader::fat::read_bootversion(&root.open_dir("boot")?, "loader")
                .with_context(|| format!("Reading {path}/boot/loader"))?
                .unwrap_or(0),
        };
        let subbootversion = read_version_link(
            &root,
            &format!("ostree/boot.{bootversion}"),
            &format!("boot.{bootversion}."),
            &format!("{path}/ostree/boot.{bootversion}"),
        )?;
        let mut sysroot = Sysroot {
            root,
            path: path.to_owned(),
            run,
            bootversion,
            subbootversion,
            layout,
            deployments: Vec::new(),
            staged: None,
            staged_record: None,
            locked: false,
            finalize_failure: None,
            problems: Vec::new(),
        };
        let (deployments, problems) = sysroot.read_deployments(strict)?;
        sysroot.deployments = deployments;
        sysroot.problems = problems;
        sysroot.mark_booted()?;
        if sysroot.booted().is_some() {
            sysroot.load_staged()?;
        }
        sysroot.locked = sysroot.staged.is_some() && (sysroot.staged_record.as_ref().is_some_and(|r| r.locked) || sysroot.run.legacy_locked());
        sysroot.finalize_failure = match sysroot.root.read_to_string_optional(FAILURE_STAMP)? {
            Some(s) => Some(s),
            None if sysroot.booted().is_some() => sysroot.run.failure_copy(),
            None => None,
        }
        .map(|s| s.trim_end().to_string());
        Ok(sysroot)
    }

    /// Whether a deployment list was ever written (on FAT, `boot/loader/`
    /// may be systemd-boot's own, without one).
    pub fn has_loader(&self) -> Result<bool> {
        Ok(match self.layout {
            LoaderLayout::Symlink => self.root.symlink_metadata_optional("boot/loader")?.is_some(),
            LoaderLayout::Directory => self.root.symlink_metadata_optional(format!("boot/loader/{}", crate::bootloader::fat::BOOTVERSION_FILE))?.is_some(),
        })
    }

    /// Where a list of boot version `bv` is, relative to the sysroot.
    pub fn loader_rel_for(&self, bv: u32) -> String {
        format!("boot/{}", self.layout.loader_dir(bv))
    }

    /// The live list's directory, relative to the sysroot:
    /// `boot/loader.N`, or `boot/loader` on FAT.
    pub fn loader_rel(&self) -> String {
        format!("boot/{}", self.layout.loader_dir(self.bootversion))
    }

    /// The bootable deployments from the live entries, default first, and
    /// what is wrong with the entries that cannot be read. `strict` (every
    /// command but `verify`) stops at the first such entry; otherwise it is
    /// left out of the list and reported.
    #[context("Reading boot entries")]
    fn read_deployments(&self, strict: bool) -> Result<(Vec<Deployment>, Vec<String>)> {
        let mut problems = Vec::new();
        if !self.has_loader()? {
            return Ok((Vec::new(), problems));
        }
        let entries_rel = format!("{}/entries", self.loader_rel());
        let Some(entries) = self.root.open_dir_optional(&entries_rel)? else {
            bail!("{}/{entries_rel} does not exist, but boot/loader points to it", self.path);
        };
        let mut found: Vec<(u64, Deployment)> = Vec::new();
        for name in crate::fsutil::read_names(&entries)?.into_iter().filter_map(|n| n.into_string().ok()) {
            if !entry_file_is_ostree(&name) {
                continue;
            }
            let file = format!("{}/{entries_rel}/{name}", self.path);
            let read = self.read_entry(&entries, &entries_rel, &name).and_then(|(version, d)| {
                match found.iter().find(|(_, o)| o.same(&d)) {
                    Some((_, dup)) => Err(anyhow!("{file}: deployment {} is listed twice (also in {})", d.name(), dup.entry_file.as_deref().unwrap_or("?"))),
                    None => Ok((version, d)),
                }
            });
            match read {
                Ok(v) => found.push(v),
                Err(e) if strict => return Err(e),
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        // Highest version first: that entry is the default.
        found.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        if found.windows(2).any(|w| w[0].0 == w[1].0) {
            problems.push(format!("{}/{entries_rel}: two entries have the same `version`: the default is ambiguous", self.path));
        }
        // GRUB counts in its environment block, not in the names.
        if found.iter().any(|(_, d)| d.tries.is_some()) {
            match self.root.open_dir_optional("boot")?.map(|b| crate::bootloader::grub::read_env(&b)).transpose() {
                Ok(Some(Some(env))) => {
                    for (_, d) in found.iter_mut() {
                        if let Some(t) = d.tries {
                            d.tries = Some(crate::bootloader::grub::effective_tries(t, env.get(&crate::bootloader::grub::tries_var(&d.csum, d.serial))));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e:#}; GRUB's boot counts are not known", self.path)),
            }
        }
        let list = found
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut d))| {
                d.index = i;
                d
            })
            .collect();
        Ok((list, problems))
    }

    /// One entry of `boot/loader.N/entries` and the deployment it boots.
    fn read_entry(&self, entries: &Dir, entries_rel: &str, name: &str) -> Result<(u64, Deployment)> {
        let bv = self.bootversion;
        let file = format!("{}/{entries_rel}/{name}", self.path);
        let data = entries
            .read_to_string(name)
            .with_context(|| format!("Reading {file}"))?;
        let entry = BlsEntry::parse(&data).map_err(|e| anyhow!("{file}: {e}"))?;
        let options = entry
            .options()
            .ok_or_else(|| anyhow!("{file}: no `options` line"))?;
        let kargs = Kargs::parse(&options).map_err(|e| anyhow!("{file}: {e}"))?;
        let ostree_arg = kargs
            .get("ostree")
            .ok_or_else(|| anyhow!("{file}: no ostree= kernel argument in `options`"))?
            .to_string();
        let karg = parse_ostree_karg(&ostree_arg).map_err(|e| anyhow!("{file}: {e}"))?;
        if karg.bootversion != bv {
            bail!("{file}: ostree={ostree_arg} names boot.{} but the entry is in a list of boot version {bv}", karg.bootversion);
        }
        let version: u64 = entry
            .get("version")
            .ok_or_else(|| anyhow!("{file}: no `version` line"))?
            .parse()
            .map_err(|_| anyhow!("{file}: `version` is not a number"))?;
        let link = format!(
            "ostree/boot.{bv}.{}/{}/{}/{}",
            self.subbootversion, karg.stateroot, karg.bootcsum, karg.bootserial
        );
        let target = self.root.read_link_contents(&link).map_err(|e| {
            anyhow!("{file}: ostree={ostree_arg}: boot link {}/{link}: {e}", self.path)
        })?;
        let target = Utf8PathBuf::try_from(target)
            .map_err(|_| anyhow!("{}/{link}: target is not UTF-8", self.path))?;
        let expect_prefix = format!("../../../deploy/{}/deploy/", karg.stateroot);
        let dname = target
            .as_str()
            .strip_prefix(&expect_prefix)
            .ok_or_else(|| anyhow!("{}/{link} points to {target}, outside ostree/deploy/{}/deploy", self.path, karg.stateroot))?;
        let (csum, serial) = parse_deploy_name(dname)
            .ok_or_else(|| anyhow!("{}/{link} points to {target}, not a deployment name", self.path))?;
        let mut d = Deployment {
            index: 0,
            stateroot: karg.stateroot.clone(),
            csum: csum.to_string(),
            serial,
            bootcsum: karg.bootcsum.clone(),
            bootserial: karg.bootserial,
            kargs,
            entry: Some(entry),
            entry_file: Some(name.to_string()),
            tries: name.contains('+').then(|| crate::formats::bls::entry_tries(name)),
            origin: None,
            booted: false,
            staged: false,
        };
        if self.root.symlink_metadata_optional(d.path())?.is_none() {
            bail!("{file}: deployment {}/{} does not exist (dangling link {link})", self.path, d.path());
        }
        d.origin = read_origin(&self.root, &d.origin_path())?;
        Ok((version, d))
    }

    /// Read the staged record and the deployment it names.
    fn load_staged(&mut self) -> Result<()> {
        let Some(rec) = self.run.staged()? else {
            return Ok(());
        };
        let t = rec.target.clone().expect("parse requires a target");
        let (csum, serial) = parse_deploy_name(&t.name).expect("parse checks the name");
        let mut d = Deployment {
            index: 0,
            stateroot: t.osname.clone(),
            csum: csum.to_string(),
            serial,
            bootcsum: t.bootcsum.clone(),
            bootserial: 0,
            kargs: Kargs::default(),
            entry: None,
            entry_file: None,
            tries: None,
            origin: None,
            booted: false,
            staged: true,
        };
        if self.root.symlink_metadata_optional(d.path())?.is_none() {
            bail!(
                "{}: the staged deployment {} does not exist in {}/ostree/deploy/{} (remove the file to discard it)",
                runstate::STAGED,
                t.name,
                self.path,
                t.osname
            );
        }
        d.kargs = match &rec.kargs {
            Some(k) => Kargs::parse(&k.join(" ")).map_err(|e| anyhow!("{}: kargs: {e}", runstate::STAGED))?,
            None => self.merge_deployment(&t.osname).map(|m| m.kargs.clone()).unwrap_or_default(),
        };
        d.origin = read_origin(&self.root, &d.origin_path())?;
        self.staged = Some(d);
        self.staged_record = Some(rec);
        Ok(())
    }

    /// The deployment list as libostree has it and status shows it: the
    /// staged deployment first (index 0) when there is one, then the
    /// bootable ones, default first. Writers of boot entries use
    /// `deployments` (the staged one has no entry until finalize); whatever
    /// must keep or show every deployment uses this.
    pub fn listed(&self) -> impl Iterator<Item = &Deployment> {
        self.staged.iter().chain(self.deployments.iter())
    }

    /// The deployment at a user-facing index (the staged one is 0 when present).
    pub fn by_index(&self, index: usize) -> Result<&Deployment> {
        self.listed()
            .nth(index)
            .ok_or_else(|| anyhow!("no deployment with index {index} (there are {})", self.listed().count()))
    }

    /// Map a user-facing index (the staged deployment, if any, is 0).
    pub fn resolve_index(&self, index: usize) -> Result<Target> {
        let off = self.staged.is_some() as usize;
        if self.staged.is_some() && index == 0 {
            return Ok(Target::Staged);
        }
        let i = index - off;
        if i >= self.deployments.len() {
            bail!("no deployment with index {index} (there are {})", self.deployments.len() + off);
        }
        Ok(Target::Deployment(i))
    }

    /// A deployment is booted when the running root (`/`) is its directory,
    /// as named by `backing-root-device-inode` in `/run/ostree-booted`, or,
    /// for the sysroot at `/` or `/sysroot`, by the inode of `/` itself.
    fn mark_booted(&mut self) -> Result<()> {
        let Some(rootdevino) = self.booted_root_devino()? else {
            return Ok(());
        };
        for d in self.deployments.iter_mut() {
            if let Some(m) = self.root.metadata_optional(d.path())? {
                if (m.dev(), m.ino()) == rootdevino {
                    d.booted = true;
                }
            }
        }
        Ok(())
    }

    pub fn booted(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.booted)
    }

    /// The deployment whose `/etc` and kernel arguments a new deployment of
    /// `stateroot` inherits: the booted one if it is of that stateroot, else
    /// the first (default-most) of that stateroot.
    pub fn merge_deployment(&self, stateroot: &str) -> Option<&Deployment> {
        if let Some(b) = self.booted() {
            if b.stateroot == stateroot {
                return Some(b);
            }
        }
        self.deployments.iter().find(|d| d.stateroot == stateroot)
    }

    /// The stateroot to use when none is given: the booted one, else the
    /// default deployment's, else the only one that exists.
    pub fn default_stateroot(&self) -> Result<String> {
        if let Some(d) = self.booted().or(self.deployments.first()) {
            return Ok(d.stateroot.clone());
        }
        let roots = self.stateroots()?;
        match roots.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!("no stateroot in {}/ostree/deploy: run `treeboot os-init NAME` first", self.path),
            _ => bail!("several stateroots ({}); choose one with --os", roots.join(", ")),
        }
    }

    pub fn stateroots(&self) -> Result<Vec<String>> {
        let d = self.root.open_dir("ostree/deploy")?;
        let mut v = Vec::new();
        for e in d.entries()? {
            let e = e?;
            if e.file_type()?.is_dir() {
                if let Ok(n) = e.file_name().into_string() {
                    v.push(n);
                }
            }
        }
        v.sort();
        Ok(v)
    }

    pub fn deployment(&self, index: usize) -> Result<&Deployment> {
        self.deployments.get(index).ok_or_else(|| {
            anyhow!(
                "no deployment with index {index} (there are {})",
                self.deployments.len()
            )
        })
    }

    /// The `version` metadata of a commit, read from its object in
    /// `ostree/repo/objects` without libostree (None when the commit or the
    /// key is missing).
    pub fn commit_version(&self, csum: &str) -> Result<Option<String>> {
        Ok(self.commit_info(csum)?.and_then(|c| c.version))
    }

    /// Version, subject and timestamp of a commit, from its object (None
    /// when the object is missing).
    pub fn commit_info(&self, csum: &str) -> Result<Option<crate::formats::gvariant::CommitInfo>> {
        if csum.len() < 3 {
            return Ok(None);
        }
        let rel = format!("ostree/repo/objects/{}/{}.commit", &csum[..2], &csum[2..]);
        let Some(data) = self.root.read_optional(&rel)? else {
            return Ok(None);
        };
        crate::formats::gvariant::commit_info(&data).map(Some).map_err(|e| anyhow!("{}/{rel}: {e}", self.path))
    }

    /// Whether `boot` is a different filesystem from the sysroot.
    pub fn boot_is_separate(&self) -> Result<bool> {
        let a = self.root.dir_metadata()?;
        let b = self.root.metadata("boot")?;
        Ok(a.dev() != b.dev())
    }
}

impl Sysroot {
    /// (dev, ino) of the booted deployment's directory: from
    /// `/run/ostree-booted`'s `backing-root-device-inode`, else (an empty
    /// file, older prepare-roots) the inode of `/` when the sysroot is `/`
    /// or `/sysroot`.
    pub fn booted_root_devino(&self) -> Result<Option<(u64, u64)>> {
        let Some(b) = self.run.booted()? else {
            return Ok(None);
        };
        if let Some(di) = b.backing_root_device_inode {
            return Ok(Some(di));
        }
        if self.path != "/" && self.path != "/sysroot" {
            return Ok(None);
        }
        let m = std::fs::metadata("/").context("Reading the inode of /")?;
        Ok(Some((std::os::unix::fs::MetadataExt::dev(&m), std::os::unix::fs::MetadataExt::ino(&m))))
    }
}

/// A small sysroot on a temporary directory, for the unit tests of the
/// model and of the operations: no root, no mount namespace.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;
    use crate::formats::runstate::{Booted, Staged, StagedTarget};
    use cap_std_ext::cap_tempfile::{self, TempDir};

    pub const OS: &str = "os";

    pub fn csum(c: char) -> String {
        c.to_string().repeat(64)
    }

    pub struct Fixture {
        pub root: TempDir,
        pub run: TempDir,
    }

    impl Fixture {
        /// A deployment `csum(c).0` with bootcsum `csum(b)` for each
        /// `(c, b)`, in boot order (the first is the default).
        pub fn new(deployments: &[(char, char)]) -> Self {
            let root = cap_tempfile::tempdir(cap_std::ambient_authority()).unwrap();
            let run = cap_tempfile::tempdir(cap_std::ambient_authority()).unwrap();
            root.create_dir_all(format!("ostree/deploy/{OS}/var")).unwrap();
            root.create_dir_all(format!("ostree/deploy/{OS}/deploy")).unwrap();
            root.create_dir_all("boot/loader.1/entries").unwrap();
            root.symlink("loader.1", "boot/loader").unwrap();
            root.symlink("boot.1.0", "ostree/boot.1").unwrap();
            let n = deployments.len();
            let mut serials: std::collections::HashMap<char, u32> = Default::default();
            for (i, (c, b)) in deployments.iter().enumerate() {
                let name = format!("{}.0", csum(*c));
                add_deployment_dir(&root, &name, &format!("refspec=os:v{c}"));
                let bs = serials.entry(*b).or_insert(0);
                let link = format!("ostree/boot.1.0/{OS}/{}/{bs}", csum(*b));
                root.create_dir_all(format!("ostree/boot.1.0/{OS}/{}", csum(*b))).unwrap();
                root.symlink(format!("../../../deploy/{OS}/deploy/{name}"), &link).unwrap();
                let entry = format!(
                    "title OS {c} (ostree:{i})\nversion {}\noptions root=LABEL=r ostree=/ostree/boot.1/{OS}/{}/{bs}\nlinux /ostree/{OS}-{}/vmlinuz-6.1\ninitrd /ostree/{OS}-{}/initramfs-6.1.img\n",
                    n - i,
                    csum(*b),
                    csum(*b),
                    csum(*b)
                );
                root.write(format!("boot/loader.1/entries/ostree-{}-{OS}.conf", n - i), entry).unwrap();
                root.create_dir_all(format!("boot/ostree/{OS}-{}", csum(*b))).unwrap();
                root.write(format!("boot/ostree/{OS}-{}/vmlinuz-6.1", csum(*b)), "kernel").unwrap();
                root.write(format!("boot/ostree/{OS}-{}/initramfs-6.1.img", csum(*b)), "initramfs").unwrap();
                *bs += 1;
            }
            Self { root, run }
        }

        /// `/run/ostree-booted` naming deployment directory `name`.
        pub fn boot_into(&self, name: &str) {
            let m = self.root.metadata(format!("ostree/deploy/{OS}/deploy/{name}")).unwrap();
            let rec = Booted { backing_root_device_inode: Some((m.dev(), m.ino())), ..Default::default() };
            self.run.write("ostree-booted", rec.serialize()).unwrap();
        }

        /// Stage `csum(c).0` (its directory and kernel made here).
        pub fn stage(&self, c: char, bootcsum: char, locked: bool) {
            let name = format!("{}.0", csum(c));
            add_deployment_dir(&self.root, &name, &format!("refspec=os:v{c}"));
            self.root.create_dir_all(format!("boot/ostree/{OS}-{}", csum(bootcsum))).unwrap();
            let rec = Staged {
                target: Some(StagedTarget { name, osname: OS.into(), bootcsum: csum(bootcsum) }),
                locked,
                ..Default::default()
            };
            RunState::at(self.run.try_clone().unwrap()).write_staged(&rec).unwrap();
        }

        pub fn load(&self) -> Result<Sysroot> {
            Sysroot::load_at(self.root.try_clone()?, Utf8Path::new("/fixture"), RunState::at(self.run.try_clone()?))
        }
    }

    /// A deployment directory (with `usr/etc`, `etc`) and its origin.
    pub fn add_deployment_dir(root: &Dir, name: &str, origin: &str) {
        root.create_dir_all(format!("ostree/deploy/{OS}/deploy/{name}/usr/etc")).unwrap();
        root.create_dir_all(format!("ostree/deploy/{OS}/deploy/{name}/etc")).unwrap();
        root.write(format!("ostree/deploy/{OS}/deploy/{name}.origin"), format!("[origin]\n{origin}\n")).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::*;

    #[test]
    fn deployments_in_boot_order_with_booted_and_staged() {
        let f = Fixture::new(&[('a', '1'), ('b', '1'), ('c', '2')]);
        f.boot_into(&format!("{}.0", csum('b')));
        f.stage('d', '3', false);
        let s = f.load().unwrap();
        assert_eq!((s.bootversion, s.subbootversion), (1, 0));
        let names: Vec<String> = s.deployments.iter().map(|d| d.csum[..1].to_string()).collect();
        assert_eq!(names, ["a", "b", "c"], "highest version first");
        assert_eq!(s.deployments.iter().map(|d| d.bootserial).collect::<Vec<_>>(), [0, 1, 0]);
        assert_eq!(s.booted().unwrap().csum, csum('b'));
        assert_eq!(s.merge_deployment(OS).unwrap().csum, csum('b'), "the booted one is the merge deployment");
        let st = s.staged.as_ref().unwrap();
        assert!(st.staged && st.csum == csum('d') && st.bootcsum == csum('3'));
        assert_eq!(st.kargs.to_cmdline(), s.booted().unwrap().kargs.to_cmdline(), "no kargs in the record: the merge deployment's");
        // User-facing indices: the staged deployment is 0, as in libostree.
        assert_eq!(s.resolve_index(0).unwrap(), Target::Staged);
        assert_eq!(s.by_index(1).unwrap().csum, csum('a'));
        assert_eq!(s.by_index(3).unwrap().csum, csum('c'));
        assert!(s.by_index(4).is_err());
        assert!(!s.locked);
        assert!(s.finalize_failure.is_none());
    }

    #[test]
    fn nothing_is_staged_unless_this_sysroot_is_booted() {
        let f = Fixture::new(&[('a', '1')]);
        f.stage('d', '3', false);
        let s = f.load().unwrap();
        assert!(s.booted().is_none() && s.staged.is_none() && !s.locked);
    }

    #[test]
    fn lock_and_failure_stamp_are_part_of_the_state() {
        let f = Fixture::new(&[('a', '1')]);
        f.boot_into(&format!("{}.0", csum('a')));
        f.stage('d', '3', true);
        f.root.write(FAILURE_STAMP, "finalizing failed: /etc/x\n").unwrap();
        let s = f.load().unwrap();
        assert!(s.locked, "locked key");
        assert_eq!(s.finalize_failure.as_deref(), Some("finalizing failed: /etc/x"));
        // The legacy lock file alone locks too (ostree 2022.7 writes only it).
        f.stage('d', '3', false);
        f.run.write("ostree/staged-deployment-locked", "").unwrap();
        assert!(f.load().unwrap().locked);
        // After boot-complete: the copy in /run, on the booted system.
        f.root.remove_file(FAILURE_STAMP).unwrap();
        f.run.create_dir_all("treeboot").unwrap();
        f.run.write("treeboot/last-finalize-failure", "reported\n").unwrap();
        assert_eq!(f.load().unwrap().finalize_failure.as_deref(), Some("reported"));
    }

    #[test]
    fn a_bad_entry_or_record_names_its_file() {
        let f = Fixture::new(&[('a', '1'), ('b', '1')]);
        f.root.write("boot/loader.1/entries/ostree-2-os.conf", "title junk\nversion 2\n").unwrap();
        let e = format!("{:#}", f.load().err().unwrap());
        assert!(e.contains("/fixture/boot/loader.1/entries/ostree-2-os.conf") && e.contains("no `options` line"), "{e}");
        let f = Fixture::new(&[('a', '1')]);
        f.boot_into(&format!("{}.0", csum('a')));
        f.stage('d', '3', false);
        f.root.remove_dir_all(format!("ostree/deploy/{OS}/deploy/{}.0", csum('d'))).unwrap();
        let e = format!("{:#}", f.load().err().unwrap());
        assert!(e.contains(runstate::STAGED) && e.contains("does not exist"), "{e}");
    }
}
