#!/bin/bash
## kola:
##   timeoutMin: 15
##   tags: "platform-independent"
##   description: A staged update made in the guest is applied at shutdown:
##     the local /etc edit is kept, the new default appears, the new /usr is
##     booted, the old deployment is the rollback.
set -xeuo pipefail
. /run/kola/tests/lib.sh
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    mkdir -p /tmp/ov/usr/etc
    echo "new default" > /tmp/ov/usr/etc/kola-default.conf
    new_commit 2 /tmp/ov
    echo "local edit" > /etc/kola-local.conf
    treeboot stage --json debian/test
    systemctl is-active treeboot-finalize-staged.service
    # Debian's ostree reads treeboot's staged record (not on a FAT /boot,
    # whose list libostree cannot read).
    if ! boot_is_fat; then
        ostree admin status | tee /tmp/ostree-status
        grep -q '(staged)' /tmp/ostree-status || fatal "ostree admin status does not show the staged deployment"
    fi
    # Edits after staging are kept too.
    echo "after staging" > /etc/kola-late.conf
    /tmp/autopkgtest-reboot applied
    ;;
applied)
    test "$(booted_version)" = 2 || fatal "booted version $(booted_version)"
    test "$(cat /etc/kola-local.conf)" = "local edit"
    test "$(cat /etc/kola-late.conf)" = "after staging"
    test "$(cat /etc/kola-default.conf)" = "new default"
    test "$(cat /usr/share/kola/version)" = 2
    grep -q rollback <<<"$(treeboot status)" || fatal "no rollback deployment"
    if boot_is_fat; then
        entry=$(booted_object | grep -o '"entry_path":"[^"]*"' | cut -d'"' -f4)
        test "$(loader_var LoaderEntrySelected)" = "${entry##*/}" || fatal "systemd-boot booted '$(loader_var LoaderEntrySelected)', treeboot lists ${entry##*/} (efivarfs: $(findmnt -no FSTYPE /sys/firmware/efi/efivars || echo not mounted); loader variables: $(ls /sys/firmware/efi/efivars 2>&1 | grep 4a67b082 | cut -d- -f1 | tr '\n' ' '))"
        test ! -e /boot/loader.new || fatal "the old list is still in /boot/loader.new"
    fi
    systemctl is-failed treeboot-boot-complete.service && fatal "boot-complete failed"
    grep -q Finalized <<<"$(journalctl -b -1 MESSAGE_ID=c3b7e1f5a1d84c4f9c2f0d1e6a7b8c02)" || echo "note: the previous boot's journal is not persistent"
    echo "staged update: ok"
    ;;
esac
