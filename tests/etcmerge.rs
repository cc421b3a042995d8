//! The /etc three-way merge on real trees: every rule of the semantics.

mod common;
use common::Scratch;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cap_std_ext::cap_std::{ambient_authority, fs::Dir};
use treeboot::etcmerge::{self, Action};

struct Trees {
    _s: Scratch,
    old: PathBuf,
    cur: PathBuf,
    new: PathBuf,
    out: PathBuf,
}

fn put(p: &Path, content: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// old defaults == current == new defaults to start with.
fn trees(files: &[(&str, &str)]) -> Trees {
    let s = Scratch::new("etc");
    let (old, cur, new, out) = (s.join("old"), s.join("cur"), s.join("new"), s.join("deploy"));
    for d in [&old, &cur, &new, &out] {
        std::fs::create_dir_all(d).unwrap();
    }
    for (f, c) in files {
        for d in [&old, &cur, &new] {
            put(&d.join(f), c);
        }
    }
    Trees { _s: s, old, cur, new, out }
}

fn dir(p: &Path) -> Dir {
    Dir::open_ambient_dir(p, ambient_authority()).unwrap()
}

impl Trees {
    fn plan(&self) -> etcmerge::Plan {
        etcmerge::plan(dir(&self.old), dir(&self.cur), dir(&self.new)).unwrap()
    }
    /// plan + copy new defaults + apply; returns the path of the new etc.
    /// Also checks that the reduced copy deploy uses (`copy_defaults_for`,
    /// which leaves out what the plan replaces) gives the very same tree.
    fn merge(&self) -> PathBuf {
        let plan = self.plan();
        assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
        etcmerge::copy_tree(dir(&self.new), dir(&self.out), "etc").unwrap();
        etcmerge::apply(&plan, dir(&self.cur), dir(&self.out.join("etc"))).unwrap();
        let reduced = self.out.join("reduced");
        std::fs::create_dir_all(&reduced).unwrap();
        etcmerge::copy_defaults_for(&plan, dir(&self.new), dir(&reduced), "etc").unwrap();
        etcmerge::apply(&plan, dir(&self.cur), dir(&reduced.join("etc"))).unwrap();
        let (a, b) = (common::snapshot(&self.out.join("etc")), common::snapshot(&reduced.join("etc")));
        assert_eq!(a, b, "copy_defaults_for + apply differs from a full copy + apply");
        self.out.join("etc")
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn modified_file_kept_and_new_default_ignored() {
    let t = trees(&[("a.conf", "default\n"), ("b.conf", "b\n")]);
    put(&t.cur.join("a.conf"), "local edit\n");
    put(&t.new.join("a.conf"), "new default\n");
    put(&t.new.join("b.conf"), "new b default\n");
    let etc = t.merge();
    assert_eq!(read(&etc.join("a.conf")), "local edit\n");
    // Untouched by the admin: the new default appears.
    assert_eq!(read(&etc.join("b.conf")), "new b default\n");
}

#[test]
fn removed_file_stays_removed_even_if_default_changed() {
    let t = trees(&[("gone.conf", "x\n")]);
    std::fs::remove_file(t.cur.join("gone.conf")).unwrap();
    put(&t.new.join("gone.conf"), "changed default\n");
    let etc = t.merge();
    assert!(!etc.join("gone.conf").exists());
}

#[test]
fn new_default_file_appears() {
    let t = trees(&[("a", "1\n")]);
    put(&t.new.join("brand/new.conf"), "new\n");
    let etc = t.merge();
    assert_eq!(read(&etc.join("brand/new.conf")), "new\n");
}

#[test]
fn added_directory_chain_keeps_unusual_modes_and_owners() {
    let t = trees(&[("a", "1\n")]);
    let d = t.cur.join("app/secrets/keys");
    put(&d.join("k"), "key\n");
    chmod(&t.cur.join("app"), 0o750);
    chmod(&t.cur.join("app/secrets"), 0o700);
    chmod(&d, 0o711);
    chmod(&d.join("k"), 0o600);
    std::os::unix::fs::chown(t.cur.join("app"), Some(0), Some(4)).unwrap();
    std::os::unix::fs::chown(d.join("k"), Some(1), Some(2)).unwrap();
    let etc = t.merge();
    let m = |p: &str| std::fs::symlink_metadata(etc.join(p)).unwrap();
    assert_eq!(m("app").mode() & 0o7777, 0o750);
    assert_eq!(m("app").gid(), 4);
    assert_eq!(m("app/secrets").mode() & 0o7777, 0o700);
    assert_eq!(m("app/secrets/keys").mode() & 0o7777, 0o711);
    assert_eq!(m("app/secrets/keys/k").mode() & 0o7777, 0o600);
    assert_eq!((m("app/secrets/keys/k").uid(), m("app/secrets/keys/k").gid()), (1, 2));
    assert_eq!(read(&etc.join("app/secrets/keys/k")), "key\n");
}

#[test]
fn missing_parents_of_a_modified_file_are_created_like_current() {
    // The new defaults dropped the directory; the admin modified a file in it.
    let t = trees(&[("svc/conf.d/x.conf", "default\n"), ("svc/other.conf", "o\n")]);
    for d in [&t.old, &t.cur] {
        chmod(&d.join("svc"), 0o751);
    }
    put(&t.cur.join("svc/conf.d/x.conf"), "mine\n");
    std::fs::remove_dir_all(t.new.join("svc")).unwrap();
    let plan = t.plan();
    assert!(plan.actions.contains(&Action::Mkdir { path: "svc".into() }), "{:?}", plan.actions);
    let etc = t.merge();
    assert_eq!(read(&etc.join("svc/conf.d/x.conf")), "mine\n");
    assert_eq!(std::fs::metadata(etc.join("svc")).unwrap().mode() & 0o7777, 0o751);
    // Only what the admin changed comes back, not the rest of the dropped directory.
    assert!(!etc.join("svc/other.conf").exists());
}

fn setfattr(p: &Path, name: &str, value: &str) {
    let ok = std::process::Command::new("setfattr").args(["-n", name, "-v", value]).arg(p).status();
    if !ok.map(|s| s.success()).unwrap_or(false) {
        // setfattr (package attr) is installed by hack/install-deps; a file
        // system without user xattrs cannot run these tests.
        panic!("setfattr failed on {}: install `attr` and use a file system with user xattrs", p.display());
    }
}

fn getfattr(p: &Path, name: &str) -> String {
    let out = std::process::Command::new("getfattr").args(["--only-values", "-n", name]).arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_directory_whose_mode_or_owner_changed_is_a_modification() {
    let t = trees(&[("ssh/sshd_config", "c\n"), ("ssh/moduli", "m\n"), ("cron.d/job", "j\n")]);
    chmod(&t.cur.join("ssh"), 0o700);
    std::os::unix::fs::chown(t.cur.join("cron.d"), Some(0), Some(9)).unwrap();
    put(&t.new.join("ssh/sshd_config"), "new default\n");
    let d = etcmerge::diff(dir(&t.old), dir(&t.cur)).unwrap();
    let how = |p: &str| d.changes.iter().find(|c| c.path == Path::new(p)).map(|c| c.how.clone());
    assert_eq!(how("ssh"), Some(vec!["mode"]));
    assert_eq!(how("cron.d"), Some(vec!["owner"]));
    assert_eq!(how("ssh/sshd_config"), None, "{:?}", d.changes);
    let plan = t.plan();
    assert!(plan.actions.contains(&Action::SetAttrs { path: "ssh".into() }), "{:?}", plan.actions);
    let etc = t.merge();
    // The tightened directory keeps its mode; its untouched files follow the new defaults.
    assert_eq!(std::fs::metadata(etc.join("ssh")).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(read(&etc.join("ssh/sshd_config")), "new default\n");
    assert_eq!(std::fs::metadata(etc.join("cron.d")).unwrap().gid(), 9);
}

#[test]
fn a_changed_directory_the_new_defaults_drop_is_kept_whole() {
    let t = trees(&[("app/a.conf", "a\n"), ("app/gone.conf", "g\n"), ("app/sub/b.conf", "b\n"), ("keep", "k\n")]);
    chmod(&t.cur.join("app"), 0o750);
    put(&t.cur.join("app/sub/b.conf"), "local b\n");
    std::fs::remove_file(t.cur.join("app/gone.conf")).unwrap();
    std::fs::remove_dir_all(t.new.join("app")).unwrap();
    let plan = t.plan();
    assert_eq!(
        plan.actions,
        vec![Action::Copy { path: "app".into(), ftype: etcmerge::EntryType::Directory }],
        "one copy of the whole directory, nothing under it"
    );
    assert_eq!((plan.summary.modified, plan.summary.removed), (2, 1));
    let etc = t.merge();
    assert_eq!(std::fs::metadata(etc.join("app")).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(read(&etc.join("app/a.conf")), "a\n");
    assert_eq!(read(&etc.join("app/sub/b.conf")), "local b\n");
    assert!(!etc.join("app/gone.conf").exists());
}

#[test]
fn a_changed_directory_where_the_new_defaults_have_a_file_replaces_it() {
    let t = trees(&[("d/x", "x\n")]);
    chmod(&t.cur.join("d"), 0o700);
    std::fs::remove_dir_all(t.new.join("d")).unwrap();
    put(&t.new.join("d"), "now a file\n");
    let etc = t.merge();
    assert!(etc.join("d").is_dir());
    assert_eq!(read(&etc.join("d/x")), "x\n");
}

#[test]
fn owner_only_and_mode_only_changes() {
    let t = trees(&[("owned", "same\n"), ("moded", "same\n")]);
    std::os::unix::fs::chown(t.cur.join("owned"), Some(7), Some(8)).unwrap();
    chmod(&t.cur.join("moded"), 0o600);
    put(&t.new.join("owned"), "new content\n");
    let d = etcmerge::diff(dir(&t.old), dir(&t.cur)).unwrap();
    let how = |p: &str| d.changes.iter().find(|c| c.path == Path::new(p)).unwrap().how.clone();
    assert_eq!(how("owned"), vec!["owner"]);
    assert_eq!(how("moded"), vec!["mode"]);
    let etc = t.merge();
    let m = std::fs::metadata(etc.join("owned")).unwrap();
    assert_eq!((m.uid(), m.gid()), (7, 8));
    // Local wins entirely: the admin's file, not the new default content.
    assert_eq!(read(&etc.join("owned")), "same\n");
    assert_eq!(std::fs::metadata(etc.join("moded")).unwrap().mode() & 0o7777, 0o600);
}

#[test]
fn an_xattr_only_change_takes_the_new_default() {
    // As libostree: labels differ between /usr/etc and /etc on every
    // SELinux system, so xattrs alone do not make a file modified.
    let t = trees(&[("x", "1\n"), ("y", "1\n")]);
    setfattr(&t.cur.join("x"), "user.treeboot", "local");
    setfattr(&t.cur.join("y"), "user.treeboot", "local");
    put(&t.cur.join("y"), "2\n");
    put(&t.new.join("x"), "new default\n");
    let d = etcmerge::diff(dir(&t.old), dir(&t.cur)).unwrap();
    let paths: Vec<_> = d.changes.iter().map(|c| (c.path.clone(), c.how.clone())).collect();
    assert_eq!(paths, vec![(PathBuf::from("y"), vec!["content"])]);
    let etc = t.merge();
    assert_eq!(read(&etc.join("x")), "new default\n");
    assert_eq!(getfattr(&etc.join("x"), "user.treeboot"), "");
    // A file modified otherwise is copied with its xattrs.
    assert_eq!(read(&etc.join("y")), "2\n");
    assert_eq!(getfattr(&etc.join("y"), "user.treeboot"), "local");
}

#[test]
fn symlinks_retargeted_dangling_and_type_changes() {
    let t = trees(&[("file2link", "was a file\n"), ("link2file-target", "t\n")]);
    for d in [&t.old, &t.cur, &t.new] {
        std::os::unix::fs::symlink("target-a", d.join("retarget")).unwrap();
        std::os::unix::fs::symlink("link2file-target", d.join("link2file")).unwrap();
    }
    std::fs::remove_file(t.cur.join("retarget")).unwrap();
    std::os::unix::fs::symlink("target-b", t.cur.join("retarget")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", t.cur.join("dangling")).unwrap();
    std::fs::remove_file(t.cur.join("file2link")).unwrap();
    std::os::unix::fs::symlink("somewhere", t.cur.join("file2link")).unwrap();
    std::fs::remove_file(t.cur.join("link2file")).unwrap();
    put(&t.cur.join("link2file"), "now a file\n");
    let d = etcmerge::diff(dir(&t.old), dir(&t.cur)).unwrap();
    let how = |p: &str| d.changes.iter().find(|c| c.path == Path::new(p)).unwrap().how.clone();
    assert_eq!(how("retarget"), vec!["target"]);
    assert_eq!(how("file2link"), vec!["type"]);
    assert_eq!(how("link2file"), vec!["type"]);
    let etc = t.merge();
    assert_eq!(std::fs::read_link(etc.join("retarget")).unwrap(), Path::new("target-b"));
    assert_eq!(std::fs::read_link(etc.join("dangling")).unwrap(), Path::new("/nonexistent/dangling"));
    assert_eq!(std::fs::read_link(etc.join("file2link")).unwrap(), Path::new("somewhere"));
    assert_eq!(read(&etc.join("link2file")), "now a file\n");
    assert!(!std::fs::symlink_metadata(etc.join("link2file")).unwrap().file_type().is_symlink());
}

#[test]
fn fifo_is_skipped_with_a_message() {
    let t = trees(&[("a", "1\n")]);
    let fifo = t.cur.join("initctl");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let plan = t.plan();
    assert!(matches!(&plan.actions[..], [Action::Skip { path, reason }] if path == Path::new("initctl") && reason.contains("fifo")), "{:?}", plan.actions);
    let etc = t.merge();
    assert!(std::fs::symlink_metadata(etc.join("initctl")).is_err());
}

#[test]
fn file_where_new_defaults_have_a_directory_is_a_conflict() {
    let t = trees(&[("a", "1\n")]);
    put(&t.cur.join("sudoers.d"), "local file\n");
    put(&t.new.join("sudoers.d/README"), "now a directory\n");
    let plan = t.plan();
    assert_eq!(plan.conflicts.len(), 1);
    assert_eq!(plan.conflicts[0].path, Path::new("sudoers.d"));
    let msg = plan.conflict_message().unwrap();
    assert!(msg.contains("/etc/sudoers.d") && msg.contains("directory"), "{msg}");
    // apply refuses the plan.
    etcmerge::copy_tree(dir(&t.new), dir(&t.out), "etc").unwrap();
    let err = etcmerge::apply(&plan, dir(&t.cur), dir(&t.out.join("etc"))).unwrap_err();
    assert!(format!("{err:#}").contains("sudoers.d"));
    // Nothing of the admin's file was written.
    assert!(t.out.join("etc/sudoers.d").is_dir());
}

#[test]
fn two_directories_need_nothing() {
    let t = trees(&[("a", "1\n")]);
    put(&t.cur.join("added.d/mine"), "m\n");
    put(&t.new.join("added.d/theirs"), "t\n");
    let plan = t.plan();
    assert!(plan.conflicts.is_empty());
    assert!(!plan.actions.iter().any(|a| matches!(a, Action::Copy { .. })), "{:?}", plan.actions);
}

#[test]
fn plan_writes_nothing() {
    let t = trees(&[("a", "1\n"), ("b", "2\n")]);
    put(&t.cur.join("a"), "changed\n");
    std::fs::remove_file(t.cur.join("b")).unwrap();
    put(&t.cur.join("new/x"), "x\n");
    let before: Vec<_> = [&t.old, &t.cur, &t.new].iter().map(|p| common::snapshot(p)).collect();
    let plan = t.plan();
    assert_eq!((plan.summary.modified, plan.summary.removed, plan.summary.added), (1, 1, 1));
    let after: Vec<_> = [&t.old, &t.cur, &t.new].iter().map(|p| common::snapshot(p)).collect();
    assert_eq!(before, after);
    assert!(std::fs::read_dir(&t.out).unwrap().next().is_none(), "plan wrote into the output");
    // The plan serializes for `--json`.
    let j = serde_json::to_value(&plan).unwrap();
    assert_eq!(j["summary"]["modified"], 1);
}

#[test]
fn symlinks_pointing_outside_are_copied_not_followed() {
    let t = trees(&[("a", "1\n")]);
    std::os::unix::fs::symlink("/", t.cur.join("root")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", t.cur.join("up")).unwrap();
    // A symlinked *directory* in current whose target holds files: its
    // target must not be walked or copied.
    std::os::unix::fs::symlink("/usr/share", t.cur.join("share")).unwrap();
    let etc = t.merge();
    assert_eq!(std::fs::read_link(etc.join("root")).unwrap(), Path::new("/"));
    assert_eq!(std::fs::read_link(etc.join("up")).unwrap(), Path::new("../../../../../../.."));
    assert!(std::fs::symlink_metadata(etc.join("share")).unwrap().file_type().is_symlink());
    // A symlink in the *new etc* where a file will be copied must not be
    // followed either: make the defaults contain a link named like an added path.
    let t2 = trees(&[("a", "1\n")]);
    let victim = t2.out.join("victim");
    put(&victim, "do not touch\n");
    put(&t2.cur.join("via/file"), "x\n");
    std::os::unix::fs::symlink(&t2.out, t2.new.join("via")).unwrap();
    let plan = t2.plan();
    // A local directory where the new defaults have a symlink: the link is
    // replaced by the directory, never written through.
    etcmerge::copy_tree(dir(&t2.new), dir(&t2.out), "etc").unwrap();
    let _ = etcmerge::apply(&plan, dir(&t2.cur), dir(&t2.out.join("etc")));
    assert_eq!(read(&victim), "do not touch\n");
    assert!(!t2.out.join("file").exists());
}

#[test]
fn merge_never_modifies_inputs() {
    let t = trees(&[("a", "1\n"), ("d/b", "2\n")]);
    put(&t.cur.join("a"), "x\n");
    std::fs::remove_file(t.cur.join("d/b")).unwrap();
    let before: Vec<_> = [&t.old, &t.cur, &t.new].iter().map(|p| common::snapshot(p)).collect();
    t.merge();
    let after: Vec<_> = [&t.old, &t.cur, &t.new].iter().map(|p| common::snapshot(p)).collect();
    assert_eq!(before, after);
}
