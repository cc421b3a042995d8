//! Named crash points between the mutating steps of writing operations,
//! with the `fail` crate, behind the cargo feature `failpoints` (never in
//! release builds; without the feature `hit` compiles to nothing).
//!
//! `FAILPOINTS='swap::rename-loader=return'` makes the process abort (as a
//! power cut or `kill -9` would: no destructor runs) when it reaches that
//! step; `N*off->return` aborts at its (N+1)th hit. `TREEBOOT_FAILPOINT_LOG=FILE`
//! appends each step's name as it is passed, which is how the crash tests
//! enumerate them. `treeboot-writer --list-failpoints` prints [`ALL`].

/// Every failpoint, in the order of the operations' steps.
pub const ALL: &[&str] = &[
    "deploy::checkout",
    "deploy::etc",
    "etcmerge::action",
    "deploy::origin",
    "deploy::kernel",
    "kernel::before-file",
    "kernel::before-rename",
    "kernel::after-rename",
    "deploy::immutable",
    "swap::links-only::before-bootlinks",
    "swap::links-only::before-sync",
    "swap::links-only::before-rename",
    "swap::links-only::after-rename",
    "swap::remove-stale",
    "swap::write-entries",
    "swap::after-entry",
    "swap::write-bootlinks",
    "swap::bootlink",
    "swap::swap-bootlinks",
    "swap::write-grub",
    "swap::grubenv-create",
    "swap::loader-tmp",
    "swap::sync",
    "swap::rename-loader",
    "swap::sync-boot",
    "swap::remove-old",
    "swap::write-bootversion",
    "swap::grubenv-prune",
    "swap::done",
    "refs::write",
    "cleanup::boot-versions",
    "cleanup::deployment",
    "cleanup::kernel",
    "cleanup::refs",
    "cleanup::prune",
    "pin::write-origin",
    "assess::write-origin",
    "assess::swap",
    "stage::prepare",
    "stage::write-record",
    "stage::remove-replaced",
    "finalize::remove-record",
    "finalize::etc",
    "finalize::kernel",
    "finalize::swap",
    "undeploy::remove-record",
    // Between FIFREEZE and FITHAW of /boot, and not logged (a write there
    // could block on the frozen file system): so never in the crash matrix,
    // whose /boot is on the host's root file system; the freeze tests
    // (tests/reliability.rs) put /boot on a loop device and use it.
    "swap::frozen",
];

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::io::Write;
    debug_assert!(ALL.contains(&name), "failpoint {name} is not listed in failpoint::ALL");
    if let Some(log) = std::env::var_os("TREEBOOT_FAILPOINT_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{name}");
        }
    }
    fail::fail_point!(name, |_| {
        eprintln!("failpoint {name}: aborting");
        std::process::abort()
    });
}

/// A failpoint that writes nothing, not even TREEBOOT_FAILPOINT_LOG: for
/// places where a write could block (between freezing and thawing /boot).
#[cfg(feature = "failpoints")]
pub fn hit_without_log(name: &str) {
    debug_assert!(ALL.contains(&name), "failpoint {name} is not listed in failpoint::ALL");
    fail::fail_point!(name, |_| std::process::abort());
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit_without_log(_name: &str) {}

/// Whether this build has failpoints.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// The same, for tests that need failpoints to say so when run without
/// them (a function, so that the check is not a constant assertion).
pub fn enabled() -> bool {
    ENABLED
}
