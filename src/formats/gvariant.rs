//! A small GVariant codec, free of glib, for the few files ostree systems
//! exchange in this format: `/run/ostree-booted`, `/run/ostree/staged-deployment`
//! and the metadata of commit objects.
//!
//! It follows the GVariant serialization specification: little-endian
//! framing offsets sized by the container, children aligned relative to
//! the container start, variable-size tuple members framed from the end.
//! Supported types: `b y n q i u x t d s o g v`, arrays, tuples and dict
//! entries. Maybe types are rejected.

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

fn read_offset(d: &[u8], at: usize, w: usize) -> Result<usize, Error> {
    let s = d.get(at..at + w).ok_or_else(|| Error("framing offset out of range".into()))?;
    let mut v = 0usize;
    for (i, b) in s.iter().enumerate() {
        v |= (*b as usize) << (8 * i);
    }
    Ok(v)
}

/// How deeply values may nest (variants in variants, containers in
/// containers): glib's own limit (`G_VARIANT_MAX_RECURSION_DEPTH`). Without
/// one, a small crafted file of nested variants would exhaust the stack.
pub const MAX_DEPTH: usize = 128;

/// Decode `data` as a value of type `ty`.
pub fn decode(ty: &str, data: &[u8]) -> Result<Value, Error> {
    let (one, rest) = split_type(ty)?;
    if !rest.is_empty() {
        return err(format!("{ty:?} is more than one type"));
    }
    decode_one(one, data, 0)
}

fn fixed<const N: usize>(d: &[u8], t: &str) -> Result<[u8; N], Error> {
    d.try_into().map_err(|_| Error(format!("value of type {t} has {} bytes, not {N}", d.len())))
}

