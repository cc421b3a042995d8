//! dpkg's status file (`/var/lib/dpkg/status`, deb-control(5) paragraphs):
//! the installed packages, for `treeboot diff`'s package diff.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Installed packages: name (`name:arch` when one name is installed for
/// several architectures) to version.
pub type Packages = BTreeMap<String, String>;

/// The packages whose `Status` says `installed` (not `config-files`,
/// `half-installed`, ...). Continuation lines and unknown fields are
/// skipped; a paragraph without `Package` or `Version` is ignored.
pub fn parse_status(text: &str) -> Packages {
    let mut found: Vec<(String, String, String)> = Vec::new();
    for para in text.split("\n\n") {
        let (mut name, mut arch, mut version, mut installed) = (None, "", None, false);
        for line in para.lines() {
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else { continue };
            let v = v.trim();
            match k {
                "Package" => name = Some(v),
                "Architecture" => arch = v,
                "Version" => version = Some(v),
                "Status" => installed = v.split_whitespace().nth(2) == Some("installed"),
                _ => {}
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed) {
            found.push((n.to_string(), arch.to_string(), v.to_string()));
        }
    }
    let mut out = Packages::new();
    for (n, a, v) in &found {
        let several = found.iter().filter(|(m, ..)| m == n).count() > 1;
        out.insert(if several { format!("{n}:{a}") } else { n.clone() }, v.clone());
    }
    out
}

/// Order two Debian versions as dpkg does (deb-version(7)); versions that
/// do not parse compare as strings.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (a.parse::<debversion::Version>(), b.parse::<debversion::Version>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: base-files
Status: install ok installed
Priority: required
Architecture: amd64
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy.

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u7

Package: libc6
Status: install ok installed
Architecture: i386
Multi-Arch: same
Version: 2.36-9+deb12u7

Package: oldconf
Status: deinstall ok config-files
Architecture: all
Version: 1.0

Package: broken
Status: install reinstreq half-installed
Architecture: all
Version: 2.0
";

    #[test]
    fn installed_packages_only_with_arch_where_ambiguous() {
        let p = parse_status(STATUS);
        assert_eq!(
            p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            ["base-files=12.4+deb12u5", "libc6:amd64=2.36-9+deb12u7", "libc6:i386=2.36-9+deb12u7"]
        );
    }

    #[test]
    fn debian_version_order() {
        assert_eq!(compare_versions("1.0~rc1", "1.0"), Ordering::Less, "a tilde sorts before anything");
        assert_eq!(compare_versions("1:0.9", "2.0"), Ordering::Greater, "the epoch first");
        assert_eq!(compare_versions("2.36-9+deb12u7", "2.36-9+deb12u10"), Ordering::Less, "numbers as numbers");
        assert_eq!(compare_versions("1.0-1", "1.0-1"), Ordering::Equal);
    }
}
