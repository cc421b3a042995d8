//! GVariant, without glib, for the few files ostree systems exchange in
//! this format: `/run/ostree-booted`, `/run/ostree/staged-deployment` and
//! the metadata of commit objects.
//!
//! Writing is ours ([`Value::encode`]): glib's normal form, byte for byte
//! (little-endian framing offsets sized by the container, children aligned
//! relative to the container start, variable-size tuple members framed from
//! the end), checked against glib in `tests/formats_glib.rs`. Supported
//! types: `b y n q i u x t d s o g v`, arrays, tuples and dict entries.
//!
//! Reading goes through the pure-Rust `gvariant` crate (the one bootc's
//! ostree-ext uses; no glib, so the early binaries can use it): it was
//! measured 17-32x faster than the decoder treeboot had (docs/benchmarks.md)
//! and, like glib, reads data that is not in normal form with glib's
//! defaults instead of refusing it. Types are static (`gv!("a{sv}")`), so a
//! record cannot make the reader recurse deeper than the type it asked
//! for: a `v` is only opened with [`VarDict::get`] at a type given in the
//! code. [`VarDict`] gives glib's `GVariantDict` view of an `a{sv}`, with a
//! type check per key that names the key.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Byte(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Double(f64),
    /// `s`, `o` or `g` (the type letter is kept).
    Str(char, String),
    Variant(Box<Value>),
    /// Element type, elements.
    Array(String, Vec<Value>),
    Tuple(Vec<Value>),
    DictEntry(Box<Value>, Box<Value>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Error {}

fn err<T>(m: impl Into<String>) -> Result<T, Error> {
    Err(Error(m.into()))
}

/// Split the first complete type off a type string.
fn split_type(t: &str) -> Result<(&str, &str), Error> {
    let b = t.as_bytes();
    let end = match b.first() {
        None => return err("empty type string"),
        Some(b'a') => 1 + split_type(&t[1..])?.0.len(),
        Some(b'(') | Some(b'{') => {
            let close = if b[0] == b'(' { ')' } else { '}' };
            let mut rest = &t[1..];
            let mut len = 1;
            loop {
                if rest.starts_with(close) {
                    len += 1;
                    break;
                }
                let (one, r) = split_type(rest)?;
                len += one.len();
                rest = r;
            }
            len
        }
        Some(c) if b"bynqiuxtdsogv".contains(c) => 1,
        Some(c) => return err(format!("unsupported type character {:?}", *c as char)),
    };
    Ok((&t[..end], &t[end..]))
}

fn children_types(t: &str) -> Result<Vec<&str>, Error> {
    let mut inner = &t[1..t.len() - 1];
    let mut v = Vec::new();
    while !inner.is_empty() {
        let (one, rest) = split_type(inner)?;
        v.push(one);
        inner = rest;
    }
    Ok(v)
}

fn alignment(t: &str) -> Result<usize, Error> {
    Ok(match t.as_bytes()[0] {
        b'b' | b'y' | b's' | b'o' | b'g' => 1,
        b'n' | b'q' => 2,
        b'i' | b'u' => 4,
        b'x' | b't' | b'd' | b'v' => 8,
        b'a' => alignment(&t[1..])?,
        b'(' | b'{' => children_types(t)?.iter().map(|c| alignment(c)).collect::<Result<Vec<_>, _>>()?.into_iter().max().unwrap_or(1),
        _ => return err(format!("bad type {t}")),
    })
}

/// The fixed size of a type, or None for variable-size types.
fn fixed_size(t: &str) -> Result<Option<usize>, Error> {
    Ok(match t.as_bytes()[0] {
        b'b' | b'y' => Some(1),
        b'n' | b'q' => Some(2),
        b'i' | b'u' => Some(4),
        b'x' | b't' | b'd' => Some(8),
        b's' | b'o' | b'g' | b'v' | b'a' => None,
        b'(' | b'{' => {
            let kids = children_types(t)?;
            if kids.is_empty() {
                return Ok(Some(1));
            }
            let mut off = 0usize;
            for k in &kids {
                let Some(sz) = fixed_size(k)? else { return Ok(None) };
                off = align_up(off, alignment(k)?) + sz;
            }
            Some(align_up(off, alignment(t)?))
        }
        _ => return err(format!("bad type {t}")),
    })
}

fn align_up(n: usize, a: usize) -> usize {
    n.div_ceil(a) * a
}

fn offset_size(total: usize) -> usize {
    match total {
        0 => 0,
        1..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

impl Value {
    pub fn type_string(&self) -> String {
        match self {
            Value::Bool(_) => "b".into(),
            Value::Byte(_) => "y".into(),
            Value::I16(_) => "n".into(),
            Value::U16(_) => "q".into(),
            Value::I32(_) => "i".into(),
            Value::U32(_) => "u".into(),
            Value::I64(_) => "x".into(),
            Value::U64(_) => "t".into(),
            Value::Double(_) => "d".into(),
            Value::Str(c, _) => c.to_string(),
            Value::Variant(_) => "v".into(),
            Value::Array(et, _) => format!("a{et}"),
            Value::Tuple(v) => format!("({})", v.iter().map(|c| c.type_string()).collect::<String>()),
            Value::DictEntry(k, v) => format!("{{{}{}}}", k.type_string(), v.type_string()),
        }
    }

    /// Serialize in normal form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bool(b) => out.push(*b as u8),
            Value::Byte(b) => out.push(*b),
            Value::I16(v) => out.extend(v.to_le_bytes()),
            Value::U16(v) => out.extend(v.to_le_bytes()),
            Value::I32(v) => out.extend(v.to_le_bytes()),
            Value::U32(v) => out.extend(v.to_le_bytes()),
            Value::I64(v) => out.extend(v.to_le_bytes()),
            Value::U64(v) => out.extend(v.to_le_bytes()),
            Value::Double(v) => out.extend(v.to_le_bytes()),
            Value::Str(_, s) => {
                out.extend(s.as_bytes());
                out.push(0);
            }
            Value::Variant(v) => {
                out.extend(v.encode());
                out.push(0);
                out.extend(v.type_string().as_bytes());
            }
            Value::Array(et, items) => {
                let al = alignment(et).unwrap_or(1);
                let fixed = fixed_size(et).ok().flatten().is_some();
                let mut body = Vec::new();
                let mut ends = Vec::new();
                for it in items {
                    body.resize(align_up(body.len(), al), 0);
                    it.encode_into(&mut body);
                    ends.push(body.len());
                }
                if !fixed {
                    append_offsets(&mut body, &ends);
                }
                out.extend(body);
            }
            Value::Tuple(kids) => encode_tuple(&kids.iter().collect::<Vec<_>>(), &self.type_string(), out),
            Value::DictEntry(k, v) => encode_tuple(&[k, v], &self.type_string(), out),
        }
    }

    /// Look up `key` in an `a{sv}` and return the value inside the variant.
    pub fn lookup(&self, key: &str) -> Option<&Value> {
        let Value::Array(_, items) = self else { return None };
        items.iter().find_map(|e| match e {
            Value::DictEntry(k, v) => match (&**k, &**v) {
                (Value::Str(_, s), Value::Variant(inner)) if s == key => Some(&**inner),
                _ => None,
            },
            _ => None,
        })
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(_, s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// An `a{sv}` from (key, value) pairs, in the order given.
    pub fn vardict(entries: Vec<(&str, Value)>) -> Value {
        Value::Array(
            "{sv}".into(),
            entries
                .into_iter()
                .map(|(k, v)| Value::DictEntry(Box::new(Value::Str('s', k.into())), Box::new(Value::Variant(Box::new(v)))))
                .collect(),
        )
    }

    pub fn string(s: impl Into<String>) -> Value {
        Value::Str('s', s.into())
    }

    pub fn string_array(v: &[String]) -> Value {
        Value::Array("s".into(), v.iter().map(|s| Value::string(s.clone())).collect())
    }
}

/// A tuple or dict entry of type `t`: members aligned, the end of each
/// variable-size member but the last framed from the end of the container.
fn encode_tuple(kids: &[&Value], t: &str, out: &mut Vec<u8>) {
    if kids.is_empty() {
        out.push(0);
        return;
    }
    let mut body = Vec::new();
    let mut ends = Vec::new();
    let n = kids.len();
    for (i, k) in kids.iter().enumerate() {
        let kt = k.type_string();
        body.resize(align_up(body.len(), alignment(&kt).unwrap_or(1)), 0);
        k.encode_into(&mut body);
        if fixed_size(&kt).ok().flatten().is_none() && i + 1 != n {
            ends.push(body.len());
        }
    }
    if fixed_size(t).ok().flatten().is_some() {
        body.resize(align_up(body.len(), alignment(t).unwrap_or(1)), 0);
    } else {
        ends.reverse();
        append_offsets(&mut body, &ends);
    }
    out.extend(body);
}

/// Append framing offsets using the smallest width that can address the
/// whole container (body plus the offsets themselves).
fn append_offsets(body: &mut Vec<u8>, ends: &[usize]) {
    if ends.is_empty() {
        return;
    }
    let mut w = 1;
    while offset_size(body.len() + ends.len() * w) > w {
        w *= 2;
    }
    for e in ends {
        body.extend(&e.to_le_bytes()[..w]);
    }
}

// Reading, through the `gvariant` crate.

/// An `a{sv}` as glib's `GVariantDict` sees it: a key given twice has its
/// last value. Borrowed from an aligned copy of the data
/// ([`gvariant::aligned_bytes::copy_to_align`]).
pub struct VarDict<'a> {
    entries: Vec<(&'a str, &'a gvariant::Variant)>,
}

/// Aligned GVariant data, as the `gvariant` crate reads it.
pub type Aligned = gvariant::aligned_bytes::AlignedSlice<gvariant::aligned_bytes::A8>;

impl<'a> VarDict<'a> {
    /// `data` read as an `a{sv}` (data not in normal form reads as glib
    /// reads it, often as an empty dictionary).
    pub fn parse(data: &'a Aligned) -> Self {
        use gvariant::{Marker, Structure};
        Self::from_entries(gvariant::gv!("a{sv}").cast(data).into_iter().map(|e| e.to_tuple()))
    }

    /// From the entries of an `a{sv}` the caller read as part of a larger
    /// type (each `gv!` type is its own Rust type).
    pub fn from_entries(entries: impl IntoIterator<Item = (&'a gvariant::Str, &'a gvariant::Variant)>) -> Self {
        VarDict { entries: entries.into_iter().map(|(k, v)| (k.to_str(), v)).collect() }
    }

    /// The `a{sv}` under `key`.
    pub fn dict(&self, key: &str) -> Result<Option<VarDict<'a>>, String> {
        use gvariant::Structure;
        Ok(self.get(key, gvariant::gv!("a{sv}"))?.map(|d| Self::from_entries(d.into_iter().map(|e| e.to_tuple()))))
    }

    /// Whether no entry could be read (glib reads data that is not an
    /// `a{sv}` in normal form as an empty one).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys, in the order they are in the data.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.entries.iter().map(|(k, _)| *k)
    }

    /// The type string of the value under `key`.
    pub fn type_of(&self, key: &str) -> Option<&'a [u8]> {
        self.raw(key).map(|v| v.split().0)
    }

    fn raw(&self, key: &str) -> Option<&'a gvariant::Variant> {
        self.entries.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The value under `key` read as type `m`: `Ok(None)` when the key is
    /// absent, an error naming the key when it holds another type (glib
    /// would silently treat it as absent; a wrong type in a record ostree
    /// or treeboot wrote means the file is damaged).
    pub fn get<M: gvariant::Marker>(&self, key: &str, m: M) -> Result<Option<&'a M::Type>, String>
    where
        Aligned: gvariant::aligned_bytes::AsAligned<<M::Type as gvariant::casting::AlignOf>::AlignOf>,
    {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v.get(m).map(Some).ok_or_else(|| {
                format!("{key} is {}, not {}", String::from_utf8_lossy(v.split().0), String::from_utf8_lossy(M::TYPESTR))
            }),
        }
    }

    /// The serialized bytes of a fixed-size value of type `ty` under `key`,
    /// for the types the crate has no Rust type for (a tuple of booleans):
    /// the caller reads them as glib would, zeros when the size is wrong.
    pub fn fixed_bytes(&self, key: &str, ty: &str) -> Result<Option<&'a [u8]>, String> {
        match self.raw(key).map(|v| v.split()) {
            None => Ok(None),
            Some((t, d)) if t == ty.as_bytes() => Ok(Some(d.as_ref())),
            Some((t, _)) => Err(format!("{key} is {}, not {ty}", String::from_utf8_lossy(t))),
        }
    }

    /// A string under `key` (`s`).
    pub fn string(&self, key: &str) -> Result<Option<&'a str>, String> {
        Ok(self.get(key, gvariant::gv!("s"))?.map(|s| s.to_str()))
    }

    /// A boolean under `key` (`b`).
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, String> {
        Ok(self.get(key, gvariant::gv!("b"))?.map(|b| b.to_bool()))
    }

    /// A string array under `key` (`as`).
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        Ok(self.get(key, gvariant::gv!("as"))?.map(|a| a.into_iter().map(|s| s.to_str().to_string()).collect()))
    }
}

