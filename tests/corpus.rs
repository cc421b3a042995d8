//! The bad-input corpus (tests/data/bad-inputs): each malformed input gets
//! a clear error naming the problem, or its documented handling, and never
//! changes anything on disk it should not.

mod common;
use common::*;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use treeboot::formats::gvariant::Value;

fn corpus(dir: &str, ext: &str) -> Vec<(String, PathBuf, String)> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad-inputs").join(dir);
    let mut v = Vec::new();
    for e in std::fs::read_dir(&d).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) == Some(ext) {
            let expect = std::fs::read_to_string(p.with_extension("expect")).unwrap().trim_end().to_string();
            v.push((p.file_stem().unwrap().to_string_lossy().into_owned(), p, expect));
        }
    }
    v.sort();
    assert!(!v.is_empty(), "no cases in {dir}");
    v
}

fn base(s: &Scratch) -> PathBuf {
    let root = sysroot_with_commits(s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    run(tb(&root).args(["deploy", "testos/v2"]));
    root
}

/// (expected error substring) or Err(ok text).
fn expect_error(expect: &str) -> Result<&str, &str> {
    match expect.strip_prefix("error: ") {
        Some(e) => Ok(e),
        None => Err(expect.strip_prefix("ok: ").unwrap_or_else(|| panic!("bad .expect: {expect}"))),
    }
}

#[test]
fn bad_input_corpus() {
    let s = Scratch::new("corpus");
    let b = base(&s);
    let mut count = 0;
    let mut n = 0;
    let mut fresh = |tag: &str| {
        n += 1;
        let r = s.join(&format!("{tag}-{n}"));
        copy_sysroot(&b, &r);
        r
    };

    // Origin files (of deployment 1).
    for (name, path, expect) in corpus("origin", "origin") {
        let root = fresh("origin");
        let origin = root.join(status_json(&root)["deployments"][1]["origin_path"].as_str().unwrap());
        let data = std::fs::read(&path).unwrap();
        std::fs::write(&origin, &data).unwrap();
        let before = snapshot(&root);
        match expect_error(&expect) {
            Ok(e) => {
                for args in [&["status"][..], &["deploy", "testos/v3"][..], &["pin", "1"][..]] {
                    let err = run_fail(tb(&root).args(args));
                    assert!(err.contains(e) && err.contains(".origin"), "origin/{name}: {args:?}: expected {e:?} naming the file in:\n{err}");
                }
                assert_unchanged(&format!("origin/{name}"), &before, &root);
            }
            Err(_) => {
                // Read as libostree reads it, and pinned as `ostree admin
                // pin` writes it (GKeyFile's output), on a copy.
                let theirs = fresh("origin-ostree");
                let their_origin = theirs.join(origin.strip_prefix(&root).unwrap());
                std::fs::write(&their_origin, &data).unwrap();
                run(tb(&root).arg("status"));
                run(ostree_admin(&theirs).arg("status"));
                run(tb(&root).args(["pin", "1"]));
                run(ostree_admin(&theirs).args(["pin", "1"]));
                let (ours, glib) = (std::fs::read_to_string(&origin).unwrap(), std::fs::read_to_string(&their_origin).unwrap());
                assert_eq!(ours, glib, "origin/{name}: pin wrote another file than ostree's");
                assert_eq!(status_json(&root)["deployments"][1]["pinned"], true, "origin/{name}");
            }
        }
        count += 1;
    }

    // BLS entries (the default one).
    for (name, path, expect) in corpus("bls", "conf") {
        let root = fresh("bls");
        let st = status_json(&root);
        let bv = st["bootversion"].to_string();
        let csum = st["deployments"][0]["bootcsum"].as_str().unwrap().to_string();
        let bytes = std::fs::read(&path).unwrap();
        // (Invalid UTF-8 in a case becomes U+FFFD here: still junk to a parser.)
        let text = String::from_utf8_lossy(&bytes).replace("@BV@", &bv).replace("@CSUM@", &csum);
        std::fs::write(root.join("boot/loader/entries/ostree-2.conf"), &text).unwrap();
        let before = snapshot(&root);
        let e = expect_error(&expect).expect("BLS cases are errors");
        for args in [&["status"][..], &["deploy", "testos/v3"][..], &["kargs", "--append", "x=1"][..]] {
            let err = run_fail(tb(&root).args(args));
            assert!(err.contains(e) && err.contains("ostree-2.conf"), "bls/{name}: {args:?}: expected {e:?} and the file in:\n{err}");
        }
        let v = Command::new(treeboot_bin()).arg("--sysroot").arg(&root).arg("verify").output().unwrap();
        assert!(!v.status.success(), "bls/{name}: verify passed");
        assert_unchanged(&format!("bls/{name}"), &before, &root);
        count += 1;
    }

    // Kernel arguments.
    for (name, path, expect) in corpus("kargs", "args") {
        let root = fresh("kargs");
        let args: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(String::from).collect();
        let before = snapshot(&root);
        match expect_error(&expect) {
            Ok(e) => {
                let err = run_fail(tb(&root).arg("kargs").args(&args));
                assert!(err.contains(e), "kargs/{name}: expected {e:?} in:\n{err}");
                assert_unchanged(&format!("kargs/{name}"), &before, &root);
            }
            Err(ok) => {
                run(tb(&root).arg("kargs").args(&args));
                let k = run(tb(&root).arg("kargs"));
                assert!(k.split_whitespace().any(|a| a == ok) || k.contains(ok), "kargs/{name}: {ok:?} not in {k}");
            }
        }
        count += 1;
    }

    // /etc trees, then a deploy that merges them.
    for (name, path, expect) in corpus("etc", "sh") {
        let root = fresh("etc");
        let etc = deployment_dir(&root, 0).join("etc");
        run(Command::new("bash").arg(&path).env("ETC", &etc));
        let before = snapshot(&root);
        match expect_error(&expect) {
            Ok(e) => {
                let out = tb(&root).args(["deploy", "testos/v3"]).output().unwrap();
                assert_eq!(out.status.code(), Some(4), "etc/{name}: a conflict exits 4");
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.contains(e), "etc/{name}: expected {e:?} in:\n{err}");
                assert_unchanged(&format!("etc/{name}"), &before, &root);
            }
            Err(ok) => {
                let out = tb(&root).args(["deploy", "testos/v3"]).output().unwrap();
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "etc/{name}: {err}");
                let new_etc = deployment_dir(&root, 0).join("etc");
                let unescaped = ok.replace("\\n", "\n");
                let mut name_bytes = unescaped.clone().into_bytes();
                if let Some(i) = unescaped.find("\\xff") {
                    name_bytes = [&unescaped.as_bytes()[..i], &[0xff], &unescaped.as_bytes()[i + 4..]].concat();
                }
                let p = new_etc.join(std::ffi::OsStr::from_bytes(&name_bytes));
                assert!(err.contains(ok) || std::fs::symlink_metadata(&p).is_ok(), "etc/{name}: neither the message {ok:?} nor {} (stderr: {err})", p.display());
                run(tb(&root).arg("verify"));
            }
        }
        count += 1;
    }

    // Staged records and prepare-root.conf: in booted namespaces.
    for (name, path, expect) in corpus("staged", "case") {
        let root = fresh("staged");
        let bytes = staged_bytes(&std::fs::read_to_string(&path).unwrap());
        let f = s.join(&format!("staged-{name}"));
        std::fs::write(&f, &bytes).unwrap();
        let before = snapshot(&root);
        let e = expect_error(&expect).expect("staged cases are errors");
        let (ok, out, err) = in_booted_namespace(&root, 0, &format!("mkdir -p /run/ostree\ncp {} /run/ostree/staged-deployment\nset +e\n$TB --sysroot $S finalize-staged\necho \"rc=$?\"\n", f.display()));
        assert!(ok && out.contains("rc=1"), "staged/{name}: {out} {err}");
        assert!(err.contains("/run/ostree/staged-deployment") && err.contains(e), "staged/{name}: expected {e:?} in {err}");
        let stamp = root.join("boot/ostree/finalize-failure.stamp");
        assert!(std::fs::read_to_string(&stamp).unwrap().contains(e), "staged/{name}: stamp");
        std::fs::remove_file(&stamp).unwrap();
        assert_unchanged(&format!("staged/{name}"), &before, &root);
        count += 1;
    }
    for (name, path, expect) in corpus("prepare-root", "conf") {
        let root = fresh("prc");
        let dep = deployment_dir(&root, 0);
        write(&dep.join("etc/ostree/prepare-root.conf"), &std::fs::read_to_string(&path).unwrap());
        let entry = std::fs::read_to_string(root.join("boot/loader/entries/ostree-2.conf")).unwrap();
        let cmd = s.join(&format!("cmdline-{name}"));
        std::fs::write(&cmd, entry.lines().find_map(|l| l.strip_prefix("options ")).unwrap()).unwrap();
        let pr = Path::new(treeboot_bin()).with_file_name("treeboot-prepare-root");
        let script = format!("mount -t tmpfs tmpfs /run\nmkdir -p {m}\nmount --bind {r} {m}\nset +e\n{pr} --no-bind-var --cmdline {c} {m}\necho \"rc=$?\"\ngrep -c ' {m}' /proc/self/mountinfo | sed 's/^/mounts=/'\n", m = s.join(&format!("mnt-{name}")).display(), r = root.display(), pr = pr.display(), c = cmd.display());
        let o = Command::new("unshare").args(["-m", "--propagation", "private", "bash", "-c", &script]).output().unwrap();
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        match expect_error(&expect) {
            Ok(e) => {
                assert!(out.contains("rc=1") && err.contains(e), "prepare-root/{name}: expected {e:?}: {out} {err}");
                assert!(out.contains("mounts=1"), "prepare-root/{name}: mounts left behind: {out}");
            }
            Err(ok) => assert!(out.contains("rc=0") && err.contains(ok), "prepare-root/{name}: {out} {err}"),
        }
        count += 1;
    }
    println!("bad-input corpus: {count} inputs, each with its expected error or handling");
    assert!(count >= 40);
}

/// A staged record from a case description: `raw-empty`, `raw-junk`,
/// `truncate`, or lines `KEY TYPE VALUE` (types s, b, t, target NAME OS CSUM).
fn staged_bytes(case: &str) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut truncate = false;
    for line in case.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["raw-empty"] => return vec![],
            ["raw-junk"] => return b"\x13\x37 this is not a gvariant \xff\xfe".to_vec(),
            ["truncate"] => truncate = true,
            [k, "s", v] => entries.push((k.to_string(), Value::string(*v))),
            [k, "b", v] => entries.push((k.to_string(), Value::Bool(*v == "true"))),
            [k, "t", v] => entries.push((k.to_string(), Value::U64(v.parse().unwrap()))),
            [k, "target", name, os, csum] => entries.push((
                k.to_string(),
                Value::vardict(vec![("name", Value::string(*name)), ("osname", Value::string(*os)), ("bootcsum", Value::string(*csum))]),
            )),
            _ => panic!("bad staged case line {line:?}"),
        }
    }
    let v = Value::vardict(entries.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()).encode();
    if truncate {
        v[..v.len() / 2].to_vec()
    } else {
        v
    }
}
