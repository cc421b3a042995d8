//! treeboot: manage image-based, ostree-style operating systems.
//!
//! Module directions (no arrow runs back up): `ops` → `bootloader` →
//! `sysroot` → `formats`; `ops` also uses `etcmerge`, `repo`. `etcmerge`
//! knows nothing of sysroots. See docs/ARCHITECTURE.md.
/// Print a line to stdout, ignoring errors: a reader that closed the pipe
/// (`treeboot deploy | head -1`) must never abort an update halfway.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

pub mod bootloader;
pub mod cli;
pub mod early;
pub mod etcmerge;
pub mod failpoint;
pub mod formats;
pub mod fsutil;
pub mod journal;
pub mod ops;
pub mod repo;
pub mod staged;
pub mod sysroot;
pub mod timing;
