//! Names ostree gives to deployments, boot links and kernel directories.

/// `$csum.$serial`, the directory name of a deployment.
pub fn parse_deploy_name(name: &str) -> Option<(&str, u32)> {
    let (csum, serial) = name.rsplit_once('.')?;
    if csum.is_empty() || !csum.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((csum, serial.parse().ok()?))
}

/// A stateroot name must be a single path component that ostree accepts.
pub fn valid_stateroot(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
}

/// The parsed value of `ostree=/ostree/boot.N/$stateroot/$bootcsum/$bootserial`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OstreeKarg {
    pub bootversion: u32,
    pub stateroot: String,
    pub bootcsum: String,
    pub bootserial: u32,
}

/// Parse the `ostree=` kernel argument value in the form ostree writes.
pub fn parse_ostree_karg(value: &str) -> Result<OstreeKarg, String> {
    let rest = value
        .strip_prefix("/ostree/boot.")
        .ok_or_else(|| format!("ostree={value} does not start with /ostree/boot.N/"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() != 4 {
        return Err(format!(
            "ostree={value} is not /ostree/boot.N/STATEROOT/BOOTCSUM/SERIAL"
        ));
    }
    let bootversion = match parts[0] {
        "0" => 0,
        "1" => 1,
        other => return Err(format!("ostree={value}: boot version {other:?} is not 0 or 1")),
    };
    if !valid_stateroot(parts[1]) {
        return Err(format!("ostree={value}: invalid stateroot {:?}", parts[1]));
    }
    if parts[2].len() != 64 || !parts[2].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("ostree={value}: invalid boot checksum {:?}", parts[2]));
    }
    let bootserial = parts[3]
        .parse()
        .map_err(|_| format!("ostree={value}: invalid boot serial {:?}", parts[3]))?;
    Ok(OstreeKarg {
        bootversion,
        stateroot: parts[1].to_string(),
        bootcsum: parts[2].to_string(),
        bootserial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_names() {
        assert_eq!(parse_deploy_name("abc12.3"), Some(("abc12", 3)));
        assert_eq!(parse_deploy_name("abc12.3.origin"), None);
        assert_eq!(parse_deploy_name("ABC.1"), None);
        assert_eq!(parse_deploy_name("abc."), None);
    }

    #[test]
    fn ostree_karg() {
        let c = "a".repeat(64);
        let k = parse_ostree_karg(&format!("/ostree/boot.1/os/{c}/2")).unwrap();
        assert_eq!((k.bootversion, k.stateroot.as_str(), k.bootserial), (1, "os", 2));
        assert!(parse_ostree_karg(&format!("/ostree/boot.1/../{c}/2")).is_err());
        assert!(parse_ostree_karg("/ostree/boot.2/os/x/0").is_err());
        assert!(parse_ostree_karg("/etc/passwd").is_err());
    }

    #[test]
    fn stateroots() {
        assert!(valid_stateroot("fedora-coreos"));
        assert!(!valid_stateroot(".."));
        assert!(!valid_stateroot("a/b"));
        assert!(!valid_stateroot(""));
    }
}
