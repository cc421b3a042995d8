//! What the command line shows a user: help and versions of every binary,
//! the exit-code table (docs/exit-codes.md) from `treeboot` and from
//! `treeboot-writer` alike, the root check, `--json` keeping stdout for the
//! document.

mod common;
use common::*;
use std::process::{Command, Output};

fn bin(name: &str) -> &'static str {
    match name {
        "treeboot" => env!("CARGO_BIN_EXE_treeboot"),
        "treeboot-writer" => env!("CARGO_BIN_EXE_treeboot-writer"),
        "treeboot-generator" => env!("CARGO_BIN_EXE_treeboot-generator"),
        "treeboot-prepare-root" => env!("CARGO_BIN_EXE_treeboot-prepare-root"),
        "treeboot-remount" => env!("CARGO_BIN_EXE_treeboot-remount"),
        _ => unreachable!("{name}"),
    }
}

fn out(cmd: &mut Command) -> (i32, String, String) {
    let o: Output = cmd.output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Every binary answers --help and --version on stdout with status 0, and
/// the generator never takes an option for its output directory.
#[test]
fn every_binary_has_help_and_version() {
    let s = Scratch::new("cli-help");
    for b in ["treeboot", "treeboot-writer", "treeboot-generator", "treeboot-prepare-root", "treeboot-remount"] {
        let (code, stdout, stderr) = out(Command::new(bin(b)).arg("--help").current_dir(&s.path));
        assert_eq!(code, 0, "{b} --help: {stderr}");
        assert!(stdout.to_lowercase().contains("usage"), "{b} --help: {stdout}");
        let (code, stdout, stderr) = out(Command::new(bin(b)).arg("--version").current_dir(&s.path));
        assert_eq!(code, 0, "{b} --version: {stderr}");
        // The writer takes treeboot's command line, and names itself so.
        let name = if b == "treeboot-writer" { "treeboot" } else { b };
        assert!(stdout.starts_with(&format!("{name} {}", env!("CARGO_PKG_VERSION"))), "{b} --version: {stdout}");
    }
    let (code, _, stderr) = out(Command::new(bin("treeboot-generator")).arg("--bogus").current_dir(&s.path));
    assert_eq!(code, 2, "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&s.path).unwrap().collect();
    assert!(left.is_empty(), "the generator made {left:?}");
}

/// The table of docs/exit-codes.md, from the front binary and the writer.
#[test]
fn exit_codes_are_the_same_everywhere() {
    let s = Scratch::new("cli-exit");
    let root = sysroot_with_commits(&s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    let before = snapshot(&root);
    for b in ["treeboot", "treeboot-writer"] {
        let with = |args: &[&str]| out(Command::new(bin(b)).arg("--sysroot").arg(&root).args(args));
        let (code, _, e) = with(&["deploy", "--no-such-option", "testos/v2"]);
        assert_eq!(code, 2, "{b}: usage: {e}");
        let (code, _, e) = with(&["deploy", "testos/nosuch"]);
        assert_eq!(code, 1, "{b}: failure: {e}");
        assert!(e.contains("testos/nosuch"), "{e}");
        let (code, _, e) = with(&["stage", "testos/v2"]);
        assert_eq!(code, 3, "{b}: not booted: {e}");
    }
    assert_unchanged("refused commands", &before, &root);
    // 4 (an /etc conflict) and 5 (a full /boot) are checked where those
    // are made: tests/corpus.rs and tests/reliability.rs.
}

/// A writing command run by another user is refused up front, exit 6,
/// before it touches the lock; reading commands still work.
#[test]
fn writing_commands_need_root() {
    let s = Scratch::new("cli-root");
    let root = sysroot_with_commits(&s);
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    // Readable by anyone, as a real sysroot is.
    run(Command::new("chmod").arg("755").arg(&s.path));
    let before = snapshot(&root);
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin("treeboot"), "--sysroot"]).arg(&root).args(args);
        out(&mut c)
    };
    for args in [&["deploy", "testos/v2"][..], &["cleanup"], &["pin", "0"], &["kargs", "--append", "quiet"]] {
        let (code, _, e) = as_nobody(args);
        assert_eq!(code, 6, "{args:?}: {e}");
        assert!(e.contains(&format!("treeboot {} changes the sysroot: it must be run as root", args[0])), "{e}");
    }
    let (code, stdout, e) = as_nobody(&["status"]);
    assert_eq!(code, 0, "status as another user: {e}");
    assert!(stdout.contains("1.0"), "{stdout}");
    assert_unchanged("refused as another user", &before, &root);
}

