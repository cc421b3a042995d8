//! treeboot-prepare-root [--cmdline FILE] [SYSROOT]: in the initramfs, make
//! the deployment named by `ostree=` the root at SYSROOT (default /sysroot).
//! Links only libc.

use camino::Utf8PathBuf;
use treeboot::early::prepare_root::{log, prepare_root, Options};

fn usage() -> ! {
    eprintln!("usage: treeboot-prepare-root [--cmdline FILE] [--bind-var|--no-bind-var] [SYSROOT]");
    std::process::exit(2);
}

fn main() {
    let mut sysroot = None;
    let mut cmdline_file = Utf8PathBuf::from("/proc/cmdline");
    // Under systemd the generator's var.mount binds /var.
    let mut bind_var = !std::path::Path::new("/run/systemd/system").exists();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cmdline" => cmdline_file = args.next().unwrap_or_else(|| usage()).into(),
            "--bind-var" => bind_var = true,
            "--no-bind-var" => bind_var = false,
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => usage(),
            s => sysroot = Some(Utf8PathBuf::from(s)),
        }
    }
    let sysroot = sysroot.unwrap_or_else(|| "/sysroot".into());
    let cmdline = match std::fs::read_to_string(&cmdline_file) {
        Ok(c) => c,
        Err(e) => {
            log(&format!("error: reading {cmdline_file}: {e}"));
            std::process::exit(1);
        }
    };
    let opts = Options {
        sysroot,
        cmdline,
        run_dir: "/run".into(),
        bind_var,
    };
    match prepare_root(&opts) {
        Ok(b) => {
            let (dev, ino) = b.backing_root_device_inode.unwrap_or_default();
            eprintln!("treeboot-prepare-root: deployment (dev {dev}, inode {ino}) is the root at {}", opts.sysroot);
        }
        Err(e) => {
            log(&format!("error: {e:#}"));
            std::process::exit(1);
        }
    }
}
