//! `TREEBOOT_TIMING=1` prints how long each step of an operation took, to
//! stderr: the easy way to see where a slow deploy or finalize spends time.

use std::sync::Mutex;
use std::time::Instant;

static LAST: Mutex<Option<Instant>> = Mutex::new(None);

/// Mark the end of the step `name`.
pub fn step(name: &str) {
    if std::env::var_os("TREEBOOT_TIMING").is_none() {
        return;
    }
    let now = Instant::now();
    let mut last = LAST.lock().unwrap();
    if let Some(prev) = *last {
        eprintln!("timing: {name}: {:.1} ms", (now - prev).as_secs_f64() * 1e3);
    } else {
        eprintln!("timing: {name}: start");
    }
    *last = Some(now);
}
