//! treeboot's GVariant reading (src/formats/gvariant.rs, through the
//! pure-Rust `gvariant` crate) against glib's, what libostree uses, on what
//! treeboot reads: a commit object's `version` (status reads one per
//! deployment) and the staged record (`a{sv}` with nested dicts). Prints ns
//! per read and, for a set of damaged staged records, which reader still
//! finds a target deployment name: both read data that is not in normal
//! form with glib's defaults; treeboot then checks the name and the types.
//!
//! cargo run --release --example gvariant-bench -- [COMMIT-OBJECT]
//! (without an argument, a commit object is made with Debian's ostree)

use std::time::Instant;

use ostree::glib;
use treeboot::formats::gvariant::commit_version;
use treeboot::formats::runstate::{Staged, StagedTarget};

fn commit_object() -> Vec<u8> {
    if let Some(p) = std::env::args().nth(1) {
        return std::fs::read(p).expect("reading the commit object");
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::write(tree.join("usr/bin/hello"), "hello\n").unwrap();
    let ok = |c: &mut std::process::Command| assert!(c.status().unwrap().success());
    ok(std::process::Command::new("ostree").arg(format!("--repo={}", repo.display())).args(["init", "--mode=bare"]));
    let out = std::process::Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["commit", "-b", "b", "--add-metadata-string=version=42.1", "-s", "subject"])
        .arg(format!("--tree=dir={}", tree.display()))
        .output()
        .unwrap();
    let c = String::from_utf8(out.stdout).unwrap().trim().to_string();
    std::fs::read(repo.join(format!("objects/{}/{}.commit", &c[..2], &c[2..]))).unwrap()
}

fn staged_record() -> Vec<u8> {
    let t = |n: &str| StagedTarget { name: format!("{}.0", n.repeat(64)), osname: "fedora".into(), bootcsum: "b".repeat(64) };
    Staged {
        target: Some(t("a")),
        merge: Some(t("c")),
        kargs: Some(vec!["root=LABEL=root".into(), "rw".into(), "quiet".into()]),
        locked: true,
        staged_at: Some(1_780_000_000),
        ..Default::default()
    }
    .serialize()
}

fn per_op(n: u32, mut f: impl FnMut() -> bool) -> f64 {
    assert!(f(), "the decoder under test fails on good data");
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn ours_version(d: &[u8]) -> Option<String> {
    commit_version(d).ok().flatten()
}

fn glib_version(d: &[u8]) -> Option<String> {
    let b = glib::Bytes::from(d);
    let commit = glib::Variant::from_bytes_with_type(&b, glib::VariantTy::new("(a{sv}aya(say)sstayay)").unwrap());
    let meta = commit.child_value(0);
    glib::VariantDict::new(Some(&meta)).lookup::<String>("version").ok().flatten()
}

fn ours_staged(d: &[u8]) -> bool {
    Staged::parse(d).is_ok()
}

/// glib's reading of a staged record, as libostree's
/// `_ostree_sysroot_reload_staged` does it: the target's name.
fn glib_staged(d: &[u8]) -> bool {
    let b = glib::Bytes::from(d);
    let v = glib::Variant::from_bytes_with_type(&b, glib::VariantTy::VARDICT);
    let dict = glib::VariantDict::new(Some(&v));
    let Some(t) = dict.lookup_value("target", Some(glib::VariantTy::VARDICT)) else { return false };
    glib::VariantDict::new(Some(&t)).lookup::<String>("name").ok().flatten().is_some()
}

fn main() {
    let commit = commit_object();
    let staged = staged_record();
    assert_eq!(ours_version(&commit), glib_version(&commit));
    let n = 200_000;
    println!("{:<34} {:>12} {:>12}", "decode", "treeboot ns", "glib ns");
    println!("{:<34} {:>12.0} {:>12.0}", "commit object, version", per_op(n, || ours_version(&commit).is_some()), per_op(n, || glib_version(&commit).is_some()));
    println!("{:<34} {:>12.0} {:>12.0}", "staged record (a{sv})", per_op(n, || ours_staged(&staged)), per_op(n, || glib_staged(&staged)));
    // Damaged records: every single-byte change, and every truncation.
    let (mut both, mut only_ours, mut only_glib, mut neither) = (0, 0, 0, 0);
    let mut cases: Vec<Vec<u8>> = (0..staged.len()).map(|i| staged[..i].to_vec()).collect();
    for i in 0..staged.len() {
        for b in [0u8, 1, 0x7f, 0xff] {
            let mut d = staged.clone();
            if d[i] != b {
                d[i] = b;
                cases.push(d);
            }
        }
    }
    for d in &cases {
        match (ours_staged(d), glib_staged(d)) {
            (true, true) => both += 1,
            (true, false) => only_ours += 1,
            (false, true) => only_glib += 1,
            (false, false) => neither += 1,
        }
    }
    println!("damaged staged records: {} cases; a record with a target name read by both {both}, only treeboot {only_ours}, only glib {only_glib}, neither {neither}", cases.len());
}
