//! GLib key files, as used for `.origin` files and `prepare-root.conf`.
//!
//! The model keeps every line it read; edits touch only the key they name,
//! so groups written by other tools (`[rpmostree]`, ...) keep every key.
//! The output is what libostree writes back (`g_key_file_to_data()` of a
//! file loaded without comments or translations), byte for byte.
//!
//! What `GKeyFile` accepts is accepted (glib 2.74's `gkeyfile.c`): leading
//! whitespace, `#` comments, spaces around `=`, localized keys
//! (`name[de]=...`, kept as the key `name[de]`), a group given twice (its
//! keys join the first one, as GLib merges them, and so does the output),
//! and values with `\s \n \t \r \\` escapes, which [`KeyFile::get`]
//! decodes and [`KeyFile::set`] writes as `g_key_file_set_string` does.

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

/// A key name, or a localized one: `name[locale]`.
fn valid_key(k: &str) -> bool {
    let plain = |n: &str| !n.is_empty() && !n.contains(['[', ']', '=']) && !n.chars().any(|c| c.is_control());
    match k.split_once('[') {
        None => plain(k),
        Some((name, rest)) => plain(name) && rest.strip_suffix(']').is_some_and(|loc| plain(loc) && !loc.contains(' ')),
    }
}

/// A value as `g_key_file_get_string` returns it: `\s \n \t \r \\`
/// decoded. GLib refuses other escapes; they are kept as written here (an
/// origin is shown, not interpreted, beyond its refspec).
fn unescape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains('\\') {
        return v.into();
    }
    let mut out = String::with_capacity(v.len());
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out.into()
}

/// A value as `g_key_file_set_string` writes it: a leading space as `\s`,
/// newlines, tabs, carriage returns and backslashes escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            ' ' if i == 0 => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
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
        let mut cur: Option<usize> = None;
        for (n, raw) in text.lines().enumerate() {
            let lineno = n + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                match cur {
                    Some(i) => kf.groups[i].lines.push(Line::Raw(raw.to_string())),
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
                // A group given again continues the first one (GLib merges
                // them): the lines that follow go there.
                cur = Some(match kf.groups.iter().position(|g| g.name == name) {
                    Some(i) => i,
                    None => {
                        kf.groups.push(Group {
                            name: name.to_string(),
                            lines: Vec::new(),
                        });
                        kf.groups.len() - 1
                    }
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
            let Some(g) = cur.map(|i| &mut kf.groups[i]) else {
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

    /// The value of a key, unescaped; a key given twice yields its last
    /// value, as in GLib.
    pub fn get(&self, group: &str, key: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.raw(group, key).map(unescape)
    }

    /// The value of a key as written in the file.
    fn raw(&self, group: &str, key: &str) -> Option<&str> {
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
        match self.raw(group, key).map(str::trim) {
            None => Ok(None),
            Some("true") | Some("1") => Ok(Some(true)),
            Some("false") | Some("0") => Ok(Some(false)),
            Some(other) => Err(KeyFileError {
                line: 0,
                message: format!("[{group}] {key}={other:?} is not a boolean (true or false)"),
            }),
        }
    }

    /// Set a key (escaped as `g_key_file_set_string` does).
    pub fn set(&mut self, group: &str, key: &str, value: &str) {
        let value = &escape(value);
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

    /// Remove a group and its keys (`g_key_file_remove_group`).
    pub fn remove_group(&mut self, group: &str) -> bool {
        let before = self.groups.len();
        self.groups.retain(|g| g.name != group);
        before != self.groups.len()
    }

    /// The file as libostree writes it back: `g_key_file_to_data()` of a
    /// key file loaded without `G_KEY_FILE_KEEP_COMMENTS` or
    /// `G_KEY_FILE_KEEP_TRANSLATIONS` (libostree's flags for origins), in
    /// the C locale: every group and key in order, `key=value` as read,
    /// groups separated by one blank line; comments, blank lines and
    /// localized keys (`name[de]`) are not written.
    pub fn serialize(&self) -> String {
        let mut out = String::new();
        for g in &self.groups {
            if out.len() >= 2 && !out.ends_with("\n\n") {
                out.push('\n');
            }
            out.push('[');
            out.push_str(&g.name);
            out.push_str("]\n");
            for l in &g.lines {
                if let Line::KeyValue(k, v) = l {
                    if k.contains('[') {
                        continue;
                    }
                    out.push_str(k);
                    out.push('=');
                    out.push_str(v);
                    out.push('\n');
                }
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
        let text = "# made by rpm-ostree\n[origin]\nrefspec=fedora:fedora/x86_64/coreos/stable\n\n[rpmostree]\nrequested-packages=vim;tmux;\n# a comment\nunknown-key=1\n";
        let mut kf = KeyFile::parse(text).unwrap();
        kf.set("origin", "refspec", "other");
        // Every group and key, as GKeyFile writes them (it drops comments).
        assert_eq!(kf.serialize(), "[origin]\nrefspec=other\n\n[rpmostree]\nrequested-packages=vim;tmux;\nunknown-key=1\n");
        assert_eq!(kf.get("origin", "refspec").as_deref(), Some("other"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(KeyFile::parse("refspec=x\n").unwrap_err().line, 1);
        assert_eq!(KeyFile::parse("[origin]\njunk\n").unwrap_err().line, 2);
        assert_eq!(KeyFile::parse("[origin\n").unwrap_err().line, 1);
        assert!(KeyFile::parse_bytes(b"[origin]\nrefspec=\xff\n").is_err());
        let kf = KeyFile::parse("[s]\nreadonly=maybe\n").unwrap();
        assert!(kf.get_bool("s", "readonly").is_err());
    }

    #[test]
    fn what_gkeyfile_accepts() {
        let text = "  # indented comment\n[origin]\n  refspec = os:stable\nname[de]=Ursprung\n\n[other]\nx=1\n[origin]\nrefspec=os:testing\nnote=\\sa\\tb\\\\c\\nd\n";
        let kf = KeyFile::parse(text).unwrap();
        assert_eq!(kf.groups().collect::<Vec<_>>(), ["origin", "other"], "a repeated group joins the first");
        assert_eq!(kf.get("origin", "refspec").as_deref(), Some("os:testing"), "the last value wins");
        assert_eq!(kf.get("origin", "name[de]").as_deref(), Some("Ursprung"));
        assert_eq!(kf.get("origin", "note").as_deref(), Some(" a\tb\\c\nd"));
        assert_eq!(kf.get("other", "x").as_deref(), Some("1"));
        assert!(KeyFile::parse("[o]\nname[de=x\n").is_err());
        assert!(KeyFile::parse("[o]\nname[d e]=x\n").is_err());
    }

    #[test]
    fn set_escapes_as_glib_does() {
        let mut kf = KeyFile::new();
        kf.set("g", "k", " lead\\and\nnew");
        assert_eq!(kf.serialize(), "[g]\nk=\\slead\\\\and\\nnew\n");
        assert_eq!(KeyFile::parse(&kf.serialize()).unwrap().get("g", "k").as_deref(), Some(" lead\\and\nnew"));
    }
}
