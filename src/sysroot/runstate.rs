//! The files in `/run` that tie a running system to its sysroot: the
//! booted record (`/run/ostree-booted`), the staged record
//! (`/run/ostree/staged-deployment`), the legacy finalization lock
//! (`/run/ostree/staged-deployment-locked`), and treeboot's own
//! `/run/treeboot/` (boot-complete's copy of a finalize failure). Read and
//! written here only, through a handle on `/run`, so that the model can be
//! loaded (and tested) over any directory.
//!
//! They live in a tmpfs, so a reboot forgets a staged deployment that was
//! not finalized; the deployment directory it names is then an orphan that
//! the next cleanup removes.

use anyhow::{anyhow, Context, Result};
use cap_std_ext::cap_std::fs::{Dir, Permissions, PermissionsExt};
use cap_std_ext::cap_std::{self};
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;

use crate::formats::runstate::{Booted, Staged};

/// The names below `/run`, and how messages show them.
pub const BOOTED: &str = "/run/ostree-booted";
pub const STAGED: &str = "/run/ostree/staged-deployment";
pub const STAGED_LOCKED: &str = "/run/ostree/staged-deployment-locked";
/// A prepared soft reboot's next root (libostree's name).
pub const NEXTROOT_BOOTED: &str = "/run/ostree/nextroot-booted";
/// boot-complete's copy of a reported failure, shown by status until the
/// next reboot.
pub const FAILURE_RUN_COPY: &str = "/run/treeboot/last-finalize-failure";
/// Fleet reboot coordinators (kured) watch this file.
pub const REBOOT_REQUIRED: &str = "/run/reboot-required";

fn rel(abs: &str) -> &str {
    abs.strip_prefix("/run/").expect("a path under /run")
}

/// A handle on `/run` (or a directory standing for it). Without one (no
/// `/run`, as in a chroot), nothing is booted or staged.
pub struct RunState {
    dir: Option<Dir>,
}

impl RunState {
    /// The running system's `/run`.
    pub fn open_ambient() -> Result<Self> {
        match Dir::open_ambient_dir("/run", cap_std::ambient_authority()) {
            Ok(d) => Ok(Self { dir: Some(d) }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self { dir: None }),
            Err(e) => Err(anyhow!(e).context("Opening /run")),
        }
    }

    /// `dir` stands for `/run`.
    pub fn at(dir: Dir) -> Self {
        Self { dir: Some(dir) }
    }

    pub fn try_clone(&self) -> Result<Self> {
        Ok(Self { dir: self.dir.as_ref().map(|d| d.try_clone()).transpose()? })
    }

    fn read(&self, abs: &str) -> Result<Option<Vec<u8>>> {
        let Some(d) = &self.dir else { return Ok(None) };
        d.read_optional(rel(abs)).with_context(|| format!("Reading {abs}"))
    }

    fn dir(&self) -> Result<&Dir> {
        self.dir.as_ref().ok_or_else(|| anyhow!("there is no /run"))
    }

    /// Write `/run/REL` atomically, creating its parent.
    pub fn write(&self, abs: &str, data: impl AsRef<[u8]>) -> Result<()> {
        let d = self.dir()?;
        let r = rel(abs);
        if let Some((parent, _)) = r.rsplit_once('/') {
            d.create_dir_all(parent).with_context(|| format!("Creating /run/{parent}"))?;
        }
        d.atomic_write_with_perms(r, data, Permissions::from_mode(0o644))
            .with_context(|| format!("Writing {abs}"))
    }

    fn remove(&self, abs: &str) -> Result<()> {
        let Some(d) = &self.dir else { return Ok(()) };
        d.remove_file_optional(rel(abs)).with_context(|| format!("Removing {abs}"))?;
        Ok(())
    }

    /// Read a file of treeboot's own under `/run` (None when absent).
    pub fn read_file(&self, abs: &str) -> Result<Option<Vec<u8>>> {
        self.read(abs)
    }

    /// Remove a file of treeboot's own under `/run` (absent is fine).
    pub fn remove_file(&self, abs: &str) -> Result<()> {
        self.remove(abs)
    }

    /// `/run/ostree-booted`, if the system was booted from a deployment.
    #[context("Reading the booted record")]
    pub fn booted(&self) -> Result<Option<Booted>> {
        match self.read(BOOTED)? {
            Some(d) => Ok(Some(Booted::parse(&d).map_err(|e| anyhow!("{BOOTED}: {e}"))?)),
            None => Ok(None),
        }
    }

    /// `/run/ostree/nextroot-booted`: the root a prepared soft reboot
    /// switches into (written by [`crate::early::nextroot::prepare`]).
    #[context("Reading the soft reboot's record")]
    pub fn nextroot_booted(&self) -> Result<Option<Booted>> {
        match self.read(NEXTROOT_BOOTED)? {
            Some(d) => Ok(Some(Booted::parse(&d).map_err(|e| anyhow!("{NEXTROOT_BOOTED}: {e}"))?)),
            None => Ok(None),
        }
    }

