//! Early boot: prepare-root (initramfs), remount (after switch-root) and the
//! systemd generator. These run before the system exists and link only
//! libc: they use `formats` and never `repo`, `ops` or the sysroot writers.

pub mod generator;
pub mod mount;
pub mod prepare_root;
pub mod remount;
