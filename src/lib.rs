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

/// A refusal with a message, as a type of its own so that the CLI can map it
/// to an exit code (`cli::exit_code`).
#[macro_export]
macro_rules! refusal {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $name(pub String);
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for $name {}
    };
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
pub mod sys;
pub mod sysroot;
pub mod timing;