/// The `version` metadata of a commit object (`(a{sv}aya(say)sstayay)`),
/// as `ostree log` shows it; None when the commit has none.
pub fn commit_version(data: &[u8]) -> Result<Option<String>, String> {
    Ok(commit_info(data)?.version)
}

/// What `status` shows of a commit object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// The `version` metadata key.
    pub version: Option<String>,
    /// The subject line (None when empty).
    pub subject: Option<String>,
    /// Seconds since the epoch (ostree stores it big-endian).
    pub timestamp: u64,
}

/// Read a commit object `(a{sv}aya(say)sstayay)`: metadata, parent,
/// related, subject, body, timestamp, root trees.
pub fn commit_info(data: &[u8]) -> Result<CommitInfo, String> {
    use gvariant::{Marker, Structure};
    let d = gvariant::aligned_bytes::copy_to_align(data);
    let commit = gvariant::gv!("(a{sv}aya(say)sstayay)").cast(d.as_ref());
    let (meta, _parent, _related, subject, _body, timestamp, ..) = commit.to_tuple();
    let version = VarDict::from_entries(meta.into_iter().map(|e| e.to_tuple())).string("version")?.map(String::from);
    let subject = subject.to_str().trim();
    Ok(CommitInfo {
        version,
        subject: (!subject.is_empty()).then(|| subject.to_string()),
        timestamp: u64::from_be(*timestamp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gvariant::aligned_bytes::copy_to_align;
    use gvariant::gv;

    fn read<R>(data: &[u8], f: impl FnOnce(&VarDict) -> R) -> R {
        let d = copy_to_align(data);
        f(&VarDict::parse(d.as_ref()))
    }

    #[test]
    fn spec_examples() {
        // From the GVariant specification.
        assert_eq!(Value::string("hello world").encode(), b"hello world\0");
        let t = Value::Tuple(vec![Value::string("foo"), Value::I32(-1)]);
        assert_eq!(t.encode(), b"foo\0\xff\xff\xff\xff\x04");
        let a = Value::string_array(&["hi".into(), "bye".into()]);
        assert_eq!(a.encode(), b"hi\0bye\0\x03\x07");
        let d = Value::Array(
            "{si}".into(),
            vec![Value::DictEntry(Box::new(Value::string("a key")), Box::new(Value::I32(514)))],
        );
        // The dict entry is 13 bytes (key, padding, i32, key end offset); the
        // array adds the end offset of its one element.
        assert_eq!(d.encode(), b"a key\0\0\0\x02\x02\0\0\x06\x0d");
        assert_eq!(Value::Array("b".into(), vec![Value::Bool(true), Value::Bool(false)]).encode(), b"\x01\x00");
    }

    #[test]
    fn what_we_write_reads_back() {
        let v = Value::vardict(vec![
            ("target", Value::vardict(vec![("name", Value::string("abc.0")), ("osname", Value::string("os"))])),
            ("locked", Value::Bool(true)),
            ("kargs", Value::string_array(&["a=b".into(), "quiet".into()])),
            ("backing-root-device-inode", Value::Tuple(vec![Value::U64(2049), Value::U64(1234567)])),
        ]);
        read(&v.encode(), |d| {
            assert_eq!(d.boolean("locked"), Ok(Some(true)));
            assert_eq!(d.strings("kargs"), Ok(Some(vec!["a=b".to_string(), "quiet".to_string()])));
            assert_eq!(d.dict("target").unwrap().unwrap().string("osname"), Ok(Some("os")));
            let (dev, ino) = gvariant::Structure::to_tuple(d.get("backing-root-device-inode", gv!("(tt)")).unwrap().unwrap());
            assert_eq!((*dev, *ino), (2049, 1234567));
            assert_eq!(d.string("absent"), Ok(None));
            assert_eq!(d.type_of("locked"), Some(&b"b"[..]));
        });
    }

    #[test]
    fn a_key_of_the_wrong_type_is_named() {
        let v = Value::vardict(vec![("locked", Value::string("yes"))]).encode();
        read(&v, |d| assert_eq!(d.boolean("locked"), Err("locked is s, not b".to_string())));
    }

    #[test]
    fn a_key_given_twice_has_its_last_value_as_in_glib_dict() {
        let v = Value::vardict(vec![("k", Value::string("first")), ("k", Value::string("last"))]).encode();
        read(&v, |d| assert_eq!(d.string("k"), Ok(Some("last"))));
    }

    #[test]
    fn deep_nesting_is_not_followed() {
        // A value of `v` nested 1,000 deep: the reader opens a variant only
        // at a type the code names, so this is a type mismatch named by its
        // key, and nothing below the first level is read.
        let mut v = Value::Byte(5);
        for _ in 0..1000 {
            v = Value::Variant(Box::new(v));
        }
        let data = Value::vardict(vec![("k", v)]).encode();
        read(&data, |d| assert_eq!(d.string("k"), Err("k is v, not s".to_string())));
    }

    #[test]
    fn damaged_input_reads_without_panic() {
        let v = Value::vardict(vec![("a", Value::string("x")), ("b", Value::U64(7)), ("c", Value::string_array(&["p".into()]))]).encode();
        for cut in 0..v.len() {
            read(&v[..cut], |d| {
                let _ = (d.string("a"), d.get("b", gv!("t")), d.strings("c"));
            });
        }
        let mut junk = v.clone();
        for i in 0..junk.len() {
            for b in [0u8, 0x7f, 0xff] {
                let old = junk[i];
                junk[i] = b;
                read(&junk, |d| {
                    let _ = (d.string("a"), d.get("b", gv!("t")), d.strings("c"));
                });
                junk[i] = old;
            }
        }
        assert_eq!(commit_version(b"\x01"), Ok(None));
    }
}
