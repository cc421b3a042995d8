//! `prepare-root.conf`: `usr/lib/ostree/prepare-root.conf`, then
//! `etc/ostree/prepare-root.conf` of the deployment (later files override
//! earlier ones key by key).

use super::keyfile::KeyFile;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Composefs {
    #[default]
    No,
    Maybe,
    Yes,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrepareRootConfig {
    /// `[sysroot] readonly`: the physical root at /sysroot is mounted read-only.
    pub sysroot_readonly: bool,
    /// `[etc] transient`: /etc is an overlay on a tmpfs over `usr/etc`.
    pub etc_transient: bool,
    /// `[root] transient`: / is a writable overlay (upper on tmpfs).
    pub root_transient: bool,
    /// `[composefs] enabled`.
    pub composefs: Composefs,
}

const KNOWN: &[(&str, &str)] = &[
    ("sysroot", "readonly"),
    ("etc", "transient"),
    ("root", "transient"),
    ("composefs", "enabled"),
    ("composefs", "keypath"),
];

impl PrepareRootConfig {
    /// Apply one file over the current values. Returns warnings (unknown
    /// groups and keys); an invalid value is an error naming the key.
    pub fn apply(&mut self, text: &str) -> Result<Vec<String>, String> {
        let kf = KeyFile::parse(text).map_err(|e| e.to_string())?;
        let mut warnings = Vec::new();
        for g in kf.groups() {
            for k in kf.keys(g) {
                if !KNOWN.contains(&(g, k)) {
                    warnings.push(format!("unknown key [{g}] {k}, ignored"));
                }
            }
        }
        let b = |g: &str, k: &str| kf.get_bool(g, k).map_err(|e| e.to_string());
        if let Some(v) = b("sysroot", "readonly")? {
            self.sysroot_readonly = v;
        }
        if let Some(v) = b("etc", "transient")? {
            self.etc_transient = v;
        }
        if let Some(v) = b("root", "transient")? {
            self.root_transient = v;
        }
        if let Some(v) = kf.get("composefs", "enabled") {
            self.composefs = match v.trim() {
                "yes" | "true" | "1" | "signed" | "verity" => Composefs::Yes,
                "maybe" => Composefs::Maybe,
                "no" | "false" | "0" => Composefs::No,
                other => return Err(format!("[composefs] enabled={other:?} is not yes, no, maybe or signed")),
            };
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layering_warnings_and_errors() {
        let mut c = PrepareRootConfig::default();
        let w = c.apply("[sysroot]\nreadonly=true\n[etc]\ntransient=true\nfrobnicate=1\n").unwrap();
        assert!(c.sysroot_readonly && c.etc_transient);
        assert_eq!(w, vec!["unknown key [etc] frobnicate, ignored"]);
        c.apply("[etc]\ntransient=false\n").unwrap();
        assert!(!c.etc_transient && c.sysroot_readonly, "later files override key by key");
        assert!(c.apply("[root]\ntransient=perhaps\n").unwrap_err().contains("[root] transient"));
        assert!(c.apply("[composefs]\nenabled=maybe\n").is_ok());
        assert_eq!(c.composefs, Composefs::Maybe);
        assert!(c.apply("[composefs]\nenabled=sometimes\n").is_err());
        assert!(c.apply("readonly=true\n").is_err());
    }
}
