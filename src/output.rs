//! What the commands print, and how much: sentences for a person on
//! stdout, or, with `--json`, one JSON document on stdout and JSON lines
//! (messages, warnings, progress, the error) on stderr for a program;
//! `--quiet` keeps only the answer of a reading command, warnings and
//! errors; `--verbose` adds detail. Progress is drawn on a terminal only.
//! (docs/json.md is the contract.)

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The version of every JSON document and event line: raised when a field
/// changes meaning or goes away (new fields do not raise it).
pub const FORMAT_VERSION: u32 = 1;

static JSON: AtomicBool = AtomicBool::new(false);
/// 0 quiet, 1 normal, 2 verbose.
static LEVEL: AtomicU8 = AtomicU8::new(1);
/// The bar being drawn, if any: sentences are printed around it
/// (`suspend`), not into it.
static ACTIVE: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Run `f` (which writes to the terminal) with the active bar cleared.
fn around_bar(f: impl FnOnce()) {
    let bar = ACTIVE.lock().ok().and_then(|a| a.clone());
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

/// Set once from the command line (`--json`, `--quiet`, `--verbose`).
pub fn configure(json: bool, quiet: bool, verbose: bool) {
    JSON.store(json, Relaxed);
    LEVEL.store(if quiet { 0 } else if verbose { 2 } else { 1 }, Relaxed);
}

pub fn json() -> bool {
    JSON.load(Relaxed)
}

pub fn verbose() -> bool {
    LEVEL.load(Relaxed) >= 2
}

/// Whether color and symbols may be used on stdout: a terminal, and
/// `NO_COLOR` unset or empty (no-color.org).
pub fn styled() -> bool {
    !json() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// A UTC date for a person: `2026-12-02 21:40:05 UTC`.
pub fn date(ts: u64) -> String {
    i64::try_from(ts)
        .ok()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ts} (seconds since 1970)"))
}

/// One JSON line on stderr: `{"format_version":1,"type":T,...fields}`.
fn event<T: Serialize>(kind: &str, fields: &T) {
    #[derive(Serialize)]
    struct Event<'a, T> {
        format_version: u32,
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(flatten)]
        fields: &'a T,
    }
    if let Ok(s) = serde_json::to_string(&Event { format_version: FORMAT_VERSION, kind, fields }) {
        let _ = writeln!(std::io::stderr(), "{s}");
    }
}

#[derive(Serialize)]
struct Text<'a> {
    message: &'a str,
}

/// A sentence on the way (what `say!` and `detail!` print): stdout for a
/// person, a `message` event with `--json`; not at all below `level`.
/// Errors writing are ignored: a reader that closed the pipe
/// (`treeboot deploy | head -1`) must never abort an update halfway.
pub fn message(level: u8, args: std::fmt::Arguments) {
    if LEVEL.load(Relaxed) < level {
        return;
    }
    if json() {
        event("message", &Text { message: &args.to_string() });
    } else {
        around_bar(|| {
            let _ = writeln!(std::io::stdout(), "{args}");
        });
    }
}

/// A warning: always said, on stderr (`warning: ...`, or a `warning` event).
pub fn warning(args: std::fmt::Arguments) {
    if json() {
        event("warning", &Text { message: &args.to_string() });
    } else {
        around_bar(|| {
            let _ = writeln!(std::io::stderr(), "warning: {args}");
        });
    }
}

/// The error a command ends with, as the last line on stderr; returns the
/// exit status (docs/exit-codes.md).
pub fn fail(e: &anyhow::Error) -> i32 {
    let code = crate::cli::exit_code(e);
    if json() {
        #[derive(Serialize)]
        struct Failure<'a> {
            message: &'a str,
            exit_code: i32,
        }
        event("error", &Failure { message: &format!("{e:#}"), exit_code: code });
    } else {
        let _ = writeln!(std::io::stderr(), "error: {e:#}");
    }
    code
}

/// A command's document on stdout, with `format_version` first.
pub fn document<T: Serialize>(body: &T) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Doc<'a, T> {
        format_version: u32,
        #[serde(flatten)]
        body: &'a T,
    }
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&Doc { format_version: FORMAT_VERSION, body })?);
    Ok(())
}

/// What a verb prints when it is done: a JSON document with `--json`, else
/// sentences. A reading verb's answer is printed even with `--quiet`; a
/// writing verb's report is not.
pub trait Report: Serialize + schemars::JsonSchema {
    fn human(&self) -> String;
    /// The answer to a question (status, kargs, diff): kept by `--quiet`.
    const ANSWER: bool = false;
}

