//! systemd unit names for paths, as `systemd-escape --path --suffix=S`
//! makes them (systemd.unit(5), "String Escaping for Inclusion in Unit
//! Names"): the path without its outer and doubled slashes, `/` as `-`,
//! and every byte but ASCII letters, digits, `:`, `_` and a `.` that does
//! not lead as `\xNN`. `/` alone is `-`.

/// The unit name of `path` with `suffix` (`mount`, `automount`, ...).
pub fn path_unit(path: &str, suffix: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() {
        return format!("-.{suffix}");
    }
    let joined = parts.join("/");
    let mut out = String::with_capacity(joined.len() + suffix.len() + 1);
    for (i, b) in joined.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('.');
    out.push_str(suffix);
    out
}

#[cfg(test)]
mod tests {
    use super::path_unit;

    #[test]
    fn as_systemd_escape_writes_them() {
        // Each checked against `systemd-escape --path --suffix=mount`.
        assert_eq!(path_unit("/run/nextroot/usr", "mount"), "run-nextroot-usr.mount");
        assert_eq!(path_unit("/", "mount"), "-.mount");
        assert_eq!(path_unit("/var/lib/my-data/", "mount"), "var-lib-my\\x2ddata.mount");
        assert_eq!(path_unit("//run//a b", "mount"), "run-a\\x20b.mount");
        assert_eq!(path_unit("/.hidden/x.y", "mount"), "\\x2ehidden-x.y.mount");
    }
}
