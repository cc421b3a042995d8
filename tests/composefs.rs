//! composefs for real, in private mount namespaces on this machine's
//! kernel (EROFS and overlayfs; no fs-verity here, so `verity` is checked
//! for its refusals only, and in the trixie guest for what it protects):
//! `treeboot deploy` writes `.ostree.cfs` with trixie's `mkcomposefs`,
//! treeboot-prepare-root mounts it over the repository's objects, and the
//! root it makes is the plain checkout, file for file.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A sysroot whose commit testos/v4 has what a composefs image must carry
/// over: an extended attribute, a setuid file of another owner, a
/// symlink, an empty file, a name with a space, and a file large enough
/// for several blocks.
fn sysroot(tag: &str) -> (Scratch, PathBuf, PathBuf) {
    let s = Scratch::new(tag);
    let root = sysroot_with_commits(&s);
    commit_tree(&s, &root.join("ostree/repo"), "testos/v4", "A", "4.0", "4.0", |t| {
        use std::os::unix::fs::PermissionsExt;
        let hello = t.join("usr/bin/hello");
        rustix::fs::setxattr(&hello, "user.treeboot-test", b"x=1 y", rustix::fs::XattrFlags::empty()).unwrap();
        let su = t.join("usr/bin/su-like");
        write(&su, "#!/bin/sh\n");
        // The owner first: chown clears the setuid bit.
        rustix::fs::chown(&su, Some(rustix::fs::Uid::from_raw(1234)), Some(rustix::fs::Gid::from_raw(5678))).unwrap();
        std::fs::set_permissions(&su, std::fs::Permissions::from_mode(0o4755)).unwrap();
        write(&t.join("usr/share/empty"), "");
        write(&t.join("usr/share/a name"), "spaced\n");
        write(&t.join("usr/share/big"), &"0123456789abcdef".repeat(4096));
        std::os::unix::fs::symlink("hello", t.join("usr/bin/hello-link")).unwrap();
    });
    let mkcfs = mkcomposefs(&s);
    (s, root, mkcfs)
}

fn deploy_with(root: &Path, mkcfs: &Path, extra: &[&str]) -> std::process::Output {
    tb(root).env("TREEBOOT_MKCOMPOSEFS", mkcfs).args(["deploy", "--karg", "root=LABEL=root"]).args(extra).arg("testos/v4").output().unwrap()
}

fn cmdline_of(s: &Scratch, root: &Path, extra: &str) -> PathBuf {
    let entry = std::fs::read_dir(root.join("boot/loader/entries")).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let opts = std::fs::read_to_string(entry).unwrap().lines().find_map(|l| l.strip_prefix("options ").map(String::from)).unwrap();
    let p = s.join("cmdline");
    std::fs::write(&p, format!("BOOT_IMAGE=/vmlinuz {opts} {extra}\n")).unwrap();
    p
}

/// [`initramfs_ns`] with $DEP, the deployment.
fn ns(s: &Scratch, root: &Path, dep: &Path, script: &str) -> (bool, String, String) {
    initramfs_ns(s, root, &[("DEP", dep)], script)
}

/// Every file under DIR/usr: path, type and mode, owner, size (not of
/// directories: that is the file system's), link target, content digest
/// and extended attributes, sorted (a shell snippet; the lines start with
/// TAG).
fn listing(tag: &str, dir: &str) -> String {
    format!(
        r#"(cd {dir} && find usr -printf '{tag} %p %M %U %G %l\n' | sort
 find usr ! -type d -printf '{tag} %p %s\n' | sort
 find usr -type f -print0 | sort -z | xargs -0 sha256sum | sed 's/^/{tag} /'
 getfattr -h -R -d -m - --absolute-names usr 2>/dev/null | grep -v '^$' | sed 's/^/{tag} /')"#
    )
}

fn tagged<'a>(out: &'a str, tag: &str) -> Vec<&'a str> {
    out.lines().filter_map(|l| l.strip_prefix(tag)).collect()
}

