//! treeboot: manage image-based, ostree-style operating systems.
//!
//! Module directions (no arrow runs back up): `ops` → `bootloader` →
//! `sysroot` → `formats`; `ops` also uses `etcmerge`, `repo`. `etcmerge`
//! knows nothing of sysroots. See docs/ARCHITECTURE.md.
/// Print a line to stdout, ignoring errors: a reader that closed the pipe
/// (`treeboot deploy | head -1`) must never abort an update halfway. When
/// stdout carries a JSON document ([`JSON_STDOUT`]), to stderr instead.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if $crate::JSON_STDOUT.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = writeln!(std::io::stderr(), $($t)*);
        } else {
            let _ = writeln!(std::io::stdout(), $($t)*);
        }
    }};
}

/// Set by a command run with `--json`: its stdout is one JSON document,
/// and what the operations say on the way goes to stderr.
pub static JSON_STDOUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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
