//! `OSTREE_SYSROOT_OPTS`: the switches libostree reads from the environment
//! (`ostree-sysroot.c`, `globalopt_keys`), honoured here with the same
//! spelling so that one setting (a unit's `Environment=`, a shell) governs
//! both tools.

/// The switches treeboot knows. Others are ignored, as GLib's
/// `g_parse_debug_string` ignores unknown keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SysrootOpts {
    /// `bootloader-naming-1`: boot entries named `ostree-N-STATEROOT.conf`,
    /// as before ostree 2024.5, instead of `ostree-N.conf` (ostree#2961:
    /// GRUB's BLS support sorts entries by file name).
    pub bootloader_naming_1: bool,
}

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
}