#[test]
fn composefs_root_is_the_checkout() {
    let (s, root, mkcfs) = sysroot("cfs");
    run(Command::new("ostree").arg(format!("--repo={}", root.join("ostree/repo").display())).args(["config", "set", "ex-integrity.composefs", "yes"]));
    let out = deploy_with(&root, &mkcfs, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dep = deployment_dir(&root, 0);
    let image = dep.join(".ostree.cfs");
    assert!(image.is_file(), "no image in {}", dep.display());
    assert!(!dep.join(".ostree.cfs.tmp").exists());
    // The kernel argument turns composefs on (the deployment's
    // prepare-root.conf does not).
    let cmdline = cmdline_of(&s, &root, "ostree.prepare-root.composefs=1");
    let (ok, out, err) = ns(&s, &root, &dep, &format!(
        r#""$PR" --no-bind-var --cmdline {} "$MNT"
echo "ROOT $(findmnt -no FSTYPE,SOURCE "$MNT")"
touch "$MNT/usr/x" 2>&1 | grep -q 'Read-only file system' && echo "usr: EROFS"
touch "$MNT/newfile" 2>&1 | grep -q 'Read-only file system' && echo "/: EROFS"
echo admin > "$MNT/etc/written" && echo "etc: writable"
test -d "$MNT/sysroot/ostree/deploy" && echo "sysroot: the physical root"
{}
{}
cp /run/ostree-booted {}/booted
"#,
        cmdline.display(),
        listing("CFS", "\"$MNT\""),
        listing("PLAIN", "\"$DEP\""),
        s.path.display()
    ));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("ROOT overlay composefs"), "{out}\n{err}");
    for want in ["usr: EROFS", "/: EROFS", "etc: writable", "sysroot: the physical root"] {
        assert!(out.contains(want), "{want}: {out}\n{err}");
    }
    // /etc is the deployment's own, writable, on the disk.
    assert_eq!(std::fs::read_to_string(dep.join("etc/written")).unwrap(), "admin\n");
    let (cfs, plain) = (tagged(&out, "CFS "), tagged(&out, "PLAIN "));
    assert!(plain.len() > 20 && plain.iter().any(|l| l.contains("user.treeboot-test")), "{out}");
    assert!(plain.iter().any(|l| l.starts_with("usr/bin/su-like -rwsr-xr-x 1234 5678")), "{out}");
    let only = |a: &[&str], b: &[&str]| a.iter().filter(|l| !b.contains(l)).map(|l| l.to_string()).collect::<Vec<_>>();
    assert_eq!(cfs, plain, "the composefs root differs from the checkout: only in composefs {:?}, only in the checkout {:?}", only(&cfs, &plain), only(&plain, &cfs));
    let b = treeboot::formats::runstate::Booted::parse(&std::fs::read(s.join("booted")).unwrap()).unwrap();
    assert!(b.composefs && !b.composefs_verity, "{b:?}");
    // status shows the image (not booted here).
    assert_eq!(status_json(&root)["deployments"][0]["composefs"], "image");
    assert!(run(tb(&root).arg("status")).contains("composefs: image"));
    // The image's own mount is gone: nothing but the root's mounts remain.
    assert!(!err.contains("undoing"), "{err}");
}

