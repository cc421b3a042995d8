//! set-default, rollback, undeploy, pin and kargs: edits of the deployment
//! list (or of one origin) that reuse the swap.

use anyhow::{anyhow, bail, Result};
use fn_error_context::context;

use super::{boot_deployment, commit_list, Writer};
use crate::bootloader::swap::BootDeployment;
use crate::failpoint;
use crate::sysroot::Target;

/// The position in the bootable list of a user-facing index, refusing the
/// staged deployment for operations that cannot apply to it.
pub(super) fn bootable_index(w: &Writer, index: usize, what: &str) -> Result<usize> {
    match w.sysroot.resolve_index(index)? {
        Target::Staged => bail!("deployment {index} is the staged deployment: it cannot be {what}; it is applied at shutdown (or drop it with `treeboot undeploy {index}`)"),
        Target::Deployment(i) => Ok(i),
    }
}

pub(super) fn list_in_order(w: &Writer, order: &[usize]) -> Result<Vec<BootDeployment>> {
    order
        .iter()
        .map(|&i| boot_deployment(&w.sysroot, &w.sysroot.deployments[i]))
        .collect()
}

/// Make deployment `index` the default; the others keep their order.
#[context("Setting deployment {index} as default")]
pub fn set_default(w: &mut Writer, index: usize) -> Result<bool> {
    let index = bootable_index(w, index, "set as default")?;
    if index == 0 {
        crate::say!("Deployment 0 is already the default");
        return Ok(false);
    }
    warn_if_failed(&w.sysroot.deployments[index]);
    let mut order = vec![index];
    order.extend((0..w.sysroot.deployments.len()).filter(|&i| i != index));
    let list = list_in_order(w, &order)?;
    // A new default drops the staged deployment, as `ostree admin
    // set-default` does (libostree keeps it only while it comes first):
    // the admin chose what boots next. Cleanup then removes it.
    if let Some(st) = w.sysroot.staged.take() {
        super::stage::forget_staged(&w.sysroot.run)?;
        w.sysroot.staged_record = None;
        crate::say!("Dropped the staged deployment {}", st.name());
    }
    commit_list(w, &list)?;
    Ok(true)
}

/// A deployment made the default whose boot assessment failed is not
/// refused (the admin may know better), but not without a word: while its
/// entry is spent (`+0-N`) the boot loader passes it over (GRUB's menu and
/// systemd-boot skip spent entries), so it would not boot next.
fn warn_if_failed(d: &crate::sysroot::Deployment) {
    let spent = matches!(d.tries, Some((0, done)) if done > 0);
    let failure = d.boot_failure();
    let why = failure.as_ref().map(|f| format!(" ({} tries: {})", f.tries, f.reason)).unwrap_or_default();
    if spent {
        crate::warn!(
            "deployment {} (index {}) failed its boot assessment{why} and its boot entry is spent: the boot loader passes it over; it is the default (index 0) now, and `treeboot bless 0` makes it boot",
            d.name(),
            d.index
        );
    } else if failure.is_some() {
        crate::warn!("deployment {} (index {}) failed its boot assessment before{why}: making it the default again", d.name(), d.index);
    }
}

/// The deployment `rollback` would make the default: with a booted
/// deployment, as rpm-ostree does (undo a pending deployment by making the
/// booted one default again, else the first deployment of the booted
/// stateroot after it); without one (a sysroot in a directory), the next
/// deployment of the default's stateroot after the default.
pub fn rollback_target(w: &Writer) -> Result<usize> {
    let ds = &w.sysroot.deployments;
    let reference = match w.sysroot.booted() {
        Some(b) => b.clone(),
        None => ds.first().cloned().ok_or_else(|| anyhow!("there are no deployments"))?,
    };
    let same: Vec<usize> = ds
        .iter()
        .filter(|d| d.stateroot == reference.stateroot)
        .map(|d| d.index)
        .collect();
    let first = *same.first().expect("the reference is in the list");
    if reference.booted && first != reference.index {
        // A pending deployment is default: go back to the booted one.
        return Ok(reference.index);
    }
    same.iter()
        .copied()
        .find(|&i| i > reference.index)
        .ok_or_else(|| anyhow!("no rollback deployment: stateroot {} has no deployment after {}", reference.stateroot, reference.name()))
}

