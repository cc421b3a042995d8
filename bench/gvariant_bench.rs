//! treeboot's GVariant codec (src/formats/gvariant.rs) against the pure-Rust
//! `gvariant` crate that bootc's ostree-ext uses, on what treeboot decodes:
//! a commit object's `version` (status reads one per deployment) and the
//! staged record (`a{sv}` with nested dicts). Prints ns per decode and, for
//! a set of damaged records, which decoder still returns a record: glib and
//! the `gvariant` crate read non-normal data with default values, treeboot's
//! codec refuses it with a message naming the problem.
//!
//! cargo run --release --example gvariant-bench -- [COMMIT-OBJECT]
//! (without an argument, a commit object is made with Debian's ostree)

use std::time::Instant;

use gvariant::aligned_bytes::copy_to_align;
use gvariant::{gv, Marker, Structure};
use treeboot::formats::gvariant::{decode, Value};
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
    let Value::Tuple(kids) = decode("(a{sv}aya(say)sstayay)", d).ok()? else { return None };
    kids[0].lookup("version").and_then(|v| v.as_str()).map(String::from)
}

fn crate_version(d: &[u8]) -> Option<String> {
    let d = copy_to_align(d);
    let commit = gv!("(a{sv}aya(say)sstayay)").cast(d.as_ref());
    let (meta, ..) = commit.to_tuple();
    for e in meta {
        let (k, v) = e.to_tuple();
        if k.to_str() == "version" {
            return v.get(gv!("s")).map(|s| s.to_str().to_string());
        }
    }
    None
}

fn ours_staged(d: &[u8]) -> bool {
    Staged::parse(d).is_ok()
}

/// The `gvariant` crate's reading of a staged record: target's name and
/// the locked flag, the way a record is used.
fn crate_staged(d: &[u8]) -> bool {
    let d = copy_to_align(d);
    let dict = gv!("a{sv}").cast(d.as_ref());
    let mut name = None;
    for e in dict {
        let (k, v) = e.to_tuple();
        if k.to_str() == "target" {
            if let Some(t) = v.get(gv!("a{sv}")) {
                for f in t {
                    let (fk, fv) = f.to_tuple();
                    if fk.to_str() == "name" {
                        name = fv.get(gv!("s")).map(|s| s.to_str().to_string());
                    }
                }
            }
        }
    }
    name.is_some()
}

fn main() {
    let commit = commit_object();
    let staged = staged_record();
    assert_eq!(ours_version(&commit), crate_version(&commit));
    let n = 200_000;
    println!("{:<34} {:>12} {:>12}", "decode", "treeboot ns", "gvariant ns");
    println!("{:<34} {:>12.0} {:>12.0}", "commit object, version", per_op(n, || ours_version(&commit).is_some()), per_op(n, || crate_version(&commit).is_some()));
    println!("{:<34} {:>12.0} {:>12.0}", "staged record (a{sv})", per_op(n, || ours_staged(&staged)), per_op(n, || crate_staged(&staged)));
    // Damaged records: every single-byte change, and every truncation.
    let (mut both, mut only_ours, mut only_crate, mut neither) = (0, 0, 0, 0);
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
        match (ours_staged(d), crate_staged(d)) {
            (true, true) => both += 1,
            (true, false) => only_ours += 1,
            (false, true) => only_crate += 1,
            (false, false) => neither += 1,
        }
    }
    println!("damaged staged records: {} cases; a record with a target name read by both {both}, only treeboot {only_ours}, only gvariant {only_crate}, neither {neither}", cases.len());
    let _ = Value::Bool(true);
}
