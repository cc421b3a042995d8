#!/bin/bash
## kola:
##   timeoutMin: 10
##   tags: "platform-independent"
##   description: Booted through the platform's boot loader (GRUB, or
##     systemd-boot from a FAT /boot) and treeboot's prepare-root; /usr read-only,
##     /etc writable, /var is the stateroot's and survives a reboot; treeboot
##     status and Debian's ostree admin status agree on the booted deployment.
set -xeuo pipefail
. /run/kola/tests/lib.sh
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    test -e /run/ostree-booted || fatal "no /run/ostree-booted"
    grep -q 'ostree=/ostree/boot.1/debian/' /proc/cmdline
    if touch /usr/kola-write 2>/tmp/err; then fatal "/usr is writable"; fi
    grep -q 'Read-only file system' /tmp/err
    touch /etc/kola-etc-write
    findmnt -no SOURCE /var | grep -q 'ostree/deploy/debian/var' || fatal "/var is not the stateroot's"
    findmnt /sysroot
    echo persist > /var/kola-persist
    tr -d ' \n' <<<"$(treeboot status --json)" | grep -q '"booted":true' || fatal "treeboot status names no booted deployment"
    if boot_is_fat; then
        # systemd-boot booted treeboot's default entry from the FAT /boot,
        # where the list is a directory; libostree cannot read that layout.
        loader_var LoaderInfo | grep -q '^systemd-boot' || fatal "not booted by systemd-boot: $(loader_var LoaderInfo)"
        entry=$(booted_object | grep -o '"entry_path":"[^"]*"' | cut -d'"' -f4)
        test "$(loader_var LoaderEntrySelected)" = "${entry##*/}" || fatal "systemd-boot booted '$(loader_var LoaderEntrySelected)', treeboot lists ${entry##*/} (efivarfs: $(findmnt -no FSTYPE /sys/firmware/efi/efivars || echo not mounted); loader variables: $(ls /sys/firmware/efi/efivars 2>&1 | grep 4a67b082 | cut -d- -f1 | tr '\n' ' '))"
        test -d /boot/loader/entries && ! test -L /boot/loader || fatal "/boot/loader is not a directory"
        if ostree admin status >/tmp/ostree-status 2>&1; then fatal "ostree admin status read a FAT list: $(cat /tmp/ostree-status)"; fi
    else
        grep '^\* debian' <<<"$(ostree admin status)" | grep -q "$(booted_csum)" || fatal "ostree admin status disagrees"
    fi
    # What a person reads: the booted marker and word, the running kernel.
    treeboot status | tee /tmp/status
    grep -q "^\* 0 debian $(booted_csum)\.0 (booted, default)" /tmp/status || fatal "status does not mark the booted deployment"
    grep -qx "    Kernel: $(uname -r)" /tmp/status || fatal "status does not name the running kernel $(uname -r)"
    systemctl is-active treeboot-remount.service
    treeboot verify
    /tmp/autopkgtest-reboot second
    ;;
second)
    test "$(cat /var/kola-persist)" = persist || fatal "/var did not survive"
    test -e /etc/kola-etc-write || fatal "/etc did not survive"
    echo "basic: ok"
    ;;
esac
