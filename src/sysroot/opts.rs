//! What shapes the boot entries beyond the deployment list: the switches
//! libostree reads from the environment, `OSTREE_SYSROOT_OPTS`
//! (`ostree-sysroot.c`, `globalopt_keys`), honoured here with the same
//! spelling so that one setting (a unit's `Environment=`, a shell) governs
//! both tools; and the `[sysroot]` keys of the repository config that
//! libostree reads for them (`reload_sysroot_config` in `ostree-repo.c`).

use anyhow::{bail, Result};
use cap_std_ext::cap_std::fs::Dir;
use cap_std_ext::dirext::CapStdExtDirExt;
use fn_error_context::context;

use crate::formats::keyfile::KeyFile;
use crate::formats::prepareroot::Composefs;

/// The switches and settings treeboot knows. Unknown switches are ignored,
/// as GLib's `g_parse_debug_string` ignores unknown keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SysrootOpts {
    /// `bootloader-naming-1`: boot entries named `ostree-N-STATEROOT.conf`,
    /// as before ostree 2024.5, instead of `ostree-N.conf` (ostree#2961:
    /// GRUB's BLS support sorts entries by file name).
    pub bootloader_naming_1: bool,
    /// `[sysroot] boot-counting-tries` of `ostree/repo/config` (0 to 5, 0
    /// by default: off): a new deployment's entry gets `+TRIES` in its name
    /// (`ostree-2+3.conf`), for systemd-boot's boot counting; ostree 2025.3.
    pub boot_counting_tries: u8,
    /// `[sysroot] bootprefix` of `ostree/repo/config` (false by default):
    /// the entries' kernel, initramfs and device tree paths start with
    /// `/boot` (libostree since 2022.8, after bookworm's 2022.7), for
    /// bootloaders that read them from the root file system with `/boot` on
    /// it, such as libostree's own `grub-mkconfig` menu.
    pub bootprefix: bool,
    /// `[ex-integrity] composefs` of `ostree/repo/config` (a tristate, no
    /// by default): `yes` makes every new deployment get a composefs image,
    /// whatever its prepare-root.conf says (libostree's
    /// `composefs_wanted`).
    pub composefs: Composefs,
}

/// Where the repository config is, relative to the sysroot.
const REPO_CONFIG: &str = "ostree/repo/config";

impl SysrootOpts {
    /// Keys separated by `:`, `;`, `,`, spaces or tabs, as
    /// `g_parse_debug_string` splits them; case-insensitive, `-` and `_`
    /// alike.
    pub fn parse(s: &str) -> Self {
        let mut o = SysrootOpts::default();
        for k in s.split([':', ';', ',', ' ', '\t']).filter(|k| !k.is_empty()) {
            let k = k.to_ascii_lowercase().replace('_', "-");
            if k == "bootloader-naming-1" || k == "all" {
                o.bootloader_naming_1 = true;
            }
        }
        o
    }

    pub fn from_env() -> Self {
        std::env::var("OSTREE_SYSROOT_OPTS").map(|v| Self::parse(&v)).unwrap_or_default()
    }

    /// The environment's switches and the repository config of the
    /// sysroot `root`. A config that does not parse, or a
    /// `boot-counting-tries` that is not a number from 0 to 5, is an error
    /// naming the file (libostree refuses to open such a repository).
    #[context("Reading {REPO_CONFIG}")]
    pub fn load(root: &Dir) -> Result<Self> {
        let mut o = Self::from_env();
        if let Some(text) = root.read_to_string_optional(REPO_CONFIG)? {
            let kf = repo_config(&text)?;
            o.boot_counting_tries = tries_of(&kf)?;
            o.bootprefix = bootprefix_of(&kf)?;
            o.composefs = composefs_of(&kf)?;
        }
        Ok(o)
    }
}

fn repo_config(config: &str) -> Result<KeyFile> {
    KeyFile::parse(config).map_err(|e| anyhow::anyhow!("{REPO_CONFIG}: {e}"))
}

/// `[sysroot] boot-counting-tries` of a repository config, as
/// `reload_sysroot_config` reads it (`g_ascii_string_to_unsigned`, base 10,
/// 0 to 5; absent: 0).
pub fn boot_counting_tries(config: &str) -> Result<u8> {
    tries_of(&repo_config(config)?)
}

fn tries_of(kf: &KeyFile) -> Result<u8> {
    let Some(v) = kf.get("sysroot", "boot-counting-tries") else { return Ok(0) };
    match v.parse::<u8>() {
        Ok(n) if n <= 5 && !v.starts_with('+') => Ok(n),
        _ => bail!("{REPO_CONFIG}: [sysroot] boot-counting-tries={v}: not a number from 0 to 5"),
    }
}

/// `[sysroot] bootprefix` of a repository config, a GKeyFile boolean
/// (absent: false), as `reload_sysroot_config` reads it; anything else is
/// an error, as it is for libostree.
pub fn bootprefix(config: &str) -> Result<bool> {
    bootprefix_of(&repo_config(config)?)
}

fn composefs_of(kf: &KeyFile) -> Result<Composefs> {
    let Some(v) = kf.get("ex-integrity", "composefs") else { return Ok(Composefs::No) };
    crate::formats::prepareroot::parse_tristate(&v)
        .ok_or_else(|| anyhow::anyhow!("{REPO_CONFIG}: [ex-integrity] composefs={v}: not yes, no or maybe"))
}

fn bootprefix_of(kf: &KeyFile) -> Result<bool> {
    Ok(kf.get_bool("sysroot", "bootprefix").map_err(|e| anyhow::anyhow!("{REPO_CONFIG}: {}", e.message))?.unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_as_glib_parses_debug_strings() {
        assert!(!SysrootOpts::parse("").bootloader_naming_1);
        assert!(SysrootOpts::parse("bootloader-naming-1").bootloader_naming_1);
        assert!(SysrootOpts::parse("no-early-prune,BOOTLOADER_NAMING_1").bootloader_naming_1);
        assert!(!SysrootOpts::parse("no-early-prune:bootloader-naming-2").bootloader_naming_1);
    }

    #[test]
    fn bootprefix_from_the_repo_config() {
        assert!(!bootprefix("[core]\nmode=bare\n").unwrap());
        assert!(bootprefix("[sysroot]\nbootprefix=true\n").unwrap());
        assert!(bootprefix("[sysroot]\nbootprefix=1\n").unwrap());
        assert!(!bootprefix("[sysroot]\nbootprefix=false\n").unwrap());
        let e = bootprefix("[sysroot]\nbootprefix=yes\n").unwrap_err().to_string();
        assert!(e.contains("ostree/repo/config") && e.contains("not a boolean"), "{e}");
    }

    #[test]
    fn boot_counting_tries_from_the_repo_config() {
        assert_eq!(boot_counting_tries("[core]\nrepo_version=1\nmode=bare\n").unwrap(), 0);
        assert_eq!(boot_counting_tries("[core]\nmode=bare\n[sysroot]\nboot-counting-tries=3\n").unwrap(), 3);
        assert_eq!(boot_counting_tries("[sysroot]\nboot-counting-tries=0\n").unwrap(), 0);
        for bad in ["6", "-1", "three", "", "+3", "3 tries"] {
            let e = boot_counting_tries(&format!("[sysroot]\nboot-counting-tries={bad}\n")).unwrap_err().to_string();
            assert!(e.contains("ostree/repo/config") && e.contains("not a number from 0 to 5"), "{bad}: {e}");
        }
    }
}
