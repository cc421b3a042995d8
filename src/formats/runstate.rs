//! The GVariant records ostree keeps in `/run`: `/run/ostree-booted`
//! (written by prepare-root) and `/run/ostree/staged-deployment` (written by
//! stage, read by finalize and by every tool's status).

use gvariant::aligned_bytes::copy_to_align;
use gvariant::gv;

use super::gvariant::{Value, VarDict};

/// `/run/ostree-booted`. An empty file is valid (older prepare-roots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Booted {
    /// (st_dev, st_ino) of the booted deployment's directory.
    pub backing_root_device_inode: Option<(u64, u64)>,
    pub sysroot_ro: bool,
    pub transient_etc: Option<String>,
    pub root_transient: bool,
    /// `/` is the deployment's composefs image (`composefs`), and whether
    /// fs-verity was required of its objects (`composefs.verity`).
    pub composefs: bool,
    pub composefs_verity: bool,
}

impl Booted {
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        if data.is_empty() {
            return Ok(Self::default());
        }
        let data = copy_to_align(data);
        let v = VarDict::parse(data.as_ref());
        Ok(Booted {
            backing_root_device_inode: v.get("backing-root-device-inode", gv!("(tt)"))?.map(|t| {
                let (d, i) = gvariant::Structure::to_tuple(t);
                (*d, *i)
            }),
            sysroot_ro: v.boolean("sysroot-ro")?.unwrap_or(false),
            transient_etc: v.string("transient-etc")?.map(String::from),
            root_transient: v.boolean("root.transient")?.unwrap_or(false),
            composefs: v.boolean("composefs")?.unwrap_or(false),
            composefs_verity: v.boolean("composefs.verity")?.unwrap_or(false),
        })
    }

    pub fn serialize(&self) -> Vec<u8> {
        let mut e = Vec::new();
        if let Some((d, i)) = self.backing_root_device_inode {
            e.push(("backing-root-device-inode", Value::Tuple(vec![Value::U64(d), Value::U64(i)])));
        }
        if self.sysroot_ro {
            e.push(("sysroot-ro", Value::Bool(true)));
        }
        if let Some(t) = &self.transient_etc {
            e.push(("transient-etc", Value::string(t.clone())));
        }
        if self.root_transient {
            e.push(("root.transient", Value::Bool(true)));
        }
        if self.composefs {
            // As libostree writes them: both keys once composefs was used.
            e.push(("composefs", Value::Bool(true)));
            e.push(("composefs.verity", Value::Bool(self.composefs_verity)));
        }
        Value::vardict(e).encode()
    }
}

/// A deployment named in the staged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedTarget {
    /// `$csum.$serial`
    pub name: String,
    pub osname: String,
    pub bootcsum: String,
}

impl StagedTarget {
    fn to_value(&self) -> Value {
        Value::vardict(vec![
            ("name", Value::string(self.name.clone())),
            ("osname", Value::string(self.osname.clone())),
            ("bootcsum", Value::string(self.bootcsum.clone())),
        ])
    }

    /// The deployment under `key` (an `a{sv}` with name, osname and
    /// bootcsum), None when the record has no such key.
    fn read(dict: &VarDict, key: &str) -> Result<Option<Self>, String> {
        let Some(v) = dict.dict(key)? else { return Ok(None) };
        let get = |k: &str| -> Result<String, String> {
            v.string(k).map_err(|e| format!("{key}: {e}"))?.map(String::from).ok_or_else(|| format!("{key}: no {k:?}"))
        };
        let t = StagedTarget {
            name: get("name")?,
            osname: get("osname")?,
            bootcsum: get("bootcsum")?,
        };
        if super::names::parse_deploy_name(&t.name).is_none() {
            return Err(format!("{key}: {:?} is not a deployment name ($csum.$serial)", t.name));
        }
        if !super::names::valid_stateroot(&t.osname) {
            return Err(format!("{key}: {:?} is not a stateroot name", t.osname));
        }
        Ok(Some(t))
    }
}