/// With --json, stdout is one JSON document; the sentences go to stderr.
#[test]
fn deploy_json_keeps_stdout_for_the_document() {
    let s = Scratch::new("cli-json");
    let root = sysroot_with_commits(&s);
    let o = Command::new(bin("treeboot")).arg("--sysroot").arg(&root).args(["deploy", "--json", "--karg", "root=LABEL=root", "testos/v1"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", String::from_utf8_lossy(&o.stdout)));
    assert_eq!(doc["stateroot"], "testos");
    assert_eq!(doc["version"], "1.0");
    assert_eq!(doc["serial"], 0);
    let events = String::from_utf8_lossy(&o.stderr);
    assert!(events.lines().any(|l| l.contains(r#""type":"progress""#) && l.contains(r#""phase":"checkout""#)), "progress went to stderr: {events}");
    assert!(!events.contains("Bootloader updated"), "no internal bookkeeping line: {events}");
    let err = run_fail(tb(&root).args(["deploy", "--lock-finalization", "testos/v2"]));
    assert!(err.contains("--lock-finalization applies to a staged deployment"), "{err}");
}

/// `make install` generates a man page for treeboot, each verb and each
/// early binary, with every option on it, and completions that know the
/// verbs.
#[test]
fn man_pages_and_completions_are_generated() {
    let s = Scratch::new("cli-docs");
    run(Command::new(env!("CARGO_BIN_EXE_treeboot-gendocs")).arg(&s.path));
    let man = s.path.join("man/man8");
    let page = |name: &str| std::fs::read_to_string(man.join(format!("{name}.8"))).unwrap_or_else(|e| panic!("{name}.8: {e}"));
    let verbs = [
        "init-fs", "os-init", "status", "deploy", "stage", "finalize-staged", "lock-finalization", "boot-complete", "verify",
        "set-default", "rollback", "undeploy", "pin", "cleanup", "kargs", "etc", "etc-diff", "diff",
    ];
    assert!(page("treeboot").contains(".TH treeboot 8"), "{}", page("treeboot"));
    for v in verbs {
        let p = page(&format!("treeboot-{v}"));
        assert!(p.contains(&format!(".TH treeboot-{v} 8")), "treeboot-{v}.8:\n{p}");
    }
    let deploy = page("treeboot-deploy");
    for opt in ["os", "origin\\-file", "karg\\-append", "not\\-as\\-default", "no\\-merge", "json", "quiet", "verbose", "sysroot", "stage"] {
        assert!(deploy.contains(&format!("\\-\\-{opt}")), "--{opt} is not on treeboot-deploy.8");
    }
    for early in ["treeboot-prepare-root", "treeboot-remount", "treeboot-generator"] {
        assert!(page(early).contains(&format!(".TH {early} 8")), "{early}.8");
    }
    for (rel, needle) in [
        ("bash-completion/completions/treeboot", "set-default"),
        ("zsh/vendor-completions/_treeboot", "set-default"),
        ("fish/vendor_completions.d/treeboot.fish", "set-default"),
    ] {
        let c = std::fs::read_to_string(s.path.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(c.contains(needle) && c.contains("karg-append"), "{rel}");
    }
}

/// `--quiet` keeps answers and drops the sentences of a writing command;
/// `status` answers what rpm-ostree's does (dates, subject, kernel, what
/// boots next) and `--verbose` adds the paths.
#[test]
fn quiet_verbose_and_the_status_a_person_reads() {
    let s = Scratch::new("cli-quiet");
    let root = sysroot_with_commits(&s);
    let out = run(tb(&root).args(["--quiet", "deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    assert_eq!(out, "", "a quiet deploy says nothing");
    let out = run(tb(&root).args(["deploy", "-v", "testos/v3"]));
    assert!(out.contains("Deployed testos "), "{out}");
    assert!(out.contains("Boot configuration: "), "--verbose adds the detail: {out}");
    let st = run(tb(&root).args(["-q", "status"]));
    assert!(st.contains("  0 testos ") && st.contains("(default)"), "status answers even when quiet: {st}");
    assert!(st.contains("    Version: 3.0 (2026-01-01 00:00:00 UTC)\n"), "{st}");
    assert!(st.contains("    Subject: 3.0\n") && st.contains("    Kernel: 6.1.0-test\n"), "{st}");
    assert!(!st.contains("Entry: "), "{st}");
    assert!(!st.contains("Update pending"), "nothing is booted, so nothing is pending: {st}");
    let v = run(tb(&root).args(["status", "--verbose"]));
    assert!(v.contains("    Entry: boot/loader.") && v.contains("    Origin file: ostree/deploy/testos/deploy/"), "{v}");
    assert!(run(tb(&root).args(["-q", "kargs"])).starts_with("root=LABEL=root"), "kargs answers even when quiet");
    let err = run_fail(tb(&root).args(["-q", "-v", "status"]));
    assert!(err.contains("cannot be used with"), "{err}");
}

/// Every `man:` page a unit's `Documentation=` names exists: generated
/// (`treeboot-gendocs`) or hand-written in man/ (the units, the config
/// files), and `make install` installs man/ (checked in the Makefile).
#[test]
fn every_documented_man_page_exists() {
    let s = Scratch::new("cli-man");
    run(Command::new(env!("CARGO_BIN_EXE_treeboot-gendocs")).arg(&s.path));
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut named = Vec::new();
    for e in std::fs::read_dir(src.join("systemd")).unwrap() {
        let p = e.unwrap().path();
        // Units; the drop-ins for ostree-boot's units (*.service.d) are not.
        if p.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(p).unwrap();
        for line in text.lines().filter(|l| l.starts_with("Documentation=")) {
            for w in line["Documentation=".len()..].split_whitespace().filter_map(|w| w.strip_prefix("man:")) {
                let (name, sect) = w.trim_end_matches(')').split_once('(').unwrap();
                named.push((name.to_string(), sect.to_string()));
            }
        }
    }
    assert!(named.iter().any(|(n, _)| n == "treeboot-finalize-staged.service"), "{named:?}");
    for (name, sect) in &named {
        let generated = s.path.join(format!("man/man{sect}/{name}.{sect}"));
        let written = src.join(format!("man/{name}.{sect}"));
        assert!(generated.exists() || written.exists(), "man:{name}({sect}) is named by a unit but there is no such page");
        if written.exists() {
            let page = std::fs::read_to_string(&written).unwrap();
            assert!(page.starts_with(".so ") || page.contains(&format!(".TH {}", name.to_uppercase())) || page.contains(&format!(".TH \"{}", name.to_uppercase())) || page.contains(&format!(".TH {name}")), "{name}.{sect} has no title");
        }
    }
    for page in ["treeboot-prepare-root.conf.5", "treeboot-repo-config.5"] {
        assert!(src.join("man").join(page).exists(), "man/{page}");
    }
    let makefile = std::fs::read_to_string(src.join("Makefile")).unwrap();
    assert!(makefile.contains("man/*.5") && makefile.contains("man/*.8"), "make install installs the hand-written pages");
}
