//! Boot Loader Specification entries (`/boot/loader/entries/*.conf`).
//!
//! An entry is a list of `key value` lines. ostree writes them in the order
//! `title`, `version`, `options`, `devicetree`, `linux`, `initrd`, then any
//! other key; we keep the order we read so that rewriting an entry written by
//! another tool changes only what we mean to change.

use std::fmt::Write as _;

/// Keys that the specification allows to appear more than once.
const REPEATABLE: &[&str] = &["initrd", "devicetree-overlay", "options"];

/// The order in which ostree writes the keys it knows.
const ORDER: &[&str] = &["title", "version", "options", "devicetree", "linux", "initrd"];

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlsEntry {
    lines: Vec<(String, String)>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct BlsError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for BlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for BlsError {}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl BlsEntry {
    /// Parse an entry. Blank lines and `#` comments are skipped; every other
    /// line must be `key value` with a key of letters, digits, `_` and `-`.
    pub fn parse(text: &str) -> Result<Self, BlsError> {
        let mut lines: Vec<(String, String)> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let lineno = n + 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.split_once([' ', '\t']) {
                Some((k, v)) => (k, v.trim()),
                None => (line, ""),
            };
            if !valid_key(key) {
                return Err(BlsError {
                    line: lineno,
                    message: format!("not a `key value` line: {:?}", truncate(line)),
                });
            }
            if value.is_empty() {
                return Err(BlsError {
                    line: lineno,
                    message: format!("key `{key}` has no value"),
                });
            }
            if !REPEATABLE.contains(&key) && lines.iter().any(|(k, _)| k == key) {
                return Err(BlsError {
                    line: lineno,
                    message: format!("duplicate key `{key}`"),
                });
            }
            lines.push((key.to_string(), value.to_string()));
        }
        Ok(Self { lines })
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All values of `options`, joined by a space (the specification says
    /// repeated `options` lines are concatenated).
    pub fn options(&self) -> Option<String> {
        let v: Vec<&str> = self
            .lines
            .iter()
            .filter(|(k, _)| k == "options")
            .map(|(_, v)| v.as_str())
            .collect();
        if v.is_empty() {
            None
        } else {
            Some(v.join(" "))
        }
    }

    /// Set `key` to a single value: replaces the first occurrence (dropping
    /// any repeats) or inserts it at ostree's position for known keys.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(pos) = self.lines.iter().position(|(k, _)| k == key) {
            self.lines[pos].1 = value;
            let mut seen = false;
            self.lines.retain(|(k, _)| {
                if k != key {
                    return true;
                }
                let keep = !seen;
                seen = true;
                keep
            });
            return;
        }
        let rank = |k: &str| ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len());
        let my = rank(key);
        let pos = self
            .lines
            .iter()
            .position(|(k, _)| rank(k) > my)
            .unwrap_or(self.lines.len());
        self.lines.insert(pos, (key.to_string(), value));
    }

    pub fn serialize(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.lines {
            let _ = writeln!(out, "{k} {v}");
        }
        out
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Parse the `K` of an entry file name written by ostree: `ostree-K-stateroot.conf`
/// (2022.7), `ostree-K.conf` or `ostree-K+TRIES.conf` (newer releases).
pub fn entry_file_is_ostree(name: &str) -> bool {
    name.starts_with("ostree-") && name.ends_with(".conf")
}

/// The boot counters in an entry's file name, `+LEFT` or `+LEFT-DONE`
/// after the last `+` (`ostree-2+3.conf`, `ostree-2+2-1.conf`, as
/// systemd-boot renames them), read as libostree's
/// `parse_bootloader_tries` reads them: (0, 0) when there are none or they
/// do not parse.
pub fn entry_tries(name: &str) -> (u64, u64) {
    let Some((_, counter)) = name.rsplit_once('+') else { return (0, 0) };
    let number = |s: &str| -> Option<(u64, usize)> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        Some((s[..digits].parse().ok()?, digits))
    };
    let Some((left, n)) = number(counter) else { return (0, 0) };
    match counter[n..].strip_prefix('-') {
        Some(rest) => match number(rest) {
            Some((done, _)) => (left, done),
            None => (0, 0),
        },
        None => (left, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_counters_are_read_from_the_name_as_libostree_reads_them() {
        assert_eq!(entry_tries("ostree-2.conf"), (0, 0));
        assert_eq!(entry_tries("ostree-2+3.conf"), (3, 0));
        assert_eq!(entry_tries("ostree-2+2-1.conf"), (2, 1));
        assert_eq!(entry_tries("ostree-2+0-3.conf"), (0, 3));
        assert_eq!(entry_tries("ostree-1-testos+3.conf"), (3, 0));
        // Not counters: nothing after the +, a sign, a bad DONE, overflow;
        // and a stateroot with a + in it (the last + is the one read).
        for junk in ["ostree-2+.conf", "ostree-2+-1.conf", "ostree-2+3-.conf", "ostree-2+99999999999999999999.conf", "ostree-1-my+os.conf"] {
            assert_eq!(entry_tries(junk), (0, 0), "{junk}");
        }
    }

    const REAL: &str = "title Test OS 1 1.0 (ostree:0)\nversion 1\noptions root=LABEL=root ostree=/ostree/boot.1/testos/abc/0\nlinux /ostree/testos-abc/vmlinuz-6.1.0-test\ninitrd /ostree/testos-abc/initramfs-6.1.0-test.img\n";

    #[test]
    fn roundtrip_real_entry() {
        let e = BlsEntry::parse(REAL).unwrap();
        assert_eq!(e.get("title"), Some("Test OS 1 1.0 (ostree:0)"));
        assert_eq!(e.get("version"), Some("1"));
        assert_eq!(e.serialize(), REAL);
    }

    #[test]
    fn set_inserts_in_ostree_order() {
        let mut e = BlsEntry::default();
        e.set("initrd", "/i");
        e.set("linux", "/l");
        e.set("title", "T");
        e.set("options", "a=b");
        e.set("version", "3");
        e.set("devicetree", "/d");
        assert_eq!(
            e.serialize(),
            "title T\nversion 3\noptions a=b\ndevicetree /d\nlinux /l\ninitrd /i\n"
        );
        e.set("options", "c");
        assert_eq!(e.options().as_deref(), Some("c"));
    }

    #[test]
    fn junk_is_rejected_with_line() {
        let err = BlsEntry::parse("title x\n\u{1}\u{2}garbage here\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = BlsEntry::parse("title x\nlinux\n").unwrap_err();
        assert!(err.message.contains("no value"), "{err}");
        let err = BlsEntry::parse("title x\ntitle y\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{err}");
    }

    #[test]
    fn comments_blank_and_repeats() {
        let e = BlsEntry::parse("# c\n\ntitle  x y \noptions a\noptions b\ninitrd /1\ninitrd /2\n").unwrap();
        assert_eq!(e.get("title"), Some("x y"));
        assert_eq!(e.options().as_deref(), Some("a b"));
    }
}
