#!/bin/bash
## kola:
##   timeoutMin: 15
##   tags: "platform-independent"
##   description: undeploy and cleanup leave a bootable system with the
##     expected entries.
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
    /tmp/autopkgtest-reboot after
    ;;
after)
    test "$(booted_version)" = 3 || fatal "booted $(booted_version)"
    test "$(ls /boot/loader/entries | wc -l)" = 2
    treeboot verify
    echo "undeploy and cleanup: ok"
    ;;
esac
