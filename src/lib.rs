//! treeboot: manage image-based, ostree-style operating systems.
//!
//! Module directions (no arrow runs back up): `ops` → `bootloader` →
//! `sysroot` → `formats`; `ops` also uses `etcmerge`, `repo`. `etcmerge`
//! knows nothing of sysroots. See docs/ARCHITECTURE.md.
pub mod bootloader;
pub mod cli;
pub mod etcmerge;
pub mod failpoint;
pub mod formats;
pub mod fsutil;
pub mod ops;
pub mod repo;
pub mod staged;
pub mod sysroot;
