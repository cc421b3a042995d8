//! Early boot: prepare-root (initramfs), remount (after switch-root) and the
//! systemd generator. These run before the system exists and link only
//! libc: they use `formats` and never `repo`, `ops` or the sysroot writers.

pub mod composefs;
pub mod generator;
pub mod mount;
pub mod nextroot;
pub mod prepare_root;
pub mod remount;

/// What an early binary says about itself: its usage line and what it
/// does, for its `--help` and for its man page (treeboot-gendocs).
pub struct About {
    pub name: &'static str,
    pub usage: &'static str,
    pub about: &'static str,
}

pub const PREPARE_ROOT: About = About {
    name: "treeboot-prepare-root",
    usage: "usage: treeboot-prepare-root [--cmdline FILE] [--bind-var|--no-bind-var] [SYSROOT]",
    about: "Make the deployment named by ostree= on the kernel command line the root at SYSROOT (default /sysroot), in the initramfs or as PID 1 (init=).",
};

pub const REMOUNT: About = About {
    name: "treeboot-remount",
    usage: "usage: treeboot-remount [--root DIR]",
    about: "After switch-root, make /sysroot, /var and /etc writable as /run/ostree-booted records.",
};

pub const GENERATOR: About = About {
    name: "treeboot-generator",
    usage: "usage: treeboot-generator NORMAL_DIR [EARLY_DIR LATE_DIR]",
    about: "The systemd generator of treeboot: when booted from a deployment (ostree= on the kernel command line), writes var.mount into NORMAL_DIR.",
};

impl About {
    /// Answer `-h`/`--help` and `--version` on stdout; true when `arg` was
    /// one of them (the binary then exits 0).
    pub fn answer(&self, arg: &str) -> bool {
        match arg {
            "-h" | "--help" => println!("{}\n{}", self.usage, self.about),
            "--version" => println!("{} {}", self.name, env!("CARGO_PKG_VERSION")),
            _ => return false,
        }
        true
    }
}
