//! `treeboot verify`: check that a sysroot is bootable, reporting every
//! violation with its file, without stopping at the first.
//!
//! Checked: `boot/loader` resolves to a directory with entries; each entry
//! parses, has `options` with a valid `ostree=`, and its `linux`/`initrd`
//! exist under `/boot`; each `ostree=` resolves through `ostree/boot.N` to
//! an existing deployment with `usr/`; no deployment is referenced twice;
//! the default entry exists; every origin parses; GRUB's menu exists when
//! `/boot/grub` does. Leftovers of an interrupted run (`*.tmp` links, the
//! other boot version, unreferenced deployments, `.tmp-*` kernel dirs) are
//! notes: harmless, removed by cleanup. Reads only; takes no lock.

use std::collections::HashMap;

use anyhow::Result;
use camino::Utf8Path;
use cap_std_ext::cap_std::{self, fs::Dir};
use cap_std_ext::dirext::CapStdExtDirExt;
use serde::Serialize;

use crate::formats::bls::{entry_file_is_ostree, BlsEntry};
use crate::formats::kargs::Kargs;
use crate::formats::names::{parse_deploy_name, parse_ostree_karg};
use crate::fsutil;
use crate::sysroot::read_origin;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub errors: Vec<String>,
    pub notes: Vec<String>,
    pub deployments: usize,
    pub default: Option<String>,
}

impl Report {
    pub fn bootable(&self) -> bool {
        self.errors.is_empty()
    }
}

fn link_target(dir: &Dir, p: &str) -> Option<String> {
    dir.read_link_contents(p).ok().map(|t| t.to_string_lossy().into_owned())
}

