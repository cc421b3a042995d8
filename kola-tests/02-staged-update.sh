#!/bin/bash
## kola:
##   timeoutMin: 15
##   tags: "platform-independent"
##   description: Booted through the platform's boot loader (GRUB, or
##     systemd-boot from a FAT /boot) and treeboot's prepare-root; /usr
##     read-only, /etc writable, /var is the stateroot's; treeboot status and
##     Debian's ostree admin status agree on the booted deployment. Then a
##     staged update made in the guest is applied at shutdown: the local /etc
##     edits are kept, the new default appears, the new /usr is booted, /var
##     survived, the old deployment is the rollback.
# The checks of a plain boot (once 01-basic, two boots of its own on every
# platform) are made in this scenario's first boot: the boot suite's time is
# its boots (docs/vm-tests.md).
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
    booted_object >/dev/null || fatal "treeboot status names no booted deployment"
    if boot_is_fat; then
        # systemd-boot booted treeboot's default entry from the FAT /boot,
        # where the list is a directory; libostree cannot read that layout.
        loader_var LoaderInfo | grep -q '^systemd-boot' || fatal "not booted by systemd-boot: $(loader_var LoaderInfo)"
        check_loader_entry_selected
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

    mkdir -p /tmp/ov/usr/etc
    echo "new default" > /tmp/ov/usr/etc/kola-default.conf
    new_commit 2 /tmp/ov
    # On systemd-boot the update is counted (`+2`), so that its boot shows
    # systemd-boot's counting of treeboot's FAT entries and the blessing
    # (GRUB's counting has 11 and 12).
    if boot_is_fat; then ostree --repo=/sysroot/ostree/repo config set sysroot.boot-counting-tries 2; fi
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
    test "$(cat /var/kola-persist)" = persist || fatal "/var did not survive"
    test -e /etc/kola-etc-write || fatal "/etc lost a file written before the update"
    grep -q rollback <<<"$(treeboot status)" || fatal "no rollback deployment"
    if boot_is_fat; then
        # systemd-boot counted this boot (the entry renamed to +1-1) and
        # named the entry in LoaderBootCountPath; after boot-complete.target
        # the deployment is blessed (this image has no systemd-bless-boot:
        # treeboot-bless-boot does it) and the entry has no counter left.
        test -n "$(loader_var LoaderBootCountPath)" || fatal "systemd-boot did not count the update's boot: $(ls /boot/loader/entries)"
        systemctl start treeboot-bless-boot.service
        test "$(dep_object 2 | field boot_assessment)" = blessed || fatal "the update is not blessed: $(dep_object 2); entries: $(ls /boot/loader/entries)"
        ! grep -q '+' <<<"$(ls /boot/loader/entries)" || fatal "an entry keeps its counter: $(ls /boot/loader/entries)"
        check_loader_entry_selected
        test ! -e /boot/loader.new || fatal "the old list is still in /boot/loader.new"
    fi
    systemctl is-failed treeboot-boot-complete.service && fatal "boot-complete failed"
    grep -q Finalized <<<"$(journalctl -b -1 MESSAGE_ID=c3b7e1f5a1d84c4f9c2f0d1e6a7b8c02)" || echo "note: the previous boot's journal is not persistent"
    # On systemd-boot, that the blessed entry stays: one more boot (on GRUB
    # it is 11's last boot, on bookworm).
    if boot_is_fat; then /tmp/autopkgtest-reboot blessed; fi
    echo "staged update: ok"
    ;;
blessed)
    # systemd-boot booted the blessed update again, without counting it.
    booted_blessed_default 2
    test -z "$(loader_var LoaderBootCountPath)" || fatal "systemd-boot counted a blessed entry: $(loader_var LoaderBootCountPath)"
    check_loader_entry_selected
    echo "staged update: ok (blessed, stays)"
    ;;
esac
