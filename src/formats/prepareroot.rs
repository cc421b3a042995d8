//! `prepare-root.conf`: `usr/lib/ostree/prepare-root.conf`, then
//! `etc/ostree/prepare-root.conf` of the deployment (later files override
//! earlier ones key by key).

use super::kargs::Kargs;
use super::keyfile::KeyFile;

/// `[composefs] enabled`, as a tristate: `maybe` mounts the image when the
/// deployment has one and boots without it otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Composefs {
    #[default]
    No,
    Maybe,
    Yes,
}

/// The kernel argument that overrides `[composefs] enabled` (libostree's).
pub const COMPOSEFS_KARG: &str = "ostree.prepare-root.composefs";

/// A deployment's prepare-root.conf files, relative to it, in the order
/// they apply (the later overrides the earlier key by key).
pub const FILES: [&str; 2] = ["usr/lib/ostree/prepare-root.conf", "etc/ostree/prepare-root.conf"];

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
    /// `enabled = verity` (or `signed`): every object the image names must
    /// have fs-verity with the digest the image records.
    pub composefs_verity: bool,
    /// `enabled = signed`: the image's digest must be signed.
    pub composefs_signed: bool,
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
            // As libostree: `signed` and `verity` are yes with a requirement;
            // the plain values reset both requirements.
            (self.composefs, self.composefs_verity, self.composefs_signed) = match v.trim() {
                "signed" => (Composefs::Yes, true, true),
                "verity" => (Composefs::Yes, true, false),
                other => (
                    parse_tristate(other)
                        .ok_or_else(|| format!("[composefs] enabled={other:?} is not yes, no, maybe, verity or signed"))?,
                    false,
                    false,
                ),
            };
        }
        Ok(warnings)
    }

    /// [`Self::apply_karg`] with the value of a command line's
    /// `ostree.prepare-root.composefs=`, when it has one.
    pub fn apply_kargs(&mut self, kargs: &Kargs) -> Result<(), String> {
        match kargs.get(COMPOSEFS_KARG) {
            Some(v) => self.apply_karg(v.trim_matches('"')),
            None => Ok(()),
        }
    }

    /// The kernel argument `ostree.prepare-root.composefs=` over the files,
    /// as libostree applies it: `signed` asks for a signed image; any other
    /// value turns off the signature, keeps a verity requirement the files
    /// made, and sets the tristate (`verity` is also taken, as in the files).
    pub fn apply_karg(&mut self, value: &str) -> Result<(), String> {
        match value {
            "signed" => (self.composefs, self.composefs_verity, self.composefs_signed) = (Composefs::Yes, true, true),
            "verity" => (self.composefs, self.composefs_verity, self.composefs_signed) = (Composefs::Yes, true, false),
            other => {
                self.composefs = parse_tristate(other)
                    .ok_or_else(|| format!("{COMPOSEFS_KARG}={other:?} is not yes, no, maybe, verity or signed"))?;
                self.composefs_signed = false;
            }
        }
        Ok(())
    }
}

/// GLib's and libostree's tristate spellings.
pub fn parse_tristate(v: &str) -> Option<Composefs> {
    match v.trim() {
        "yes" | "true" | "1" => Some(Composefs::Yes),
        "maybe" => Some(Composefs::Maybe),
        "no" | "false" | "0" => Some(Composefs::No),
        _ => None,
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

    #[test]
    fn composefs_values_and_the_kernel_argument() {
        let mut c = PrepareRootConfig::default();
        c.apply("[composefs]\nenabled=verity\n").unwrap();
        assert_eq!((c.composefs, c.composefs_verity, c.composefs_signed), (Composefs::Yes, true, false));
        c.apply("[composefs]\nenabled=signed\n").unwrap();
        assert_eq!((c.composefs, c.composefs_verity, c.composefs_signed), (Composefs::Yes, true, true));
        // A later file's plain value resets both requirements.
        c.apply("[composefs]\nenabled=yes\n").unwrap();
        assert_eq!((c.composefs, c.composefs_verity, c.composefs_signed), (Composefs::Yes, false, false));
        // The kernel argument: off wins over the files; a plain value keeps
        // the files' verity requirement but drops the signature.
        c.apply("[composefs]\nenabled=signed\n").unwrap();
        c.apply_karg("1").unwrap();
        assert_eq!((c.composefs, c.composefs_verity, c.composefs_signed), (Composefs::Yes, true, false));
        c.apply_karg("0").unwrap();
        assert_eq!(c.composefs, Composefs::No);
        c.apply_karg("maybe").unwrap();
        assert_eq!(c.composefs, Composefs::Maybe);
        c.apply_karg("verity").unwrap();
        assert_eq!((c.composefs, c.composefs_verity), (Composefs::Yes, true));
        let e = c.apply_karg("perhaps").unwrap_err();
        assert!(e.contains("ostree.prepare-root.composefs=\"perhaps\""), "{e}");
    }
}
