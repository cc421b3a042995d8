//! The GVariant records ostree keeps in `/run`: `/run/ostree-booted`
//! (written by prepare-root) and `/run/ostree/staged-deployment` (written by
//! stage, read by finalize and by every tool's status).

use super::gvariant::{decode, Value};

/// `/run/ostree-booted`. An empty file is valid (older prepare-roots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Booted {
    /// (st_dev, st_ino) of the booted deployment's directory.
    pub backing_root_device_inode: Option<(u64, u64)>,
    pub sysroot_ro: bool,
    pub transient_etc: Option<String>,
    pub root_transient: bool,
    pub composefs: bool,
}

impl Booted {
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        if data.is_empty() {
            return Ok(Self::default());
        }
        let v = decode("a{sv}", data).map_err(|e| format!("not a GVariant a{{sv}}: {e}"))?;
        let mut b = Booted::default();
        if let Some(x) = v.lookup("backing-root-device-inode") {
            match x {
                Value::Tuple(t) => match t.as_slice() {
                    [Value::U64(d), Value::U64(i)] => b.backing_root_device_inode = Some((*d, *i)),
                    _ => return Err("backing-root-device-inode is not (tt)".into()),
                },
                _ => return Err("backing-root-device-inode is not (tt)".into()),
            }
        }
        let flag = |k: &str| -> Result<bool, String> {
            match v.lookup(k) {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(format!("{k} is not a boolean")),
            }
        };
        b.sysroot_ro = flag("sysroot-ro")?;
        b.root_transient = flag("root.transient")?;
        b.composefs = flag("composefs")?;
        if let Some(t) = v.lookup("transient-etc") {
            b.transient_etc = Some(t.as_str().ok_or("transient-etc is not a string")?.to_string());
        }
        Ok(b)
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
            e.push(("composefs", Value::Bool(true)));
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

    fn from_value(key: &str, v: &Value) -> Result<Self, String> {
        let get = |k: &str| -> Result<String, String> {
            v.lookup(k)
                .ok_or_else(|| format!("{key}: no {k:?}"))?
                .as_str()
                .map(String::from)
                .ok_or_else(|| format!("{key}: {k:?} is not a string"))
        };
        if !matches!(v, Value::Array(t, _) if t == "{sv}") {
            return Err(format!("{key} is not a{{sv}}"));
        }
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
        Ok(t)
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

fn strv(key: &str, v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(t, items) if t == "s" => Ok(items.iter().map(|i| i.as_str().unwrap_or_default().to_string()).collect()),
        _ => Err(format!("{key} is not an array of strings (as)")),
    }
}

impl Staged {
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        if data.is_empty() {
            return Err("the file is empty".into());
        }
        let v = decode("a{sv}", data).map_err(|e| format!("not a GVariant a{{sv}}: {e}"))?;
        let mut s = Staged::default();
        match v.lookup("target") {
            Some(t) => s.target = Some(StagedTarget::from_value("target", t)?),
            None => return Err("no \"target\" deployment".into()),
        }
        if let Some(m) = v.lookup("merge-deployment") {
            s.merge = Some(StagedTarget::from_value("merge-deployment", m)?);
        }
        if let Some(k) = v.lookup("kargs") {
            s.kargs = Some(strv("kargs", k)?);
        }
        if let Some(k) = v.lookup("overlay-initrds") {
            s.overlay_initrds = strv("overlay-initrds", k)?;
        }
        if let Some(l) = v.lookup("locked") {
            s.locked = l.as_bool().ok_or("locked is not a boolean")?;
        }
        if let Some(Value::Array(t, items)) = v.lookup("bootconfig-extra") {
            if t != "{ss}" {
                return Err("bootconfig-extra is not a{ss}".into());
            }
            for e in items {
                if let Value::DictEntry(k, v) = e {
                    s.bootconfig_extra.push((k.as_str().unwrap_or_default().into(), v.as_str().unwrap_or_default().into()));
                }
            }
        } else if v.lookup("bootconfig-extra").is_some() {
            return Err("bootconfig-extra is not a{ss}".into());
        }
        if let Some(r) = v.lookup("treeboot.retain") {
            match r {
                Value::Tuple(t) => match t.as_slice() {
                    [Value::Bool(a), Value::Bool(b), Value::Bool(c)] => s.retain = (*a, *b, *c),
                    _ => return Err("treeboot.retain is not (bbb)".into()),
                },
                _ => return Err("treeboot.retain is not (bbb)".into()),
            }
        }
        if let Some(t) = v.lookup("treeboot.staged-at") {
            match t {
                Value::U64(n) => s.staged_at = Some(*n),
                _ => return Err("treeboot.staged-at is not t".into()),
            }
        }
        Ok(s)
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
        assert!(Staged::parse(&wrong).unwrap_err().contains("target is not a{sv}"));
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
        assert!(Booted::parse(b"junk").is_err());
    }
}