/// `/run/ostree/staged-deployment`, with treeboot's extra keys (ignored by
/// libostree) for what finalize must know from stage time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Staged {
    pub target: Option<StagedTarget>,
    pub merge: Option<StagedTarget>,
    /// Present only when the kernel arguments were given at stage time.
    pub kargs: Option<Vec<String>>,
    pub overlay_initrds: Vec<String>,
    pub locked: bool,
    pub bootconfig_extra: Vec<(String, String)>,
    /// treeboot: deploy's retain flags (retain, retain-pending, retain-rollback).
    pub retain: (bool, bool, bool),
    /// treeboot: seconds since the epoch when it was staged.
    pub staged_at: Option<u64>,
}

/// Which tool wrote a staged record: treeboot's have keys of their own
/// (`treeboot.retain` is always there), libostree's have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Stager {
    Treeboot,
    Ostree,
}

impl Stager {
    /// The writer of the record `data`; None when no entry can be read
    /// (damaged: whoever finalizes reports it).
    pub fn of(data: &[u8]) -> Option<Self> {
        let data = copy_to_align(data);
        let v = VarDict::parse(data.as_ref());
        if v.is_empty() {
            return None;
        }
        let ours = v.keys().any(|k| k.starts_with("treeboot."));
        Some(if ours { Stager::Treeboot } else { Stager::Ostree })
    }

    /// The unit that applies a record this tool staged.
    pub fn finalize_unit(self) -> &'static str {
        match self {
            Stager::Treeboot => "treeboot-finalize-staged.service",
            Stager::Ostree => "ostree-finalize-staged.service",
        }
    }
}

