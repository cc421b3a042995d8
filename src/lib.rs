//! treeboot: manage image-based, ostree-style operating systems.
//!
//! Module directions (no arrow runs back up): `ops` → `bootloader` →
//! `sysroot` → `formats`; `ops` also uses `etcmerge`, `repo`. `etcmerge`
//! knows nothing of sysroots. See docs/ARCHITECTURE.md.
/// Say a sentence on the way (suppressed by `--quiet`; a JSON `message`
/// event with `--json`): see [`output::message`].
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::output::message(1, format_args!($($t)*)) };
}

/// A detail only `--verbose` shows.
#[macro_export]
macro_rules! detail {
    ($($t:tt)*) => { $crate::output::message(2, format_args!($($t)*)) };
}

/// A warning on stderr, always said: see [`output::warning`].
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::output::warning(format_args!($($t)*)) };
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
pub mod output;
pub mod repo;
pub mod sys;
pub mod sysroot;
pub mod timing;
