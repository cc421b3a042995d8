//! Named crash points between the mutating steps of writing operations.
//!
//! With the `failpoints` cargo feature, `TREEBOOT_FAILPOINT=NAME` makes the
//! process abort (as a power cut or `kill -9` would) when it reaches step
//! NAME, and `TREEBOOT_FAILPOINT_LOG=FILE` appends each step's name as it is
//! passed, which is how the crash tests enumerate them. Without the feature
//! this compiles to nothing.

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::io::Write;
    if let Ok(log) = std::env::var("TREEBOOT_FAILPOINT_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{name}");
        }
    }
    if std::env::var("TREEBOOT_FAILPOINT").as_deref() == Ok(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