pub fn verify(path: &Utf8Path) -> Result<Report> {
    let mut r = Report::default();
    let root = match Dir::open_ambient_dir(path, cap_std::ambient_authority()) {
        Ok(d) => d,
        Err(e) => {
            r.errors.push(format!("{path}: {e}"));
            return Ok(r);
        }
    };
    if root.symlink_metadata_optional("boot")?.is_none() {
        r.errors.push(format!("{path}/boot: does not exist (is /boot mounted?)"));
        return Ok(r);
    }
    let bv = match link_target(&root, "boot/loader").as_deref() {
        Some("loader.0") => 0,
        Some("loader.1") => 1,
        Some(other) => {
            r.errors.push(format!("{path}/boot/loader: points to {other:?}, not loader.0 or loader.1"));
            return Ok(r);
        }
        None => {
            r.errors.push(format!("{path}/boot/loader: missing: there is no deployment list, nothing to boot"));
            return Ok(r);
        }
    };
    let sub = match link_target(&root, &format!("ostree/boot.{bv}")).as_deref() {
        Some(t) if t == format!("boot.{bv}.0") => Some(0),
        Some(t) if t == format!("boot.{bv}.1") => Some(1),
        Some(t) => {
            r.errors.push(format!("{path}/ostree/boot.{bv}: points to {t:?}, not boot.{bv}.0 or boot.{bv}.1"));
            None
        }
        None => {
            r.errors.push(format!("{path}/ostree/boot.{bv}: missing; the entries' ostree= cannot resolve"));
            None
        }
    };
    let edir = format!("boot/loader.{bv}/entries");
    let Some(entries) = root.open_dir_optional(&edir)? else {
        r.errors.push(format!("{path}/{edir}: missing, but boot/loader points to loader.{bv}"));
        return Ok(r);
    };
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut versions: Vec<(u64, String)> = Vec::new();
    let names: Vec<String> = fsutil::read_names(&entries)?.into_iter().filter_map(|n| n.into_string().ok()).collect();
    for name in names.iter().filter(|n| entry_file_is_ostree(n)) {
        let file = format!("{path}/{edir}/{name}");
        let text = match entries.read_to_string(name) {
            Ok(t) => t,
            Err(e) => {
                r.errors.push(format!("{file}: {e}"));
                continue;
            }
        };
        let e = match BlsEntry::parse(&text) {
            Ok(e) => e,
            Err(err) => {
                r.errors.push(format!("{file}: {err}"));
                continue;
            }
        };
        match e.get("version").map(|v| v.parse::<u64>()) {
            Some(Ok(v)) => versions.push((v, name.clone())),
            _ => r.errors.push(format!("{file}: no numeric `version`")),
        }
        for key in ["linux", "initrd"] {
            match e.get(key) {
                Some(p) => {
                    let rel = format!("boot/{}", p.trim_start_matches('/'));
                    if !root.symlink_metadata_optional(&rel)?.is_some_and(|m| m.is_file()) {
                        r.errors.push(format!("{file}: {key} {p} does not exist in {path}/boot"));
                    }
                }
                None if key == "linux" => r.errors.push(format!("{file}: no `linux` line")),
                None => {}
            }
        }
        let Some(options) = e.options() else {
            r.errors.push(format!("{file}: no `options` line"));
            continue;
        };
        let karg = match Kargs::parse(&options) {
            Ok(k) => k.get("ostree").map(String::from),
            Err(err) => {
                r.errors.push(format!("{file}: {err}"));
                continue;
            }
        };
        let Some(karg) = karg else {
            r.errors.push(format!("{file}: no ostree= in `options`"));
            continue;
        };
        let k = match parse_ostree_karg(&karg) {
            Ok(k) => k,
            Err(err) => {
                r.errors.push(format!("{file}: {err}"));
                continue;
            }
        };
        if k.bootversion != bv {
            r.errors.push(format!("{file}: ostree= names boot.{} but the entry is in loader.{bv}", k.bootversion));
            continue;
        }
        let Some(sub) = sub else { continue };
        let link = format!("ostree/boot.{bv}.{sub}/{}/{}/{}", k.stateroot, k.bootcsum, k.bootserial);
        let Some(target) = link_target(&root, &link) else {
            r.errors.push(format!("{file}: ostree={karg}: {path}/{link} is missing"));
            continue;
        };
        let prefix = format!("../../../deploy/{}/deploy/", k.stateroot);
        let Some(dname) = target.strip_prefix(&prefix).filter(|d| parse_deploy_name(d).is_some()) else {
            r.errors.push(format!("{path}/{link}: points to {target}, not a deployment"));
            continue;
        };
        let drel = format!("ostree/deploy/{}/deploy/{dname}", k.stateroot);
        if !root.symlink_metadata_optional(format!("{drel}/usr"))?.is_some_and(|m| m.is_dir()) {
            r.errors.push(format!("{file}: deployment {path}/{drel} is missing or has no usr/"));
            continue;
        }
        if let Some(other) = seen.insert(drel.clone(), name.clone()) {
            r.errors.push(format!("{file}: deployment {drel} is also referenced by {other}"));
        }
        if let Err(err) = read_origin(&root, Utf8Path::new(&format!("{drel}.origin"))) {
            r.errors.push(format!("{err:#}"));
        }
    }
    if versions.is_empty() && r.errors.is_empty() {
        r.errors.push(format!("{path}/{edir}: no entries: nothing to boot"));
    }
    versions.sort();
    if let Some((_, name)) = versions.last() {
        r.default = Some(name.clone());
    }
    let mut vs: Vec<u64> = versions.iter().map(|(v, _)| *v).collect();
    vs.dedup();
    if vs.len() != versions.len() {
        r.errors.push(format!("{path}/{edir}: two entries have the same `version`: the default is ambiguous"));
    }
    r.deployments = seen.len();
    if root.symlink_metadata_optional("boot/grub")?.is_some_and(|m| m.is_dir())
        && root.symlink_metadata_optional(format!("boot/loader.{bv}/grub.cfg"))?.is_none()
    {
        r.errors.push(format!("{path}/boot/loader.{bv}/grub.cfg: missing, but /boot/grub exists (GRUB would show no menu)"));
    }
    // Leftovers.
    for (dir, name) in [("boot", "loader.tmp".to_string()), ("boot", format!("loader.{}", 1 - bv)), ("ostree", format!("boot.{}", 1 - bv))] {
        if root.symlink_metadata_optional(format!("{dir}/{name}"))?.is_some() {
            r.notes.push(format!("{path}/{dir}/{name}: left by an interrupted run; harmless, removed by cleanup"));
        }
    }
    if let Some(o) = root.open_dir_optional("ostree")? {
        for n in fsutil::read_names(&o)? {
            let n = n.to_string_lossy();
            if n.ends_with(".tmp") || (sub.is_some() && n == format!("boot.{bv}.{}", 1 - sub.unwrap_or(0))) {
                r.notes.push(format!("{path}/ostree/{n}: left by an interrupted run; harmless, removed by cleanup"));
            }
        }
    }
    if let Some(d) = root.open_dir_optional("ostree/deploy")? {
        for os in fsutil::read_names(&d)? {
            let os = os.to_string_lossy().into_owned();
            if let Some(dd) = root.open_dir_optional(format!("ostree/deploy/{os}/deploy"))? {
                for n in fsutil::read_names(&dd)? {
                    let n = n.to_string_lossy().into_owned();
                    if parse_deploy_name(&n).is_some() && !seen.contains_key(&format!("ostree/deploy/{os}/deploy/{n}")) {
                        r.notes.push(format!("{path}/ostree/deploy/{os}/deploy/{n}: not in the deployment list (staged, or left by an interrupted run: removed by cleanup)"));
                    }
                }
            }
        }
    }
    if let Some(bo) = root.open_dir_optional("boot/ostree")? {
        for n in fsutil::read_names(&bo)? {
            let n = n.to_string_lossy();
            if n.starts_with(".tmp-") {
                r.notes.push(format!("{path}/boot/ostree/{n}: an interrupted kernel install; harmless, removed by cleanup"));
            }
        }
    }
    Ok(r)
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    for e in &r.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    if r.bootable() {
        out.push_str(&format!(
            "ok: bootable; {} deployment(s), default entry {}\n",
            r.deployments,
            r.default.as_deref().unwrap_or("-")
        ));
    } else {
        out.push_str(&format!("NOT BOOTABLE: {} problem(s)\n", r.errors.len()));
    }
    out
}
