//! os-release(5): `KEY=value` lines with shell-style quoting.

use std::collections::HashMap;

pub fn parse(text: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        m.insert(k.trim().to_string(), unquote(v.trim()));
    }
    m
}

fn unquote(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"') | (None, '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (_, c) => out.push(c),
        }
    }
    out
}

/// The name ostree puts in entry titles: `PRETTY_NAME`, else `ID`.
pub fn title_name(text: &str) -> String {
    let m = parse(text);
    m.get("PRETTY_NAME")
        .or_else(|| m.get("ID"))
        .cloned()
        .unwrap_or_else(|| "(Unknown)".to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        let m = super::parse("NAME=\"Test OS\"\nID=testos\nPRETTY_NAME='A \\'b'\n# x\nX=\"a\\\"b\"\n");
        assert_eq!(m["NAME"], "Test OS");
        assert_eq!(m["ID"], "testos");
        assert_eq!(m["X"], "a\"b");
        assert_eq!(super::title_name("ID=foo\n"), "foo");
    }
}