fn decode_one(t: &str, d: &[u8], depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return err(format!("values nested more than {MAX_DEPTH} deep"));
    }
    Ok(match t.as_bytes()[0] {
        b'b' => match fixed::<1>(d, t)?[0] {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            x => return err(format!("boolean byte {x}")),
        },
        b'y' => Value::Byte(fixed::<1>(d, t)?[0]),
        b'n' => Value::I16(i16::from_le_bytes(fixed(d, t)?)),
        b'q' => Value::U16(u16::from_le_bytes(fixed(d, t)?)),
        b'i' => Value::I32(i32::from_le_bytes(fixed(d, t)?)),
        b'u' => Value::U32(u32::from_le_bytes(fixed(d, t)?)),
        b'x' => Value::I64(i64::from_le_bytes(fixed(d, t)?)),
        b't' => Value::U64(u64::from_le_bytes(fixed(d, t)?)),
        b'd' => Value::Double(f64::from_le_bytes(fixed(d, t)?)),
        b's' | b'o' | b'g' => {
            let Some((0, body)) = d.split_last().map(|(l, b)| (*l, b)) else {
                return err("string is not NUL-terminated");
            };
            if body.contains(&0) {
                return err("string contains a NUL byte");
            }
            let s = std::str::from_utf8(body).map_err(|_| Error("string is not UTF-8".into()))?;
            Value::Str(t.chars().next().unwrap(), s.to_string())
        }
        b'v' => {
            let sep = d.iter().rposition(|b| *b == 0).ok_or_else(|| Error("variant without type".into()))?;
            let ty = std::str::from_utf8(&d[sep + 1..]).map_err(|_| Error("variant type is not UTF-8".into()))?;
            let (one, rest) = split_type(ty)?;
            if !rest.is_empty() {
                return err(format!("variant type {ty:?} is not one type"));
            }
            Value::Variant(Box::new(decode_one(one, &d[..sep], depth + 1)?))
        }
        b'a' => {
            let et = &t[1..];
            let mut out = Vec::new();
            match fixed_size(et)? {
                Some(sz) => {
                    if !d.len().is_multiple_of(sz) {
                        return err(format!("array of {et} has {} bytes, not a multiple of {sz}", d.len()));
                    }
                    for c in d.chunks(sz) {
                        out.push(decode_one(et, c, depth + 1)?);
                    }
                }
                None if d.is_empty() => {}
                None => {
                    let w = offset_size(d.len());
                    let last = read_offset(d, d.len() - w, w)?;
                    if last >= d.len() || !(d.len() - last).is_multiple_of(w) {
                        return err("array framing offsets are corrupt");
                    }
                    let n = (d.len() - last) / w;
                    let al = alignment(et)?;
                    let mut start = 0;
                    for i in 0..n {
                        let end = read_offset(d, last + i * w, w)?;
                        let s = align_up(start, al);
                        if s > end || end > last {
                            return err("array element out of range");
                        }
                        out.push(decode_one(et, &d[s..end], depth + 1)?);
                        start = end;
                    }
                }
            }
            Value::Array(et.to_string(), out)
        }
        b'(' | b'{' => {
            let kids = children_types(t)?;
            let w = offset_size(d.len());
            let mut offsets_end = d.len();
            let mut pos = 0;
            let mut vals = Vec::new();
            for (i, k) in kids.iter().enumerate() {
                pos = align_up(pos, alignment(k)?);
                let end = match fixed_size(k)? {
                    Some(sz) => pos + sz,
                    None if i + 1 == kids.len() => offsets_end,
                    None => {
                        if offsets_end < w {
                            return err("tuple framing offsets are corrupt");
                        }
                        offsets_end -= w;
                        read_offset(d, offsets_end, w)?
                    }
                };
                if pos > end || end > d.len() {
                    return err(format!("member {i} of {t} out of range"));
                }
                vals.push(decode_one(k, &d[pos..end], depth + 1)?);
                pos = end;
            }
            if t.starts_with('{') {
                let [k, v]: [Value; 2] = vals.try_into().map_err(|_| Error("dict entry needs two members".into()))?;
                Value::DictEntry(Box::new(k), Box::new(v))
            } else {
                Value::Tuple(vals)
            }
        }
        _ => return err(format!("unsupported type {t}")),
    })
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
            Value::Tuple(_) | Value::DictEntry(..) => {
                let kids: Vec<&Value> = match self {
                    Value::Tuple(v) => v.iter().collect(),
                    Value::DictEntry(k, v) => vec![k, v],
                    _ => unreachable!(),
                };
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
                let t = self.type_string();
                if fixed_size(&t).ok().flatten().is_some() {
                    body.resize(align_up(body.len(), alignment(&t).unwrap_or(1)), 0);
                } else {
                    ends.reverse();
                    append_offsets(&mut body, &ends);
                }
                out.extend(body);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `v` nested `n` times around the byte 5.
    fn nested_variants(n: usize) -> Vec<u8> {
        let mut d = vec![5u8, 0, b'y'];
        for _ in 1..n {
            d.extend([0, b'v']);
        }
        d
    }

    #[test]
    fn nesting_is_bounded_as_in_glib() {
        assert!(decode("v", &nested_variants(100)).is_ok());
        let e = decode("v", &nested_variants(100_000)).unwrap_err();
        assert!(e.0.contains("nested more than 128"), "{}", e.0);
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
    fn roundtrip_vardict() {
        let v = Value::vardict(vec![
            ("target", Value::vardict(vec![("name", Value::string("abc.0")), ("osname", Value::string("os"))])),
            ("locked", Value::Bool(true)),
            ("kargs", Value::string_array(&["a=b".into(), "quiet".into()])),
            ("backing-root-device-inode", Value::Tuple(vec![Value::U64(2049), Value::U64(1234567)])),
        ]);
        let bytes = v.encode();
        let back = decode("a{sv}", &bytes).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.lookup("locked").and_then(Value::as_bool), Some(true));
        assert_eq!(back.lookup("target").and_then(|t| t.lookup("osname")).and_then(Value::as_str), Some("os"));
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let v = Value::vardict(vec![("a", Value::string("x")), ("b", Value::U64(7))]).encode();
        for cut in 0..v.len() {
            let _ = decode("a{sv}", &v[..cut]);
        }
        let mut junk = v.clone();
        for i in 0..junk.len() {
            junk[i] ^= 0xff;
            let _ = decode("a{sv}", &junk);
            junk[i] ^= 0xff;
        }
        assert!(decode("a{sv}", b"\x01").is_err());
        assert!(decode("mv", b"").is_err());
    }
}
