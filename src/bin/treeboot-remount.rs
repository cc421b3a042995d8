//! treeboot-remount: after switch-root, make /sysroot, /var and /etc
//! writable as recorded in /run/ostree-booted (after a soft reboot, first
//! make the next root's record that one). Links only libc.

use treeboot::early::nextroot::Promoted;
use treeboot::early::REMOUNT;
use treeboot::formats::runstate::Booted;

fn main() {
    // `--root DIR` applies the policy below DIR instead of / (for tests).
    let args: Vec<String> = std::env::args().collect();
    let root = match args.get(1).map(String::as_str) {
        Some(a) if REMOUNT.answer(a) => return,
        Some("--root") => args.get(2).cloned().unwrap_or_else(|| "/".into()),
        Some(_) => {
            eprintln!("{}", REMOUNT.usage);
            std::process::exit(2);
        }
        None => "/".into(),
    };
    // After a soft reboot: the next root's record becomes /run/ostree-booted
    // once / is the deployment it names (early/nextroot.rs).
    let rootp = camino::Utf8Path::new(&root);
    match treeboot::early::nextroot::promote(camino::Utf8Path::new("/run"), rootp, &rootp.join("sysroot")) {
        Ok(Promoted::Nothing) => {}
        Ok(Promoted::Booted(d)) => eprintln!("treeboot-remount: soft reboot into {d}: /run/ostree-booted names it now"),
        Ok(Promoted::Stale) => eprintln!("treeboot-remount: removed /run/ostree/nextroot-booted: it names another root than {root} (the soft reboot did not switch)"),
        Err(e) => eprintln!("treeboot-remount: error: after a soft reboot: {e:#}"),
    }
    let data = match std::fs::read("/run/ostree-booted") {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("treeboot-remount: not booted from a deployment (no /run/ostree-booted)");
            return;
        }
        Err(e) => {
            eprintln!("treeboot-remount: error: reading /run/ostree-booted: {e}");
            std::process::exit(1);
        }
    };
    let booted = match Booted::parse(&data) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("treeboot-remount: error: /run/ostree-booted: {e}");
            std::process::exit(1);
        }
    };
    match treeboot::early::remount::remount(camino::Utf8Path::new(&root), &booted) {
        Ok(done) => {
            for d in done {
                eprintln!("treeboot-remount: {d}");
            }
        }
        Err(e) => {
            eprintln!("treeboot-remount: error: {e:#}");
            std::process::exit(1);
        }
    }
}