#[test]
fn enabled_values_and_the_kernel_argument() {
    let (s, root, mkcfs) = sysroot("cfsconf");
    // Nothing asks for composefs: no image.
    let out = deploy_with(&root, &mkcfs, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dep = deployment_dir(&root, 0);
    assert!(!dep.join(".ostree.cfs").exists(), "an image without being asked");
    let conf = dep.join("etc/ostree/prepare-root.conf");
    let boot = |conf_text: Option<&str>, karg: &str| {
        match conf_text {
            Some(t) => write(&conf, t),
            None => {
                let _ = std::fs::remove_file(&conf);
            }
        }
        let cmdline = cmdline_of(&s, &root, karg);
        ns(&s, &root, &dep, &format!(
            "set +e\n\"$PR\" --no-bind-var --cmdline {} \"$MNT\"\necho \"exit=$?\"\necho \"ROOT $(findmnt -no FSTYPE,SOURCE \"$MNT\")\"\ngrep -c \" $MNT\" /proc/self/mountinfo | sed 's/^/MOUNTS /'\n",
            cmdline.display()
        ))
    };
    // No image: `yes` refuses to boot, `maybe` boots the plain checkout.
    let (_, out, err) = boot(Some("[composefs]\nenabled=yes\n"), "");
    assert!(out.contains("exit=1") && err.contains("the deployment has no image") && err.contains(".ostree.cfs"), "{out}\n{err}");
    assert!(out.contains("MOUNTS 1\n"), "a failed composefs boot left mounts: {out}");
    let (_, out, err) = boot(Some("[composefs]\nenabled=maybe\n"), "");
    assert!(out.contains("exit=0") && !out.contains("composefs\n") && err.contains("booting without it"), "{out}\n{err}");
    // The kernel argument overrides the file both ways.
    let (_, out, _) = boot(Some("[composefs]\nenabled=yes\n"), "ostree.prepare-root.composefs=0");
    assert!(out.contains("exit=0"), "{out}");
    let (_, out, err) = boot(None, "ostree.prepare-root.composefs=yes");
    assert!(out.contains("exit=1") && err.contains("no image"), "{out}\n{err}");
    let (_, out, err) = boot(None, "ostree.prepare-root.composefs=sometimes");
    assert!(out.contains("exit=1") && err.contains("ostree.prepare-root.composefs=\"sometimes\""), "{out}\n{err}");
    // `signed` is refused by name (treeboot does not check signatures).
    let (_, out, err) = boot(Some("[composefs]\nenabled=signed\n"), "");
    assert!(out.contains("exit=1") && err.contains("signed"), "{out}\n{err}");

    // A deployment whose /etc asks for composefs gets an image at deploy
    // time (the merged /etc is read); `maybe` then mounts it.
    write(&dep.join("etc/ostree/prepare-root.conf"), "[composefs]\nenabled=maybe\n");
    let out = deploy_with(&root, &mkcfs, &["--retain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dep2 = deployment_dir(&root, 0);
    assert_ne!(dep2, dep);
    assert!(dep2.join(".ostree.cfs").is_file(), "the merged /etc asked for an image");
    let cmdline = cmdline_of(&s, &root, "");
    let (ok, out, err) = ns(&s, &root, &dep2, &format!("\"$PR\" --no-bind-var --cmdline {} \"$MNT\"\necho \"ROOT $(findmnt -no FSTYPE,SOURCE \"$MNT\")\"\n", cmdline.display()));
    assert!(ok && out.contains("ROOT overlay composefs"), "{out}\n{err}");

    // `verity` on a file system without fs-verity: the deploy refuses and
    // leaves nothing (this kernel has no fs-verity).
    write(&dep2.join("etc/ostree/prepare-root.conf"), "[composefs]\nenabled=verity\n");
    let before = snapshot(&root);
    let out = deploy_with(&root, &mkcfs, &["--retain"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("fs-verity") && err.contains("tune2fs -O verity"), "{err}");
    assert_unchanged("a refused composefs deploy", &before, &root);
    // Without mkcomposefs, a deployment that asks for composefs is refused.
    write(&dep2.join("etc/ostree/prepare-root.conf"), "[composefs]\nenabled=yes\n");
    let before = snapshot(&root);
    let out = deploy_with(&root, Path::new("/nonexistent/mkcomposefs"), &["--retain"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is not installed"), "{err}");
    assert_unchanged("a composefs deploy without mkcomposefs", &before, &root);
}

#[test]
fn bad_images_fail_clearly_and_leave_no_mount() {
    let (s, root, mkcfs) = sysroot("cfsbad");
    run(Command::new("ostree").arg(format!("--repo={}", root.join("ostree/repo").display())).args(["config", "set", "ex-integrity.composefs", "yes"]));
    let out = deploy_with(&root, &mkcfs, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dep = deployment_dir(&root, 0);
    let image = dep.join(".ostree.cfs");
    let good = std::fs::read(&image).unwrap();
    let cmdline = cmdline_of(&s, &root, "ostree.prepare-root.composefs=1");
    let objects = root.join("ostree/repo/objects");
    // (what, how to break it, how to mend it, what the error says)
    type Step<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Step, Step, &str)> = vec![
        ("truncated", Box::new(|| std::fs::write(&image, &good[..600]).unwrap()), Box::new(|| std::fs::write(&image, &good).unwrap()), "truncated"),
        ("not composefs", Box::new(|| std::fs::write(&image, vec![0x55u8; good.len()]).unwrap()), Box::new(|| std::fs::write(&image, &good).unwrap()), "not a composefs image"),
        (
            "corrupt superblock",
            Box::new(|| {
                let mut b = good.clone();
                b[1024..1028].copy_from_slice(&[0, 0, 0, 0]);
                std::fs::write(&image, b).unwrap()
            }),
            Box::new(|| std::fs::write(&image, &good).unwrap()),
            "no EROFS superblock",
        ),
        (
            "corrupt metadata",
            Box::new(|| {
                let mut b = good.clone();
                // The superblock after its magic, and what follows, scrambled.
                for x in b.iter_mut().skip(1024 + 128).take(2048) {
                    *x ^= 0xa5;
                }
                std::fs::write(&image, b).unwrap()
            }),
            Box::new(|| std::fs::write(&image, &good).unwrap()),
            "Mounting the composefs image",
        ),
        (
            "missing objects",
            Box::new(|| std::fs::rename(&objects, root.join("ostree/repo/objects.away")).unwrap()),
            Box::new(|| std::fs::rename(root.join("ostree/repo/objects.away"), &objects).unwrap()),
            "objects",
        ),
    ];
    for (what, break_it, mend, expect) in &cases {
        break_it();
        let (_, out, err) = ns(&s, &root, &dep, &format!(
            "set +e\n\"$PR\" --no-bind-var --cmdline {} \"$MNT\"\necho \"exit=$?\"\ngrep -c \" $MNT\" /proc/self/mountinfo | sed 's/^/MOUNTS /'\ntest -e /run/ostree-booted && echo LEFT-BOOTED\ntrue\n",
            cmdline.display()
        ));
        mend();
        // Refused, and only the sysroot's own mount is left.
        assert!(out.contains("MOUNTS 1\n"), "{what}: mounts left: {out}\n{err}");
        assert!(out.contains("exit=1"), "{what}: {out}\n{err}");
        assert!(err.contains(expect), "{what}: expected {expect:?} in {err}");
        assert!(err.contains(".ostree.cfs") || err.contains("objects"), "{what}: the error names no file: {err}");
        assert!(!out.contains("LEFT-BOOTED"), "{what}");
    }
}

#[test]
fn stage_reads_the_etc_the_deployment_will_have() {
    let (_s, root, mkcfs) = sysroot("cfsstage");
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    // The admin asks for composefs in the booted /etc after the deploy: the
    // staged deployment's /etc is merged only at finalize, and its image is
    // written at stage time all the same.
    let booted = deployment_dir(&root, 0);
    write(&booted.join("etc/ostree/prepare-root.conf"), "[composefs]\nenabled=yes\n");
    let script = format!(
        "export TREEBOOT_MKCOMPOSEFS={}\n$TB --sysroot $S stage testos/v4\nd=$($TB --sysroot $S status --json | python3 -c 'import json,sys; print([d[\"deploy_path\"] for d in json.load(sys.stdin)[\"deployments\"] if d[\"staged\"]][0])')\ntest -s \"$S/$d/.ostree.cfs\" && echo IMAGE\n$TB --sysroot $S finalize-staged\ncat \"$S/$d/etc/ostree/prepare-root.conf\"\n",
        mkcfs.display()
    );
    let (ok, out, err) = in_booted_namespace(&root, 0, &script);
    assert!(ok && out.contains("IMAGE") && out.contains("enabled=yes"), "{out}\n{err}");
    // An admin who removes the file again gets no image for the next one
    // (still booted in v1, now deployment 1).
    std::fs::remove_file(booted.join("etc/ostree/prepare-root.conf")).unwrap();
    assert_eq!(deployment_dir(&root, 1), booted);
    let script = script.replace("testos/v4", "testos/v2");
    let (ok, out, err) = in_booted_namespace(&root, 1, &script.replace("cat ", "test ! -e ").replace("&& echo IMAGE", "|| echo NO-IMAGE"));
    assert!(ok && out.contains("NO-IMAGE"), "{out}\n{err}");
    // The admin asks for composefs after staging: the staged deployment
    // has no image and would not boot, so finalize refuses it and the
    // current default stays.
    let default_before = deployment_dir(&root, 0);
    let script = format!(
        "export TREEBOOT_MKCOMPOSEFS={}\n$TB --sysroot $S stage testos/v3\nmkdir -p {b}/etc/ostree\necho '[composefs]\nenabled=yes' > {b}/etc/ostree/prepare-root.conf\nset +e\n$TB --sysroot $S finalize-staged\necho \"exit=$?\"\n",
        mkcfs.display(),
        b = booted.display()
    );
    let (_, out, err) = in_booted_namespace(&root, 1, &script);
    assert!(out.contains("exit=1") && err.contains("staged without a composefs image"), "{out}\n{err}");
    assert_eq!(deployment_dir(&root, 0), default_before, "a deployment that cannot boot became the default");
}
