//! GLib key files, as used for `.origin` files and `prepare-root.conf`.
//!
//! The model keeps every line it read (comments and blank lines included),
//! so that groups written by other tools (`[rpmostree]`, ...) come back out
//! byte for byte. Edits touch only the key they name. The output follows
//! `g_key_file_to_data()`: a new group is preceded by one blank line.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A comment or blank line, kept verbatim.
    Raw(String),
    KeyValue(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyFile {
    /// Comments before the first group.
    head: Vec<String>,
    groups: Vec<Group>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct KeyFileError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}
impl std::error::Error for KeyFileError {}

fn valid_group_name(n: &str) -> bool {
    !n.is_empty() && !n.contains(['[', ']']) && !n.chars().any(|c| c.is_control())
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && !k.contains(['[', ']', '=']) && !k.chars().any(|c| c.is_control())
}

impl KeyFile {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn parse_bytes(data: &[u8]) -> Result<Self, KeyFileError> {
        let text = std::str::from_utf8(data).map_err(|e| KeyFileError {
            line: 1 + data[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count(),
            message: "not valid UTF-8".into(),
        })?;
        Self::parse(text)
    }

    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let mut kf = KeyFile::default();
        for (n, raw) in text.lines().enumerate() {
            let lineno = n + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                match kf.groups.last_mut() {
                    Some(g) => g.lines.push(Line::Raw(raw.to_string())),
                    None => kf.head.push(raw.to_string()),
                }
                continue;
            }
            if let Some(inner) = trimmed.strip_prefix('[') {
                let name = inner.strip_suffix(']').filter(|n| valid_group_name(n)).ok_or_else(|| {
                    KeyFileError {
                        line: lineno,
                        message: format!("invalid group header {:?}", short(trimmed)),
                    }
                })?;
                if kf.groups.iter().any(|g| g.name == name) {
                    return Err(KeyFileError {
                        line: lineno,
                        message: format!("group [{name}] appears twice"),
                    });
                }
                kf.groups.push(Group {
                    name: name.to_string(),
                    lines: Vec::new(),
                });
                continue;
            }
            let Some((k, v)) = raw.split_once('=') else {
                return Err(KeyFileError {
                    line: lineno,
                    message: format!(
                        "{:?} is not a key=value pair, a [group] or a comment",
                        short(trimmed)
                    ),
                });
            };
            let k = k.trim();
            if !valid_key(k) {
                return Err(KeyFileError {
                    line: lineno,
                    message: format!("invalid key {:?}", short(k)),
                });
            }
            let Some(g) = kf.groups.last_mut() else {
                return Err(KeyFileError {
                    line: lineno,
                    message: "key=value line before the first [group]".into(),
                });
            };
            g.lines
                .push(Line::KeyValue(k.to_string(), v.trim_start().to_string()));
        }
        Ok(kf)
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.name == group)
    }

    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|g| g.name.as_str())
    }

    /// Keys of a group in file order.
    pub fn keys(&self, group: &str) -> Vec<&str> {
        self.groups
            .iter()
            .filter(|g| g.name == group)
            .flat_map(|g| g.lines.iter())
            .filter_map(|l| match l {
                Line::KeyValue(k, _) => Some(k.as_str()),
                Line::Raw(_) => None,
            })
            .collect()
    }

    /// The value of a key; a key given twice yields its last value, as in GLib.
    pub fn get(&self, group: &str, key: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|g| g.name == group)?
            .lines
            .iter()
            .rev()
            .find_map(|l| match l {
                Line::KeyValue(k, v) if k == key => Some(v.as_str()),
                _ => None,
            })
    }

    /// A boolean as GLib reads it (`true`/`false`, also `1`/`0`).
    pub fn get_bool(&self, group: &str, key: &str) -> Result<Option<bool>, KeyFileError> {
        match self.get(group, key).map(str::trim) {
            None => Ok(None),
            Some("true") | Some("1") => Ok(Some(true)),
            Some("false") | Some("0") => Ok(Some(false)),
            Some(other) => Err(KeyFileError {
                line: 0,
                message: format!("[{group}] {key}={other:?} is not a boolean (true or false)"),
            }),
        }
    }

    pub fn set(&mut self, group: &str, key: &str, value: &str) {
        let g = match self.groups.iter().position(|g| g.name == group) {
            Some(i) => &mut self.groups[i],
            None => {
                self.groups.push(Group {
                    name: group.to_string(),
                    lines: Vec::new(),
                });
                self.groups.last_mut().unwrap()
            }
        };
        for l in g.lines.iter_mut().rev() {
            if let Line::KeyValue(k, v) = l {
                if k == key {
                    *v = value.to_string();
                    return;
                }
            }
        }
        // Insert after the last key-value line, before trailing blank lines.
        let pos = g
            .lines
            .iter()
            .rposition(|l| matches!(l, Line::KeyValue(..)))
            .map(|p| p + 1)
            .unwrap_or(0);
        g.lines
            .insert(pos, Line::KeyValue(key.to_string(), value.to_string()));
    }

    /// Remove a key; the group stays, even when empty (as GLib does).
    pub fn remove_key(&mut self, group: &str, key: &str) -> bool {
        let Some(g) = self.groups.iter_mut().find(|g| g.name == group) else {
            return false;
        };
        let before = g.lines.len();
        g.lines
            .retain(|l| !matches!(l, Line::KeyValue(k, _) if k == key));
        before != g.lines.len()
    }

    pub fn serialize(&self) -> String {
        let mut out = String::new();
        for l in &self.head {
            out.push_str(l);
            out.push('\n');
        }
        for (i, g) in self.groups.iter().enumerate() {
            // GLib separates groups by a blank line; one that was read is kept
            // as the previous group's last raw line, so add one only if missing.
            if i > 0 && !out.ends_with("\n\n") {
                out.push('\n');
            }
            out.push('[');
            out.push_str(&g.name);
            out.push_str("]\n");
            for l in &g.lines {
                match l {
                    Line::Raw(r) => out.push_str(r),
                    Line::KeyValue(k, v) => {
                        out.push_str(k);
                        out.push('=');
                        out.push_str(v);
                    }
                }
                out.push('\n');
            }
        }
        out
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_unpin_matches_glib_output() {
        let mut kf = KeyFile::parse("[origin]\nrefspec=testos/stable\n").unwrap();
        kf.set("libostree-transient", "pinned", "true");
        assert_eq!(
            kf.serialize(),
            "[origin]\nrefspec=testos/stable\n\n[libostree-transient]\npinned=true\n"
        );
        let mut kf = KeyFile::parse(&kf.serialize()).unwrap();
        assert!(kf.remove_key("libostree-transient", "pinned"));
        // GLib keeps the emptied group; ostree's unpin leaves exactly this.
        assert_eq!(
            kf.serialize(),
            "[origin]\nrefspec=testos/stable\n\n[libostree-transient]\n"
        );
    }

    #[test]
    fn foreign_groups_survive() {
        let text = "# made by rpm-ostree\n[origin]\nrefspec=fedora:fedora/x86_64/coreos/stable\n\n[rpmostree]\nrequested-packages=vim;tmux;\n# keep me\nunknown-key=1\n";
        let mut kf = KeyFile::parse(text).unwrap();
        assert_eq!(kf.serialize(), text);
        kf.set("origin", "refspec", "other");
        assert!(kf.serialize().contains("requested-packages=vim;tmux;\n# keep me\nunknown-key=1\n"));
        assert_eq!(kf.get("origin", "refspec"), Some("other"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(KeyFile::parse("refspec=x\n").unwrap_err().line, 1);
        assert_eq!(KeyFile::parse("[origin]\njunk\n").unwrap_err().line, 2);
        assert_eq!(KeyFile::parse("[origin\n").unwrap_err().line, 1);
        assert_eq!(KeyFile::parse("[a]\n[a]\n").unwrap_err().line, 2);
        assert!(KeyFile::parse_bytes(b"[origin]\nrefspec=\xff\n").is_err());
        let kf = KeyFile::parse("[s]\nreadonly=maybe\n").unwrap();
        assert!(kf.get_bool("s", "readonly").is_err());
    }
}
