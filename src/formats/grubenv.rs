//! GRUB's environment block (`/boot/grub/grubenv`): what `load_env` reads
//! and `save_env` writes in place, so always exactly 1024 bytes.
//!
//! The layout (GRUB's `lib/envblk.c`): the line `# GRUB Environment Block`,
//! then `NAME=VALUE` lines (a `\` or a newline in a value is escaped by a
//! `\`), then `#` up to the size. Lines of other writers (Debian's
//! `saved_entry`, `recordfail`, ...) are kept as they are.

use anyhow::{bail, Result};

/// The size GRUB creates and expects: `save_env` writes in place and never
/// grows the file.
pub const SIZE: usize = 1024;
const HEADER: &str = "# GRUB Environment Block\n";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrubEnv {
    /// `NAME=VALUE` pairs in file order; values unescaped.
    vars: Vec<(String, String)>,
}

impl GrubEnv {
    /// Parse a block. A file that does not start with the header is an
    /// error (GRUB refuses it too and would not save into it).
    pub fn parse(data: &[u8]) -> Result<Self> {
        let Some(body) = data.strip_prefix(HEADER.as_bytes()) else {
            bail!("not a GRUB environment block (no `# GRUB Environment Block` line)");
        };
        let text = String::from_utf8_lossy(body);
        let mut vars = Vec::new();
        let mut chars = text.chars().peekable();
        // Read line by line, honouring `\` escapes.
        loop {
            match chars.peek() {
                None | Some('#') => break,
                Some('\n') => {
                    chars.next();
                    continue;
                }
                _ => {}
            }
            let mut line = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            line.push(n);
                        }
                    }
                    '\n' => break,
                    c => line.push(c),
                }
            }
            if let Some((k, v)) = line.split_once('=') {
                vars.push((k.to_string(), v.to_string()));
            }
        }
        Ok(GrubEnv { vars })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Set a variable (replacing its value, or appending it).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(v) => v.1 = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
    }

    /// Keep only the variables for which `keep(name)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.vars.retain(|(k, _)| keep(k));
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(k, _)| k.as_str())
    }

    /// The block, padded to [`SIZE`]; an error when the variables do not
    /// fit (GRUB could not read them either).
    pub fn serialize(&self) -> Result<Vec<u8>> {
        let mut out = String::from(HEADER);
        for (k, v) in &self.vars {
            out.push_str(k);
            out.push('=');
            for c in v.chars() {
                if c == '\\' || c == '\n' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('\n');
        }
        if out.len() > SIZE {
            bail!("the GRUB environment block would be {} bytes, more than its {SIZE}", out.len());
        }
        let mut bytes = out.into_bytes();
        bytes.resize(SIZE, b'#');
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_other_writers_lines() {
        let mut data = b"# GRUB Environment Block\nsaved_entry=gnulinux-x\nrecordfail=1\nodd=a\\\\b\\\nc\n".to_vec();
        data.resize(SIZE, b'#');
        let env = GrubEnv::parse(&data).unwrap();
        assert_eq!(env.get("saved_entry"), Some("gnulinux-x"));
        assert_eq!(env.get("odd"), Some("a\\b\nc"));
        assert_eq!(env.serialize().unwrap(), data);
    }

    #[test]
    fn padding_and_limits() {
        let empty = GrubEnv::default().serialize().unwrap();
        assert_eq!(empty.len(), SIZE);
        assert!(empty.starts_with(HEADER.as_bytes()) && empty.ends_with(b"##"));
        assert!(GrubEnv::parse(&empty).unwrap().names().next().is_none());
        let mut big = GrubEnv::default();
        big.vars.push(("x".into(), "y".repeat(SIZE)));
        assert!(big.serialize().unwrap_err().to_string().contains("more than its 1024"));
        assert!(GrubEnv::parse(b"junk").is_err());
    }

    #[test]
    fn grub_editenv_reads_what_we_write() {
        // GRUB's own tool, when the host has it: the same block, read back.
        if std::process::Command::new("grub-editenv").arg("--version").output().is_err() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("grubenv");
        let mut env = GrubEnv::default();
        env.set("treeboot_tries_abc_0", "2");
        std::fs::write(&f, env.serialize().unwrap()).unwrap();
        let out = std::process::Command::new("grub-editenv").arg(&f).arg("list").output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "treeboot_tries_abc_0=2\n");
        // ...and what it writes, we read.
        let st = std::process::Command::new("grub-editenv").arg(&f).args(["set", "recordfail=1"]).status().unwrap();
        assert!(st.success());
        let back = GrubEnv::parse(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(back.get("recordfail"), Some("1"));
        assert_eq!(back.get("treeboot_tries_abc_0"), Some("2"));
    }
}
