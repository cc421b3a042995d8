//! treeboot-prepare-root [--cmdline FILE] [SYSROOT]: in the initramfs, make
//! the deployment named by `ostree=` the root at SYSROOT (default /sysroot).
//! Run as PID 1 (`init=` without an initramfs), it builds the root from `/`,
//! binds /var itself, pivots into the deployment and execs /sbin/init with
//! the arguments the kernel gave it. Links only libc (`make static` builds a
//! static one for PID 1 mode, where the physical root has no libc).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;

use camino::{Utf8Path, Utf8PathBuf};
use treeboot::early::mount::{mount, umount_detach, MS_MOVE, MS_SILENT};
use treeboot::early::prepare_root::{log, prepare_root, Options};
use treeboot::early::PREPARE_ROOT;

// The binary's own exit paths (the library only returns errors).
#[allow(clippy::exit)]
fn usage() -> ! {
    eprintln!("{}", PREPARE_ROOT.usage);
    std::process::exit(2);
}

#[allow(clippy::exit)]
fn fail(msg: &str) -> ! {
    log(&format!("error: {msg}"));
    if std::process::id() == 1 {
        // Exiting PID 1 panics the kernel; with panic=N it reboots, and the
        // boot menu still offers the other deployments.
        log("running as PID 1: the kernel will panic; boot another entry");
    }
    std::process::exit(1);
}

fn main() {
    let pid1 = std::process::id() == 1;
    let mut sysroot = None;
    let mut init_args = Vec::new();
    let mut cmdline_file = Utf8PathBuf::from("/proc/cmdline");
    // Under systemd the generator's var.mount binds /var.
    let mut bind_var = pid1 || !std::path::Path::new("/run/systemd/system").exists();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cmdline" => cmdline_file = args.next().unwrap_or_else(|| usage()).into(),
            // As PID 1 every other argument is the kernel's, for init.
            _ if pid1 => init_args.push(a),
            "--bind-var" => bind_var = true,
            "--no-bind-var" => bind_var = false,
            s if PREPARE_ROOT.answer(s) => return,
            s if s.starts_with('-') => usage(),
            s => sysroot = Some(Utf8PathBuf::from(s)),
        }
    }
    // As PID 1 nothing has mounted /proc yet; it is needed to read the
    // command line and is unmounted again before init starts.
    let mounted_proc = pid1 && !Utf8Path::new("/proc/self").exists();
    if mounted_proc {
        if let Err(e) = mount(Some("proc"), Utf8Path::new("/proc"), Some("proc"), MS_SILENT, None) {
            fail(&format!("mounting /proc: {e}"));
        }
    }
    let abort = |msg: String| -> ! {
        if mounted_proc {
            let _ = umount_detach(Utf8Path::new("/proc"));
        }
        fail(&msg)
    };
    let cmdline = std::fs::read_to_string(&cmdline_file).unwrap_or_else(|e| abort(format!("reading {cmdline_file}: {e}")));
    let opts = Options {
        sysroot: if pid1 { "/".into() } else { sysroot.unwrap_or_else(|| "/sysroot".into()) },
        cmdline,
        run_dir: "/run".into(),
        bind_var,
        pid1,
    };
    let b = prepare_root(&opts).unwrap_or_else(|e| abort(format!("{e:#}")));
    let (dev, ino) = b.backing_root_device_inode.unwrap_or_default();
    if !pid1 {
        eprintln!("treeboot-prepare-root: deployment (dev {dev}, inode {ino}) is the root at {}", opts.sysroot);
        return;
    }
    eprintln!("treeboot-prepare-root: deployment (dev {dev}, inode {ino}) is the root; starting /sbin/init");
    // The old root is /sysroot now: leave it as we found it (no /proc), and
    // bring the kernel's devtmpfs along, as switch_root does, so that init
    // finds its console.
    if mounted_proc {
        let _ = umount_detach(Utf8Path::new("/sysroot/proc"));
    }
    let on_own_fs = |p: &str, parent: &str| match (std::fs::metadata(p), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    };
    if on_own_fs("/sysroot/dev", "/sysroot") && !on_own_fs("/dev", "/") {
        if let Err(e) = mount(Some("/sysroot/dev"), Utf8Path::new("/dev"), None, MS_MOVE | MS_SILENT, None) {
            log(&format!("warning: moving /dev into the new root: {e}"));
        }
    }
    let e = std::process::Command::new("/sbin/init").arg0("/sbin/init").args(&init_args).exec();
    fail(&format!("executing /sbin/init in the deployment: {e}"));
}
