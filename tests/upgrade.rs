//! `treeboot upgrade` and `switch` against a real HTTP server on 127.0.0.1
//! (tests/data/httpd.py, started and stopped by each test) serving an
//! archive-mode repository: updates, no update, --check, download-only
//! then apply, switch, downgrades, signed remotes, and the faults a
//! network pull meets (a server gone mid-pull, a corrupted object, a full
//! sysroot): each fault leaves nothing staged or deployed.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path, scratch: &Scratch, tag: &str, port: Option<u16>, die_after: Option<u32>) -> Self {
        let portfile = scratch.join(&format!("{tag}.port"));
        let log = scratch.join(&format!("{tag}.log"));
        let _ = std::fs::remove_file(&portfile);
        let mut cmd = Command::new("python3");
        cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/httpd.py")).arg(dir).arg(&portfile);
        if let Some(p) = port {
            cmd.args(["--port", &p.to_string()]);
        }
        if let Some(n) = die_after {
            cmd.args(["--die-after", &n.to_string()]);
        }
        // Dropped (killed and waited for) on every path, the panic included.
        let mut server = Server { child: cmd.stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap(), port: 0, log };
        for _ in 0..200 {
            if let Ok(p) = std::fs::read_to_string(&portfile) {
                server.port = p.trim().parse().unwrap();
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("httpd.py did not start: {}", std::fs::read_to_string(&server.log).unwrap_or_default());
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
    /// The objects it served (a 200 answer to `GET /objects/...`).
    fn objects_served(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET /objects/") && l.contains("\" 200 "))
            .filter_map(|l| l.split("GET ").nth(1)?.split(' ').next().map(String::from))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ostree(repo: &Path) -> Command {
    let mut c = Command::new("ostree");
    c.arg(format!("--repo={}", repo.display()));
    c
}

/// Commit a test tree to the server's repository with a given timestamp.
fn publish(s: &Scratch, srv: &Path, branch: &str, variant: &str, version: &str, date: &str, edit: impl FnOnce(&Path)) -> String {
    let t = s.join(&format!("tree-{variant}"));
    make_tree(&t, "A", variant);
    edit(&t);
    run(ostree(srv)
        .args(["commit", "-b", branch, "-s", &format!("Release {version}")])
        .arg(format!("--add-metadata-string=version={version}"))
        .arg(format!("--tree=dir={}", t.display()))
        .arg(format!("--timestamp={date}")))
    .trim()
    .to_string()
}

/// A server repository with testos/stable at 1.0, and a sysroot with it
/// deployed from remote `origin` (no GPG).
fn setup(s: &Scratch) -> (PathBuf, PathBuf, Server) {
    let srv = s.join("srv");
    run(ostree(&srv).args(["init", "--mode=archive"]));
    publish(s, &srv, "testos/stable", "one", "1.0", "2026-01-01T00:00:00Z", |_| {});
    let server = Server::start(&srv, s, "httpd", None, None);
    let root = s.join("sysroot");
    run(Command::new(treeboot_bin()).arg("init-fs").arg(&root));
    run(tb(&root).args(["os-init", "testos"]));
    let repo = root.join("ostree/repo");
    run(ostree(&repo).args(["remote", "add", "--no-gpg-verify", "origin", &server.url()]));
    run(ostree(&repo).args(["pull", "origin", "testos/stable"]));
    run(tb(&root).args(["deploy", "--karg", "root=LABEL=root", "origin:testos/stable"]));
    (srv, root, server)
}

fn deployments(root: &Path) -> Vec<String> {
    let d = root.join("ostree/deploy/testos/deploy");
    let mut v: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".origin"))
        .collect();
    v.sort();
    v
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn check_stage_download_only_apply() {
    let s = Scratch::new("upgrade");
    let (srv, root, _server) = setup(&s);
    // Nothing new: said plainly, exit 77 for --check, 0 for upgrade.
    let o = tb(&root).args(["upgrade", "--check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(77), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("No update available: origin:testos/stable is at "), "{}", String::from_utf8_lossy(&o.stdout));
    let before = snapshot(&root);
    let v2 = publish(&s, &srv, "testos/stable", "two", "2.0", "2026-02-01T00:00:00Z", |t| write(&t.join("usr/bin/new"), "new\n"));
    let out = run(tb(&root).args(["upgrade", "--check"]));
    assert!(out.contains(&format!("Update available: origin:testos/stable is at {v2} (version 2.0, 2026-02-01 00:00:00 UTC)")), "{out}");
    assert_eq!(deployments(&root).len(), 1, "--check deploys nothing");
    assert!(status_json(&root)["deployments"].as_array().unwrap().len() == 1);
    let _ = before;

    // Booted on 1.0: stage, see it, download-only replaces it locked, then apply.
    let fake = s.join("fakebin");
    write(&fake.join("systemctl"), &format!("#!/bin/sh\necho \"$@\" >> {}/called\n", fake.display()));
    run(Command::new("chmod").arg("+x").arg(fake.join("systemctl")));
    let (ok, out, err) = in_booted_namespace(&root, 0, r#"
$TB --sysroot $S upgrade --json > /tmp/up.$$; cat /tmp/up.$$; rm /tmp/up.$$
test -e /run/reboot-required
echo "--- again"
$TB --sysroot $S upgrade
echo "--- status"
$TB --sysroot $S status
"#);
    assert!(ok, "{out}\n{err}");
    let doc = json(out.split("--- again").next().unwrap());
    assert_eq!(doc["action"], "staged", "{doc}");
    assert_eq!(doc["checksum"], v2.as_str());
    assert_eq!(doc["version"], "2.0");
    assert!(doc["deployment"].as_str().unwrap().starts_with(&v2));
    assert!(out.contains(&format!("The update {v2}.0 is staged already: it is applied at shutdown")), "{out}");
    assert!(out.contains("Update pending: 0 (version 2.0) is staged"), "{out}");

    let v3 = publish(&s, &srv, "testos/stable", "three", "3.0", "2026-03-01T00:00:00Z", |_| {});
    let (ok, out, err) = in_booted_namespace(&root, 0, &format!(r#"
$TB --sysroot $S upgrade --download-only
test ! -e /run/reboot-required || {{ echo "reboot-required while locked"; exit 1; }}
out=$($TB --sysroot $S status); grep -q "finalization locked" <<<"$out"
echo "--- apply"
PATH={fake}:$PATH $TB --sysroot $S upgrade --apply
test -e /run/reboot-required
$TB --sysroot $S status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("locked", d["staged_locked"])'
$TB --sysroot $S finalize-staged
"#, fake = fake.display()));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&format!("Downloaded and staged the update {v3}.0 of origin:testos/stable")), "{out}");
    assert!(out.contains("Rebooting to apply the update") && out.contains("locked False"), "{out}");
    assert_eq!(std::fs::read_to_string(fake.join("called")).unwrap(), "reboot\n", "--apply reboots through systemd");
    let st = status_json(&root);
    assert_eq!(st["deployments"][0]["checksum"], v3.as_str(), "the applied update is the default");
    assert_eq!(st["deployments"][0]["refspec"], "origin:testos/stable");
}

#[test]
fn downgrade_switch_and_remotes() {
    let s = Scratch::new("upgrade-switch");
    let (srv, root, _server) = setup(&s);
    let v1 = status_json(&root)["deployments"][0]["checksum"].as_str().unwrap().to_string();
    // An offline sysroot (not booted) is upgraded with --deploy.
    let v2 = publish(&s, &srv, "testos/stable", "two", "2.0", "2026-02-01T00:00:00Z", |_| {});
    // Not booted, so not stageable: refused before anything is fetched,
    // with the way out.
    let o = tb(&root).arg("upgrade").output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("use `treeboot upgrade --deploy`"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = tb(&root).args(["--json", "upgrade", "--deploy"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&String::from_utf8_lossy(&o.stdout))["action"], "deployed");
    let pulled: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(json)
        .filter(|e| e["type"] == "progress" && e["phase"] == "pull" && e["finished"] == true)
        .collect();
    assert!(pulled.len() == 1 && pulled[0]["bytes"].as_u64().unwrap() > 0, "a finished pull with bytes: {pulled:?}");

    // The server goes back to 1.0: a downgrade, refused unless allowed.
    run(ostree(&srv).args(["reset", "testos/stable", &v1]));
    let before = deployments(&root);
    let err = run_fail(tb(&root).args(["upgrade", "--deploy"]));
    assert!(err.contains(&format!("refusing to downgrade: commit {v1} is from 2026-01-01 00:00:00 UTC, older than 2026-02-01 00:00:00 UTC ({v2})")), "{err}");
    assert!(err.contains("--allow-downgrade"), "{err}");
    assert_eq!(deployments(&root), before, "nothing deployed");
    run(tb(&root).args(["upgrade", "--deploy", "--allow-downgrade"]));
    assert_eq!(status_json(&root)["deployments"][0]["checksum"], v1.as_str());

    // switch: a new origin, kept by the next upgrade.
    let next = publish(&s, &srv, "testos/next", "next", "4.0", "2026-04-01T00:00:00Z", |_| {});
    let out = run(tb(&root).args(["switch", "--deploy", "origin:testos/next"]));
    assert!(out.contains(&format!("Deployed the update {next}.0 of origin:testos/next")), "{out}");
    let st = status_json(&root);
    assert_eq!(st["deployments"][0]["refspec"], "origin:testos/next");
    let o = tb(&root).args(["upgrade", "--check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(77), "up to date on the new ref: {}", String::from_utf8_lossy(&o.stdout));

    // Another ref whose head is older than the deployment: a switch takes
    // it (no chronological relation between refs, as `ostree admin
    // switch`); following that ref again, an older commit is a downgrade.
    let old_stream = publish(&s, &srv, "testos/old", "old", "0.9", "2025-06-01T00:00:00Z", |_| {});
    let out = run(tb(&root).args(["switch", "--deploy", "origin:testos/old"]));
    assert!(out.contains(&format!("Deployed the update {old_stream}.0 of origin:testos/old")), "{out}");
    run(ostree(&srv).args(["commit", "-b", "testos/old", "--tree=ref=testos/old", "--timestamp=2025-01-01T00:00:00Z", "-s", "older"]));
    let err = run_fail(tb(&root).args(["switch", "--deploy", "origin:testos/old"]));
    assert!(err.contains("refusing to downgrade"), "the same ref again: {err}");
    run(tb(&root).args(["switch", "--deploy", "origin:testos/next"]));

    let err = run_fail(tb(&root).args(["switch", "--deploy", "elsewhere:testos/next"]));
    assert!(err.contains("remote \"elsewhere\" of elsewhere:testos/next is not configured in ostree/repo/config"), "{err}");
    let err = run_fail(tb(&root).args(["switch", "--deploy", "origin:testos/nonexistent"]));
    assert!(err.contains("Pulling testos/nonexistent from remote origin"), "{err}");
    assert_eq!(status_json(&root)["deployments"][0]["refspec"], "origin:testos/next", "a failed switch changes nothing");
}

#[test]
fn signed_remote_good_and_bad_signature() {
    let s = Scratch::new("upgrade-gpg");
    let (srv, root, server) = setup(&s);
    let home = s.join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| run(Command::new("gpg").arg("--homedir").arg(&home).args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""]).args(args));
    gpg(&["--quick-gen-key", "treeboot test <good@example.invalid>", "ed25519", "sign", "never"]);
    gpg(&["--quick-gen-key", "untrusted <bad@example.invalid>", "ed25519", "sign", "never"]);
    let fpr = |uid: &str| -> String {
        let out = gpg(&["--with-colons", "--list-keys", uid]);
        out.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_string()
    };
    let (good, bad) = (fpr("good@example.invalid"), fpr("bad@example.invalid"));
    let pubkey = s.join("good.asc");
    std::fs::write(&pubkey, gpg(&["--armor", "--export", &good])).unwrap();
    let repo = root.join("ostree/repo");
    run(ostree(&repo).args(["remote", "add", "--set=gpg-verify=true"]).arg(format!("--gpg-import={}", pubkey.display())).args(["signed", &server.url()]));

    let sign = |csum: &str, key: &str| run(ostree(&srv).args(["gpg-sign"]).arg(format!("--gpg-homedir={}", home.display())).args([csum, key]));
    let v2 = publish(&s, &srv, "testos/stable", "two", "2.0", "2026-02-01T00:00:00Z", |_| {});
    sign(&v2, &good);
    let out = run(tb(&root).args(["switch", "--deploy", "signed:testos/stable"]));
    assert!(out.contains(&format!("Deployed the update {v2}.0 of signed:testos/stable")), "{out}");

    let v3 = publish(&s, &srv, "testos/stable", "three", "3.0", "2026-03-01T00:00:00Z", |_| {});
    sign(&v3, &bad);
    let before = deployments(&root);
    let err = run_fail(tb(&root).args(["upgrade", "--deploy"]));
    assert!(err.contains("Pulling testos/stable from remote signed") && err.contains("public key not found"), "{err}");
    assert!(err.to_lowercase().contains("signature"), "{err}");
    assert_eq!(deployments(&root), before, "nothing deployed from a bad signature");
    let _ = Command::new("gpgconf").arg("--homedir").arg(&home).args(["--kill", "all"]).status();
}

#[test]
fn faults_leave_nothing_staged_or_deployed() {
    let s = Scratch::new("upgrade-faults");
    let (srv, root, server) = setup(&s);
    publish(&s, &srv, "testos/stable", "two", "2.0", "2026-02-01T00:00:00Z", |t| {
        for i in 0..20 {
            write(&t.join(format!("usr/share/data/file{i}")), &format!("content {i}\n").repeat(100));
        }
    });
    let port = server.port;
    drop(server);
    // The server goes away after twelve objects.
    let dying = Server::start(&srv, &s, "dying", Some(port), Some(12));
    let before = deployments(&root);
    let err = run_fail(tb(&root).args(["upgrade", "--deploy"]));
    assert!(err.contains("Pulling testos/stable from remote origin"), "{err}");
    assert_eq!(deployments(&root), before, "nothing deployed after the server died");
    assert_eq!(status_json(&root)["deployments"].as_array().unwrap().len(), 1);
    let first = dying.objects_served();
    drop(dying);
    // Back again: the next run fetches the rest, not what it has, and succeeds.
    let server = Server::start(&srv, &s, "again", Some(port), None);
    run(tb(&root).args(["upgrade", "--deploy"]));
    assert_eq!(status_json(&root)["deployments"][0]["version"], "2.0");
    let second = server.objects_served();
    let again: Vec<&String> = first.iter().filter(|o| !o.ends_with(".commit") && second.contains(o)).collect();
    assert!(first.len() > 3 && again.is_empty(), "fetched again: {again:?} of {first:?}");
    assert!(!second.is_empty());

    // A corrupted object on the server (another object's bytes under its
    // name): the checksum error names it.
    let v3 = publish(&s, &srv, "testos/stable", "three", "3.0", "2026-03-01T00:00:00Z", |t| {
        write(&t.join("usr/bin/corrupt-me"), &"x".repeat(5000));
        write(&t.join("usr/bin/other"), &"y".repeat(5000));
    });
    let obj = find_object(&srv, &v3, "/usr/bin/corrupt-me");
    std::fs::copy(find_object(&srv, &v3, "/usr/bin/other"), &obj).unwrap();
    let csum = format!("{}{}", obj.parent().unwrap().file_name().unwrap().to_string_lossy(), obj.file_stem().unwrap().to_string_lossy());
    let before = deployments(&root);
    let err = run_fail(tb(&root).args(["upgrade", "--deploy"]));
    assert!(err.contains(&csum) && err.to_lowercase().contains("corrupted"), "the object is named: {err}");
    assert_eq!(deployments(&root), before, "nothing deployed from a corrupted object");
    // Bytes that do not even decompress: refused too.
    let mut data = std::fs::read(&obj).unwrap();
    let n = data.len();
    data[n - 20] ^= 0xff;
    std::fs::write(&obj, data).unwrap();
    let err = run_fail(tb(&root).args(["upgrade", "--deploy"]));
    assert!(err.contains("Pulling testos/stable from remote origin"), "{err}");
    assert_eq!(deployments(&root), before);
}

/// The file object of `path` in commit `csum` (archive mode: `.filez`).
fn find_object(srv: &Path, csum: &str, path: &str) -> PathBuf {
    let out = run(ostree(srv).args(["ls", "-C", csum, path]));
    let obj = out.split_whitespace().nth(4).unwrap_or_else(|| panic!("{out}")).to_string();
    srv.join(format!("objects/{}/{}.filez", &obj[..2], &obj[2..]))
}

/// A sysroot on a small file system: the pull fails for want of space with
/// a clear error, and nothing is deployed.
#[test]
fn full_sysroot_during_the_pull() {
    let s = Scratch::new("upgrade-full");
    let srv = s.join("srv");
    run(ostree(&srv).args(["init", "--mode=archive"]));
    publish(&s, &srv, "testos/stable", "one", "1.0", "2026-01-01T00:00:00Z", |_| {});
    // 12 MiB that do not compress: more than the small sysroot holds.
    publish(&s, &srv, "testos/stable", "big", "2.0", "2026-02-01T00:00:00Z", |t| {
        let mut data = vec![0u8; 12 << 20];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        std::fs::create_dir_all(t.join("usr/share/big")).unwrap();
        std::fs::write(t.join("usr/share/big/blob"), data).unwrap();
    });
    let v1 = run(ostree(&srv).args(["rev-parse", "testos/stable^"])).trim().to_string();
    let server = Server::start(&srv, &s, "httpd", None, None);
    let mnt = s.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let script = format!(
        r#"set -eu
mount -t tmpfs -o size=8m tmpfs {mnt}
S={mnt}/sysroot
$TB init-fs $S >/dev/null
$TB --sysroot $S os-init testos >/dev/null
ostree --repo=$S/ostree/repo remote add --no-gpg-verify origin {url}
ostree --repo=$S/ostree/repo pull origin {v1} >/dev/null
ostree --repo=$S/ostree/repo refs --create=origin:testos/stable {v1}
$TB --sysroot $S deploy --karg root=LABEL=root origin:testos/stable >/dev/null
before=$(ls $S/ostree/deploy/testos/deploy)
if $TB --sysroot $S upgrade --deploy 2>/tmp/full.$$; then echo "the upgrade succeeded"; exit 1; fi
cat /tmp/full.$$ >&2; rm /tmp/full.$$
test "$before" = "$(ls $S/ostree/deploy/testos/deploy)" || {{ echo "a deployment was left"; exit 1; }}
test ! -e /run/ostree/staged-deployment-never
$TB --sysroot $S status --json | python3 -c 'import json,sys; print("deployments", len(json.load(sys.stdin)["deployments"]))'
"#,
        mnt = mnt.display(),
        url = server.url()
    );
    let o = Command::new("unshare").args(["-m", "--propagation", "private", "bash", "-c", &script]).env("TB", treeboot_bin()).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("deployments 1"), "{out}");
    assert!(err.contains("Pulling testos/stable from remote origin"), "{err}");
    assert!(err.contains("space") || err.contains("min-free-space"), "the reason is said: {err}");
}

#[test]
fn automatic_follows_the_policy() {
    let s = Scratch::new("upgrade-auto");
    let (srv, root, _server) = setup(&s);
    let conf = s.join("upgrade.conf");
    let auto = |root: &Path| {
        let mut c = tb(root);
        c.args(["upgrade", "--automatic", "--config"]).arg(&conf);
        c
    };
    // No config: off.
    let out = run(&mut auto(&root));
    assert!(out.contains("Automatic updates are off"), "{out}");
    publish(&s, &srv, "testos/stable", "two", "2.0", "2026-02-01T00:00:00Z", |_| {});
    write(&conf, "[Upgrade]\nPolicy=none\n");
    let j = json(&run(auto(&root).arg("--json")));
    assert_eq!(j["action"], "off");
    write(&conf, "[Upgrade]\nPolicy=check\n");
    let out = run(&mut auto(&root));
    assert!(out.contains("Update available"), "{out}");
    assert_eq!(deployments(&root).len(), 1, "check changes nothing");
    write(&conf, "[Upgrade]\nPolicy=sometimes\n");
    let err = run_fail(&mut auto(&root));
    assert!(err.contains(&format!("Reading {}", conf.display())) && err.contains("Policy=sometimes: not one of none, check, stage, apply"), "{err}");
    write(&conf, "[Upgrade]\nPolicy=stage\n");
    let (ok, out, err) = in_booted_namespace(&root, 0, &format!("$TB --sysroot $S upgrade --automatic --config {}\ntest -e /run/ostree/staged-deployment\n", conf.display()));
    assert!(ok && out.contains("Staged the update"), "{out}\n{err}");
}