    /// The staged record, if any. A malformed file is an error naming it.
    pub fn staged(&self) -> Result<Option<Staged>> {
        match self.read(STAGED)? {
            Some(d) => Ok(Some(Staged::parse(&d).map_err(|e| {
                anyhow!("{STAGED}: {e} (remove the file to discard the staged deployment)")
            })?)),
            None => Ok(None),
        }
    }

    /// Which tool wrote the staged record; None when there is none. A
    /// record that does not parse counts as treeboot's: treeboot's finalize
    /// reports the damage and forgets it.
    pub fn stager(&self) -> Result<Option<crate::formats::runstate::Stager>> {
        use crate::formats::runstate::Stager;
        Ok(self.read(STAGED)?.map(|d| match Staged::parse(&d) {
            Ok(_) => Stager::of(&d).unwrap_or(Stager::Treeboot),
            Err(_) => Stager::Treeboot,
        }))
    }

    /// Write the staged record atomically (0644, as ostree does): the
    /// rename replaces a previous record in one step. A locked record also
    /// gets the legacy lock file, the only lock ostree 2022.7's finalizer
    /// honours; an unlocked one has it removed.
    pub fn write_staged(&self, s: &Staged) -> Result<()> {
        if s.locked {
            self.write(STAGED_LOCKED, "")?;
        }
        self.write(STAGED, s.serialize())?;
        if !s.locked {
            self.remove(STAGED_LOCKED)?;
        }
        Ok(())
    }

    /// Forget the staged deployment (the record and the legacy lock file).
    pub fn remove_staged(&self) -> Result<()> {
        self.remove(STAGED)?;
        self.remove(STAGED_LOCKED)
    }

    /// The legacy "download now, apply later" lock file.
    pub fn legacy_locked(&self) -> bool {
        self.dir.as_ref().is_some_and(|d| d.try_exists(rel(STAGED_LOCKED)).unwrap_or(false))
    }

    /// boot-complete's copy of the failure it reported at this boot.
    pub fn failure_copy(&self) -> Option<String> {
        self.read(FAILURE_RUN_COPY).ok().flatten().map(|d| String::from_utf8_lossy(&d).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::runstate::StagedTarget;
    use cap_std_ext::cap_tempfile;

    fn record(locked: bool) -> Staged {
        Staged {
            target: Some(StagedTarget { name: format!("{}.0", "a".repeat(64)), osname: "os".into(), bootcsum: "b".repeat(64) }),
            locked,
            ..Default::default()
        }
    }

    #[test]
    fn nothing_in_an_empty_run() {
        let td = cap_tempfile::tempdir(cap_std::ambient_authority()).unwrap();
        let run = RunState::at(td.try_clone().unwrap());
        assert!(run.booted().unwrap().is_none());
        assert!(run.staged().unwrap().is_none());
        assert!(!run.legacy_locked());
        assert!(run.failure_copy().is_none());
        // No /run at all: the same.
        let none = RunState { dir: None };
        assert!(none.staged().unwrap().is_none());
        none.remove_staged().unwrap();
    }

    #[test]
    fn staged_record_round_trip_and_lock_file() {
        let td = cap_tempfile::tempdir(cap_std::ambient_authority()).unwrap();
        let run = RunState::at(td.try_clone().unwrap());
        run.write_staged(&record(true)).unwrap();
        assert!(run.legacy_locked(), "a locked record writes the legacy lock file too");
        let back = run.staged().unwrap().unwrap();
        assert!(back.locked);
        assert_eq!(back.target.unwrap().osname, "os");
        // Unlocking rewrites the record and removes the file.
        run.write_staged(&record(false)).unwrap();
        assert!(!run.legacy_locked());
        assert!(!run.staged().unwrap().unwrap().locked);
        run.remove_staged().unwrap();
        assert!(run.staged().unwrap().is_none());
        assert_eq!(td.entries().unwrap().count(), 1, "only the ostree/ directory is left");
    }

    #[test]
    fn malformed_records_name_the_file() {
        let td = cap_tempfile::tempdir(cap_std::ambient_authority()).unwrap();
        td.create_dir("ostree").unwrap();
        td.write("ostree/staged-deployment", b"junk").unwrap();
        let run = RunState::at(td.try_clone().unwrap());
        let e = format!("{:#}", run.staged().unwrap_err());
        assert!(e.contains(STAGED) && e.contains("remove the file"), "{e}");
        // Data that is not a dictionary reads as glib reads it (an empty
        // one); a key of the wrong type is named, with the file.
        td.write("ostree-booted", b"\x01\x02junk").unwrap();
        assert_eq!(run.booted().unwrap(), Some(crate::formats::runstate::Booted::default()));
        let wrong = crate::formats::gvariant::Value::vardict(vec![("sysroot-ro", crate::formats::gvariant::Value::string("yes"))]);
        td.write("ostree-booted", wrong.encode()).unwrap();
        let e = format!("{:#}", run.booted().unwrap_err());
        assert!(e.contains(BOOTED) && e.contains("sysroot-ro is s, not b"), "{e}");
    }
}
