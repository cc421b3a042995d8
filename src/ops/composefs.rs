//! A new deployment's composefs image, `.ostree.cfs`, written at deploy or
//! stage time (never at shutdown), as libostree writes it since 2025.1.
//!
//! When: the deployment's prepare-root.conf (`usr/lib/ostree`, then its
//! merged `etc/ostree`) asks for composefs (`yes`, `maybe`, `verity`), or
//! the repository config's `[ex-integrity] composefs` is `yes`.
//!
//! How: the commit's files are listed from the object store
//! ([`crate::formats::cfsdump`]), turned into the composefs dump text and
//! given to libcomposefs's `mkcomposefs --from-file` (the writer libostree
//! links, so the image is the one libostree would make; Debian packages it
//! as `composefs` from trixie on; `TREEBOOT_MKCOMPOSEFS` names another
//! one). With `verity`, fs-verity is first enabled on every object the
//! image names and its digest recorded, so that the kernel refuses an
//! object changed afterwards; a file system without fs-verity refuses the
//! deployment here rather than at boot. The image is written to a
//! temporary name, synced and renamed into place.

use std::io::Write;
use std::os::fd::AsFd;

use anyhow::{anyhow, bail, Context, Result};
use cap_std_ext::cap_std::fs::Dir;
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;

use crate::early::composefs::IMAGE_NAME;
use crate::formats::cfsdump::{self, Kind};
use crate::formats::prepareroot::{Composefs, PrepareRootConfig, FILES};
use crate::repo::ObjectStore;

/// What a deployment asks of its image: None, no image; otherwise whether
/// fs-verity is required, and whether a missing `mkcomposefs` is an error
/// (`maybe` boots without an image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub verity: bool,
    pub required: bool,
}

/// The prepare-root.conf files prepare-root will read at boot (the
/// deployment's `usr/lib/ostree/`, then `etc/ostree/`, as text), with the
/// repository's `[ex-integrity] composefs`. Pure.
pub fn wanted(usr_lib: Option<&str>, etc: Option<&str>, repo: Composefs) -> Result<Option<Wanted>> {
    let mut c = PrepareRootConfig::default();
    for (f, text) in FILES.into_iter().zip([usr_lib, etc]) {
        if let Some(t) = text {
            c.apply(t).map_err(|e| anyhow!("/{f} of the new deployment: {e}"))?;
        }
    }
    if c.composefs_signed {
        bail!("composefs: enabled = signed (a signed image digest) is not supported by treeboot; the deployment would not boot");
    }
    let level = if repo == Composefs::Yes { Composefs::Yes } else { c.composefs };
    Ok(match level {
        Composefs::No => None,
        Composefs::Maybe => Some(Wanted { verity: c.composefs_verity, required: false }),
        Composefs::Yes => Some(Wanted { verity: c.composefs_verity, required: true }),
    })
}

/// At finalize, once the staged deployment's /etc is merged: refuse a
/// deployment that would not boot because its prepare-root.conf (changed
/// after staging) now requires composefs and it has no image. Cheap (two
/// small files): the image itself is never written at shutdown.
#[context("Checking the staged deployment's composefs configuration")]
pub fn check_staged(ddir: &Dir, kargs: &crate::formats::kargs::Kargs) -> Result<()> {
    let mut c = PrepareRootConfig::default();
    for f in FILES {
        if let Some(t) = ddir.read_to_string_optional(f)? {
            c.apply(&t).map_err(|e| anyhow!("/{f} of the staged deployment: {e}"))?;
        }
    }
    c.apply_kargs(kargs).map_err(|e| anyhow!("the staged deployment's kernel arguments: {e}"))?;
    if c.composefs == Composefs::Yes && ddir.symlink_metadata_optional(IMAGE_NAME)?.is_none() {
        bail!(
            "its /etc/ostree/prepare-root.conf now requires composefs, but it was staged without a composefs image \
             ({IMAGE_NAME}): it would not boot; stage it again"
        );
    }
    Ok(())
}

/// The `mkcomposefs` to run.
pub fn mkcomposefs() -> String {
    std::env::var("TREEBOOT_MKCOMPOSEFS").unwrap_or_else(|_| "mkcomposefs".into())
}

