//! Cross-checks of the glib-free pieces against the real thing: the
//! GVariant codec against glib, the commit reader against libostree, and
//! the `treeboot` binary's links (it must not load libostree).

mod common;
use common::*;
use ostree::glib;
use gvariant::aligned_bytes::copy_to_align;
use gvariant::gv;
use treeboot::formats::gvariant::{Value, VarDict};

#[test]
fn our_encoding_is_glib_normal_form() {
    let v = Value::vardict(vec![
        ("target", Value::vardict(vec![("name", Value::string("ab12.0")), ("osname", Value::string("testos")), ("bootcsum", Value::string("ff"))])),
        ("kargs", Value::string_array(&["root=LABEL=root".into(), "quiet".into()])),
        ("locked", Value::Bool(false)),
        ("backing-root-device-inode", Value::Tuple(vec![Value::U64(66305), Value::U64(12345678901)])),
        ("bootconfig-extra", Value::Array("{ss}".into(), vec![Value::DictEntry(Box::new(Value::string("a")), Box::new(Value::string("b")))])),
        ("empty", Value::string_array(&[])),
    ]);
    let bytes = v.encode();
    let g = glib::Variant::from_data_with_type(&bytes, glib::VariantTy::new("a{sv}").unwrap());
    assert!(g.is_normal_form(), "glib: not in normal form: {g}");
    let dict = glib::VariantDict::new(Some(&g));
    assert_eq!(dict.lookup::<bool>("locked").unwrap(), Some(false));
    assert_eq!(dict.lookup::<(u64, u64)>("backing-root-device-inode").unwrap(), Some((66305, 12345678901)));
    assert_eq!(dict.lookup::<Vec<String>>("kargs").unwrap().unwrap(), vec!["root=LABEL=root", "quiet"]);
    let t = dict.lookup_value("target", None).unwrap();
    let td = glib::VariantDict::new(Some(&t));
    assert_eq!(td.lookup::<String>("osname").unwrap().as_deref(), Some("testos"));
    // glib's own serialization of the same value is byte-identical.
    assert_eq!(g.data(), &bytes[..]);
}

#[test]
fn we_decode_what_glib_encodes() {
    let d = glib::VariantDict::new(None);
    d.insert("s", "hello");
    d.insert("b", true);
    d.insert("t", 42u64);
    d.insert("tt", (1u64, 2u64));
    d.insert("as", vec!["x".to_string(), "yy".to_string(), String::new()]);
    let long: String = "z".repeat(300);
    d.insert("long", long.as_str());
    let g = d.end();
    let data = copy_to_align(g.data());
    let v = VarDict::parse(data.as_ref());
    assert_eq!(v.string("s"), Ok(Some("hello")));
    assert_eq!(v.boolean("b"), Ok(Some(true)));
    assert_eq!(v.get("t", gv!("t")).unwrap().copied(), Some(42));
    let (a, b) = gvariant::Structure::to_tuple(v.get("tt", gv!("(tt)")).unwrap().unwrap());
    assert_eq!((*a, *b), (1, 2));
    assert_eq!(v.strings("as"), Ok(Some(vec!["x".to_string(), "yy".to_string(), String::new()])));
    assert_eq!(v.string("long"), Ok(Some(long.as_str())));
}

#[test]
fn commit_version_read_without_libostree() {
    let s = Scratch::new("commit");
    let root = sysroot_with_commits(&s);
    let sr = treeboot::sysroot::Sysroot::load(camino::Utf8Path::from_path(&root).unwrap()).unwrap();
    let repo = treeboot::repo::Repo::open(&sr.root).unwrap();
    for (r, v) in [("testos/v1", "1.0"), ("testos/v3", "3.0")] {
        let c = repo.resolve(r).unwrap();
        assert_eq!(sr.commit_version(&c).unwrap().as_deref(), Some(v));
        assert_eq!(repo.commit_version(&c).unwrap().as_deref(), Some(v));
    }
}

#[test]
fn treeboot_binary_does_not_link_libostree() {
    let out = run(std::process::Command::new("readelf").arg("-d").arg(treeboot_bin()));
    let needed: Vec<&str> = out.lines().filter(|l| l.contains("(NEEDED)")).collect();
    for l in &needed {
        // glibc's own parts only (libm: float formatting of the progress
        // bars' rates); never libostree, glib or gio.
        assert!(
            l.contains("libc.so") || l.contains("libm.so") || l.contains("libgcc_s") || l.contains("ld-linux"),
            "unexpected library: {l}"
        );
    }
    assert!(!needed.is_empty());
}