pub fn report<R: Report>(r: &R) -> anyhow::Result<()> {
    if json() {
        return document(r);
    }
    if R::ANSWER || LEVEL.load(Relaxed) >= 1 {
        let _ = write!(std::io::stdout(), "{}", r.human());
    }
    Ok(())
}

/// The JSON schema of a report's document (format_version included), as
/// docs/json/ publishes it.
pub fn schema<R: Report>() -> serde_json::Value {
    let mut s = schemars::schema_for!(R).to_value();
    if let Some(o) = s.as_object_mut() {
        if let Some(p) = o.get_mut("properties").and_then(|p| p.as_object_mut()) {
            p.insert(
                "format_version".into(),
                serde_json::json!({"description": "The version of this document's format (docs/json.md).", "const": FORMAT_VERSION}),
            );
        }
        if let Some(r) = o.get_mut("required").and_then(|r| r.as_array_mut()) {
            r.insert(0, "format_version".into());
        }
    }
    s
}

/// Progress of one phase of work that can take more than a moment: a bar
/// (or a spinner, without a total) on a terminal's stderr, `progress`
/// events with `--json` (at the start, at most every 200 ms, at the end),
/// nothing otherwise.
pub struct Progress {
    phase: &'static str,
    total: Option<u64>,
    done: u64,
    bytes: Option<u64>,
    bar: Option<indicatif::ProgressBar>,
    json: bool,
    last: Instant,
}

#[derive(Serialize)]
struct Step<'a> {
    phase: &'a str,
    done: u64,
    total: Option<u64>,
    /// Bytes transferred, for a phase counted in objects (`pull`).
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    finished: bool,
}

impl Progress {
    /// `phase` is a stable word (`checkout`, `kernel`, `etc-merge`,
    /// `prune`); `what` says it for a person; `bytes` chooses the units.
    pub fn start(phase: &'static str, what: &str, total: Option<u64>, bytes: bool) -> Self {
        let json = json();
        let bar = (!json && LEVEL.load(Relaxed) >= 1 && std::io::stderr().is_terminal()).then(|| {
            let b = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let tmpl = match (total, bytes) {
                (Some(_), true) => "{msg} [{bar:30}] {bytes}/{total_bytes}",
                (Some(_), false) => "{msg} [{bar:30}] {pos}/{len}",
                (None, _) => "{spinner} {msg} ({elapsed})",
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(tmpl) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(what.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        if let (Some(b), Ok(mut a)) = (&bar, ACTIVE.lock()) {
            *a = Some(b.clone());
        }
        let p = Progress { phase, total, done: 0, bytes: None, bar, json, last: Instant::now() };
        if json {
            event("progress", &Step { phase, done: 0, total, bytes: None, finished: false });
        }
        p
    }

    /// Set the position (and the total, which may grow), the bytes so far
    /// and, on a terminal, the words shown.
    pub fn set(&mut self, done: u64, total: Option<u64>, bytes: Option<u64>, what: Option<String>) {
        // An event only when something moved.
        let moved = (done, total, bytes) != (self.done, self.total, self.bytes);
        self.done = done;
        self.total = total;
        self.bytes = bytes;
        if let Some(b) = &self.bar {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(done);
            if let Some(w) = what {
                b.set_message(w);
            }
        }
        if self.json && moved && self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            event("progress", &Step { phase: self.phase, done, total, bytes, finished: false });
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if self.json && self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            event("progress", &Step { phase: self.phase, done: self.done, total: self.total, bytes: None, finished: false });
        }
    }

    pub fn finish(self) {}
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            if let Ok(mut a) = ACTIVE.lock() {
                *a = None;
            }
            b.finish_and_clear();
        }
        if self.json {
            event("progress", &Step { phase: self.phase, done: self.done, total: self.total, bytes: self.bytes, finished: true });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, schemars::JsonSchema)]
    struct Example {
        /// A field.
        name: String,
        maybe: Option<u32>,
    }

    impl Report for Example {
        fn human(&self) -> String {
            format!("{}\n", self.name)
        }
    }

    #[test]
    fn schemas_carry_the_format_version() {
        let s = schema::<Example>();
        assert_eq!(s["required"][0], "format_version");
        assert_eq!(s["properties"]["format_version"]["const"], FORMAT_VERSION);
        assert_eq!(s["properties"]["name"]["description"], "A field.");
        assert!(s["required"].as_array().unwrap().iter().any(|r| r == "name"));
    }
}
