#!/bin/bash
## kola:
##   timeoutMin: 15
##   tags: "platform-independent"
##   description: undeploy and cleanup leave a bootable system with the
##     expected entries; treeboot kargs --append on the default, reboot:
##     /proc/cmdline has it.
# (07-kargs's check, made in this scenario's boots since 2026-12-07: the
# boot suite's time is its boots.)
# treeboot-vm: platforms=bookworm-bios-grub
# (treeboot's own logic, the same on every platform: one platform keeps the
# suite within its time budget; docs/vm-tests.md)
set -xeuo pipefail
. /run/kola/tests/lib.sh
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    for v in 2 3; do
        new_commit $v
        treeboot deploy --retain debian/test
    done
    test "$(ls /boot/loader/entries | wc -l)" = 3
    treeboot undeploy 1
    treeboot cleanup
    test "$(ls /boot/loader/entries | wc -l)" = 2 || fatal "entries: $(ls /boot/loader/entries)"
    treeboot verify
    treeboot kargs --deployment 0 --append kolatest=yes   # the default, v3 (not the booted one)
    test "$(ls /boot/loader/entries | wc -l)" = 2 || fatal "entries after kargs: $(ls /boot/loader/entries)"
    treeboot verify
    /tmp/autopkgtest-reboot after
    ;;
after)
    test "$(booted_version)" = 3 || fatal "booted $(booted_version)"
    test "$(ls /boot/loader/entries | wc -l)" = 2
    treeboot verify
    grep -q 'kolatest=yes' /proc/cmdline || fatal "not in /proc/cmdline: $(cat /proc/cmdline)"
    grep -q kolatest=yes <<<"$(treeboot kargs)" || fatal "treeboot kargs does not show it"
    echo "undeploy, cleanup and kargs: ok"
    ;;
esac
