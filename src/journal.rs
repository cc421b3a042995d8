//! Structured journal messages with fixed MESSAGE_IDs, so that admins and
//! monitoring can find them: `journalctl MESSAGE_ID=...`.
//! Outside systemd (no journal socket) the messages go to stderr only.

use std::io::Write;

use libsystemd::logging::{journal_send, Priority};

pub const STAGED: &str = "c3b7e1f5a1d84c4f9c2f0d1e6a7b8c01";
pub const FINALIZED: &str = "c3b7e1f5a1d84c4f9c2f0d1e6a7b8c02";
pub const FINALIZE_FAILED: &str = "c3b7e1f5a1d84c4f9c2f0d1e6a7b8c03";
pub const FINALIZE_LOCKED: &str = "c3b7e1f5a1d84c4f9c2f0d1e6a7b8c04";
/// A deployment failed its boot assessment; the rollback is now the default.
pub const ROLLED_BACK: &str = "c3b7e1f5a1d84c4f9c2f0d1e6a7b8c05";
/// The boot's required health checks failed.
pub const HEALTH_FAILED: &str = "c3b7e1f5a1d84c4f9c2f0d1e6a7b8c06";
/// A deployment passed its boot assessment and was blessed.
pub const BLESSED: &str = "c3b7e1f5a1d84c4f9c2f0d1e6a7b8c07";

/// Send `msg` with `MESSAGE_ID=id` and extra fields; also print it.
/// A stderr nobody reads any more (journald stopped at shutdown) loses the
/// line; it does not end the caller as `eprintln!` would.
pub fn send(id: &str, error: bool, msg: &str, fields: &[(&str, String)]) {
    let _ = writeln!(std::io::stderr(), "{msg}");
    log(id, error, msg, fields);
}

/// Send `msg` to the journal only (the command says it its own way).
pub fn log(id: &str, error: bool, msg: &str, fields: &[(&str, String)]) {
    if !libsystemd::logging::connected_to_journal() && !std::path::Path::new("/run/systemd/journal/socket").exists() {
        return;
    }
    let mut vars: Vec<(String, String)> = vec![
        ("MESSAGE_ID".into(), id.into()),
        ("SYSLOG_IDENTIFIER".into(), "treeboot".into()),
    ];
    vars.extend(fields.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let prio = if error { Priority::Error } else { Priority::Notice };
    let _ = journal_send(prio, msg, vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
}