impl Staged {
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        if data.is_empty() {
            return Err("the file is empty".into());
        }
        let data = copy_to_align(data);
        let v = VarDict::parse(data.as_ref());
        if v.is_empty() {
            return Err("not a GVariant a{sv} record: no entry could be read (damaged, or not a staged-deployment file)".into());
        }
        let target = StagedTarget::read(&v, "target")?.ok_or("no \"target\" deployment")?;
        Ok(Staged {
            target: Some(target),
            merge: StagedTarget::read(&v, "merge-deployment")?,
            kargs: v.strings("kargs")?,
            overlay_initrds: v.strings("overlay-initrds")?.unwrap_or_default(),
            locked: v.boolean("locked")?.unwrap_or(false),
            bootconfig_extra: v
                .get("bootconfig-extra", gv!("a{ss}"))?
                .map(|a| {
                    a.into_iter()
                        .map(|e| {
                            let (k, v) = gvariant::Structure::to_tuple(e);
                            (k.to_str().to_string(), v.to_str().to_string())
                        })
                        .collect()
                })
                .unwrap_or_default(),
            retain: match v.fixed_bytes("treeboot.retain", "(bbb)")? {
                Some(&[a, b, c]) => (a != 0, b != 0, c != 0),
                _ => (false, false, false),
            },
            staged_at: v.get("treeboot.staged-at", gv!("t"))?.copied(),
        })
    }

    pub fn serialize(&self) -> Vec<u8> {
        let mut e = Vec::new();
        if let Some(t) = &self.target {
            e.push(("target", t.to_value()));
        }
        if let Some(m) = &self.merge {
            e.push(("merge-deployment", m.to_value()));
        }
        if let Some(k) = &self.kargs {
            e.push(("kargs", Value::string_array(k)));
        }
        if !self.overlay_initrds.is_empty() {
            e.push(("overlay-initrds", Value::string_array(&self.overlay_initrds)));
        }
        e.push(("locked", Value::Bool(self.locked)));
        if !self.bootconfig_extra.is_empty() {
            e.push((
                "bootconfig-extra",
                Value::Array(
                    "{ss}".into(),
                    self.bootconfig_extra
                        .iter()
                        .map(|(k, v)| Value::DictEntry(Box::new(Value::string(k.clone())), Box::new(Value::string(v.clone()))))
                        .collect(),
                ),
            ));
        }
        let (a, b, c) = self.retain;
        e.push(("treeboot.retain", Value::Tuple(vec![Value::Bool(a), Value::Bool(b), Value::Bool(c)])));
        if let Some(t) = self.staged_at {
            e.push(("treeboot.staged-at", Value::U64(t)));
        }
        Value::vardict(e).encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_staged() {
        assert_eq!(Stager::of(&sample().serialize()), Some(Stager::Treeboot));
        // What libostree writes: target, kargs, locked and nothing of ours.
        let t = sample().target.unwrap().to_value();
        let ostree = Value::vardict(vec![("target", t), ("kargs", Value::string_array(&["rw".to_string()])), ("locked", Value::Bool(false))]).encode();
        assert_eq!(Stager::of(&ostree), Some(Stager::Ostree));
        assert_eq!(Stager::of(b"\x01\x02junk"), None);
        assert_eq!(Stager::of(b""), None);
    }

    fn sample() -> Staged {
        Staged {
            target: Some(StagedTarget { name: format!("{}.0", "a".repeat(64)), osname: "os".into(), bootcsum: "b".repeat(64) }),
            merge: Some(StagedTarget { name: format!("{}.1", "c".repeat(64)), osname: "os".into(), bootcsum: "b".repeat(64) }),
            kargs: Some(vec!["root=LABEL=root".into()]),
            locked: true,
            retain: (false, true, false),
            staged_at: Some(1_700_000_000),
            ..Default::default()
        }
    }

    #[test]
    fn staged_roundtrip() {
        let s = sample();
        assert_eq!(Staged::parse(&s.serialize()).unwrap(), s);
    }

    #[test]
    fn bad_staged_files() {
        let good = sample().serialize();
        assert_eq!(Staged::parse(b"").unwrap_err(), "the file is empty");
        assert!(Staged::parse(&good[..good.len() / 2]).is_err(), "truncated");
        let wrong = Value::vardict(vec![("target", Value::string("x"))]).encode();
        assert!(Staged::parse(&wrong).unwrap_err().contains("target is s, not a{sv}"));
        let wrong = Value::vardict(vec![("target", Value::vardict(vec![("name", Value::string("nope")), ("osname", Value::string("os")), ("bootcsum", Value::string("b"))]))]).encode();
        assert!(Staged::parse(&wrong).unwrap_err().contains("not a deployment name"));
        let wrong = Value::vardict(vec![("locked", Value::Bool(true))]).encode();
        assert!(Staged::parse(&wrong).unwrap_err().contains("no \"target\""));
    }

    #[test]
    fn booted_record() {
        let b = Booted { backing_root_device_inode: Some((2049, 77)), sysroot_ro: true, ..Default::default() };
        assert_eq!(Booted::parse(&b.serialize()).unwrap(), b);
        assert_eq!(Booted::parse(b"").unwrap(), Booted::default());
        // As glib reads it: data that is not a dictionary in normal form
        // is an empty one.
        assert_eq!(Booted::parse(b"junk").unwrap(), Booted::default());
        let wrong = Value::vardict(vec![("sysroot-ro", Value::string("yes"))]).encode();
        assert_eq!(Booted::parse(&wrong).unwrap_err(), "sysroot-ro is s, not b");
        // composefs: both of libostree's keys, read back.
        let c = Booted { composefs: true, composefs_verity: true, ..Default::default() };
        assert_eq!(Booted::parse(&c.serialize()).unwrap(), c);
        let libostree = Value::vardict(vec![("composefs", Value::Bool(true)), ("composefs.verity", Value::Bool(false))]).encode();
        assert_eq!(Booted::parse(&libostree).unwrap(), Booted { composefs: true, ..Default::default() });
    }
}
