# Helpers sourced by the kola tests (the harness copies this file beside them).
# The tests run under `set -o pipefail`: a command that prints several lines
# is read whole before grep -q looks at it (`grep -q P <<<"$(cmd)"`), since
# `cmd | grep -q P` fails at random when grep leaves at its first match and
# cmd's next write ends it with SIGPIPE.
# The booted deployment's object of `treeboot status --json` (the objects
# are flat: one per line once split at "},{"), then one field of it.
booted_object() { treeboot status --json | tr -d ' \n' | sed 's/},{/}\n{/g' | grep '"booted":true'; }
booted_csum() { booted_object | grep -o '"checksum":"[0-9a-f]*"' | cut -d'"' -f4; }
booted_version() { booted_object | grep -o '"version":"[^"]*"' | cut -d'"' -f4; }
# A new commit on debian/test: the booted tree, /usr/share/kola/version
# holding VERSION, and the files of OVERLAY-DIR if one is given.
# No --no-xattrs (or any other filter): with one, ostree rewrites the
# metadata of every file of the base tree and reads all of it again, 7 s on
# the host and about two minutes in this emulated guest; without, the base
# tree's objects are reused as they are (0.04 s on the host).
new_commit() { # version [overlay-dir]
    local ov=${2:-/tmp/kola-ov-$1}
    mkdir -p "$ov/usr/share/kola"; echo "$1" > "$ov/usr/share/kola/version"
    ostree --repo=/sysroot/ostree/repo commit -b debian/test --tree=ref="$(booted_csum)" \
        --tree=dir="$ov" --add-metadata-string=version="$1" >/dev/null
}
fatal() { echo "FAIL: $*"; exit 1; }
# The object of the deployment whose version is VERSION (flat, as above;
# a nested boot_failure object ends with "}}").
dep_object() { treeboot status --json | tr -d '\n' | sed 's/}, *{/}\n{/g' | grep "\"version\": *\"$1\""; }
# One field of such an object: a string, a number, true/false or null
# (the spaces that indented the next line, before a closing brace, are not
# part of the value).
field() { grep -o "\"$1\": *[^,}]*" | head -1 | sed 's/^[^:]*: *//; s/ *$//; s/^"//; s/"$//'; }
# The commit's version of deployment 0 (the default).
default_version() { treeboot status --json | tr -d '\n' | sed 's/}, *{/}\n{/g' | grep '"default": *true' | field version; }
# Deployment VERSION is booted, the default, and blessed.
booted_blessed_default() { # version
    test "$(booted_version)" = "$1" || fatal "booted $(booted_version), not $1"
    test "$(default_version)" = "$1" || fatal "the default is $(default_version), not $1"
    test "$(dep_object "$1" | field boot_assessment)" = blessed || fatal "$1 is not blessed: $(dep_object "$1")"
}
# /boot is FAT (the trixie-uefi-sdboot platform): the deployment list is
# the directory /boot/loader/, which systemd-boot reads and libostree cannot.
boot_is_fat() { [ "$(findmnt -no FSTYPE /boot)" = vfat ]; }
# A string variable of the boot loader (systemd's boot loader interface):
# UTF-16 after the 4 bytes of attributes.
# Read through a pipe: efivarfs files cannot seek (Linux 6.12), and
# `tail -c +5 FILE` seeks ("Illegal seek"), printing nothing.
loader_var() { cat "/sys/firmware/efi/efivars/$1-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f" 2>/dev/null | tail -c +5 | tr -d '\0'; }
# systemd-boot booted the entry treeboot lists for the booted deployment.
check_loader_entry_selected() {
    local entry
    entry=$(booted_object | grep -o '"entry_path":"[^"]*"' | cut -d'"' -f4)
    test "$(loader_var LoaderEntrySelected)" = "${entry##*/}" || fatal "systemd-boot booted '$(loader_var LoaderEntrySelected)', treeboot lists ${entry##*/} (efivarfs: $(findmnt -no FSTYPE /sys/firmware/efi/efivars || echo not mounted); loader variables: $(ls /sys/firmware/efi/efivars 2>&1 | grep 4a67b082 | cut -d- -f1 | tr '\n' ' '))"
}
# The journal MESSAGE_IDs of boot assessment (src/journal.rs): a rollback
# made permanent, failed health checks.
ROLLED_BACK=c3b7e1f5a1d84c4f9c2f0d1e6a7b8c05
HEALTH_FAILED=c3b7e1f5a1d84c4f9c2f0d1e6a7b8c06
# A power cut: the kernel resets at once, without syncing (what is not on
# the disk yet is lost). The reboot mark is written first.
power_cut() { # next-mark
    /tmp/autopkgtest-reboot-prepare "$1"
    echo b > /proc/sysrq-trigger
    sleep 600
}