#[context("Rolling back")]
pub fn rollback(w: &mut Writer) -> Result<usize> {
    // rollback_target is a position in the bootable list; set_default
    // takes a user-facing index, where a staged deployment comes first.
    let target = rollback_target(w)? + usize::from(w.sysroot.staged.is_some());
    set_default(w, target)?;
    Ok(target)
}

#[context("Undeploying deployment {index}")]
pub fn undeploy(w: &mut Writer, index: usize) -> Result<String> {
    if w.sysroot.resolve_index(index)? == Target::Staged {
        let d = w.sysroot.staged.take().expect("resolved");
        w.sysroot.staged_record = None;
        failpoint::hit("undeploy::remove-record");
        super::stage::forget_staged(&w.sysroot.run)?;
        super::cleanup::cleanup(w)?;
        return Ok(d.name());
    }
    let index = bootable_index(w, index, "undeployed")?;
    let d = w.sysroot.deployment(index)?.clone();
    if d.booted {
        bail!("cannot undeploy the booted deployment {} (index {index})", d.name());
    }
    let order: Vec<usize> = (0..w.sysroot.deployments.len()).filter(|&i| i != index).collect();
    let list = list_in_order(w, &order)?;
    commit_list(w, &list)?;
    Ok(d.name())
}

/// Pin or unpin: `[libostree-transient] pinned=true` in the origin, written
/// atomically. Other groups and keys are kept as they are.
#[context("Changing the pin of deployment {index}")]
pub fn pin(w: &mut Writer, index: usize, unpin: bool) -> Result<bool> {
    let shown = index;
    let index = bootable_index(w, index, "pinned")?;
    let d = w.sysroot.deployment(index)?.clone();
    if d.pinned() != unpin {
        crate::say!("Deployment {shown} is already {}", if unpin { "unpinned" } else { "pinned" });
        return Ok(false);
    }
    failpoint::hit("pin::write-origin");
    super::edit_origin(w, &d, |origin| {
        if unpin {
            origin.remove_key("libostree-transient", "pinned");
        } else {
            origin.set("libostree-transient", "pinned", "true");
        }
    })?;
    crate::say!("Deployment {shown} is now {}", if unpin { "unpinned" } else { "pinned" });
    Ok(true)
}

#[derive(Debug, Default, Clone)]
pub struct KargsEdit {
    pub append: Vec<String>,
    pub delete: Vec<String>,
    pub replace: Vec<String>,
}

impl KargsEdit {
    pub fn is_empty(&self) -> bool {
        self.append.is_empty() && self.delete.is_empty() && self.replace.is_empty()
    }
}

/// Edit the kernel arguments of deployment `index` (default: the booted one,
/// else the default one) and write new entries. Returns the new arguments.
#[context("Editing kernel arguments")]
pub fn kargs(w: &mut Writer, index: Option<usize>, edit: &KargsEdit) -> Result<String> {
    let index = match index {
        Some(i) => bootable_index(w, i, "given new kernel arguments")?,
        None => w.sysroot.booted().map(|d| d.index).unwrap_or(0),
    };
    let d = w.sysroot.deployment(index)?.clone();
    let mut k = d.kargs.clone();
    for a in &edit.delete {
        k.delete(a).map_err(|e| anyhow!("--delete {a}: {e}"))?;
    }
    for a in &edit.replace {
        k.replace_value(a).map_err(|e| anyhow!("--replace {a}: {e}"))?;
    }
    for a in &edit.append {
        k.append(a).map_err(|e| anyhow!("--append {a}: {e}"))?;
    }
    if k.get("ostree").is_none() && d.kargs.get("ostree").is_some() {
        bail!("the ostree= kernel argument is managed by treeboot and cannot be removed");
    }
    let order: Vec<usize> = (0..w.sysroot.deployments.len()).collect();
    let mut list = list_in_order(w, &order)?;
    list[index].kargs = k.clone();
    commit_list(w, &list)?;
    let mut shown = k;
    shown.remove_key("ostree");
    Ok(shown.to_cmdline())
}