/// Write `DEPLOY/.ostree.cfs` for commit `csum`. `root` is the sysroot (for
/// the objects). Returns false when `maybe` and no `mkcomposefs` is
/// installed (nothing written).
#[context("Writing the composefs image of {csum}")]
pub fn write_image(store: &dyn ObjectStore, root: &Dir, deploy: &Dir, csum: &str, want: Wanted) -> Result<bool> {
    let mut entries = store.composefs_entries(csum)?;
    if want.verity {
        let objects = root.open_dir("ostree/repo/objects").context("Opening ostree/repo/objects")?;
        for e in entries.iter_mut() {
            if let Kind::File { object: Some(o), .. } = &e.kind {
                e.digest = Some(verity_digest(&objects, &cfsdump::object_path(o))?);
            }
        }
    }
    let dump = cfsdump::dump(&entries);
    let tmp = format!("{IMAGE_NAME}.tmp");
    let _ = deploy.remove_file(&tmp);
    let out = deploy.create(&tmp).with_context(|| format!("Creating {tmp}"))?.into_std();
    let bin = mkcomposefs();
    let child = std::process::Command::new(&bin)
        .args(["--from-file", "-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(out)
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = deploy.remove_file(&tmp);
            if !want.required {
                crate::warn!("composefs: maybe, and {bin} is not installed (the composefs package): the deployment gets no image and boots without composefs");
                return Ok(false);
            }
            bail!("composefs is asked for, but {bin} is not installed (Debian: the composefs package, trixie and later)");
        }
        Err(e) => {
            let _ = deploy.remove_file(&tmp);
            return Err(e).with_context(|| format!("Running {bin}"));
        }
    };
    let wrote = child.stdin.take().map(|mut i| i.write_all(dump.as_bytes())).unwrap_or(Ok(()));
    let res = child.wait_with_output().with_context(|| format!("Running {bin}"))?;
    if !res.status.success() || wrote.is_err() {
        let _ = deploy.remove_file(&tmp);
        bail!("{bin} --from-file failed ({}): {}", res.status, String::from_utf8_lossy(&res.stderr).trim());
    }
    let f = deploy.open(&tmp).with_context(|| format!("Opening {tmp}"))?;
    f.sync_all().with_context(|| format!("Syncing {tmp}"))?;
    if want.verity {
        // As libostree: the image itself gets fs-verity too when the
        // objects must have it.
        match crate::sys::enable_verity(f.as_fd()) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                let _ = deploy.remove_file(&tmp);
                bail!("Enabling fs-verity on {tmp}: {e}");
            }
        }
    }
    drop(f);
    deploy.rename(&tmp, deploy, IMAGE_NAME).with_context(|| format!("Renaming {tmp} to {IMAGE_NAME}"))?;
    Ok(true)
}

/// The fs-verity digest of an object, enabling fs-verity on it first when
/// it has none.
fn verity_digest(objects: &Dir, rel: &str) -> Result<[u8; 32]> {
    let f = objects.open(rel).with_context(|| format!("Opening object {rel}"))?;
    if let Some(d) = crate::sys::measure_verity(f.as_fd()) {
        return Ok(d);
    }
    match crate::sys::enable_verity(f.as_fd()) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => bail!(
            "composefs: verity is required, but fs-verity cannot be enabled on object {rel}: {e} \
             (the file system of ostree/repo needs fs-verity: for ext4, `tune2fs -O verity`)"
        ),
    }
    crate::sys::measure_verity(f.as_fd()).ok_or_else(|| anyhow!("composefs: object {rel} has no fs-verity digest after enabling it"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_deployment_asks_for() {
        let yes = Some(Wanted { verity: false, required: true });
        assert_eq!(wanted(None, None, Composefs::No).unwrap(), None);
        // The repository's `yes` gives every deployment an image.
        assert_eq!(wanted(None, None, Composefs::Yes).unwrap(), yes);
        assert_eq!(wanted(None, None, Composefs::Maybe).unwrap(), None);
        // The image's file, then /etc's over it, key by key.
        assert_eq!(wanted(Some("[composefs]\nenabled=yes\n"), Some("[composefs]\nenabled=no\n"), Composefs::No).unwrap(), None);
        assert_eq!(wanted(Some("[composefs]\nenabled=maybe\n"), None, Composefs::No).unwrap(), Some(Wanted { verity: false, required: false }));
        assert_eq!(wanted(None, Some("[composefs]\nenabled=verity\n"), Composefs::No).unwrap(), Some(Wanted { verity: true, required: true }));
        assert!(format!("{:#}", wanted(None, Some("[composefs]\nenabled=signed\n"), Composefs::No).unwrap_err()).contains("signed"));
        let e = wanted(Some("[composefs]\nenabled=often\n"), None, Composefs::No).unwrap_err();
        assert!(format!("{e:#}").contains("/usr/lib/ostree/prepare-root.conf"), "{e:#}");
    }
}
