#!/bin/bash
## kola:
##   timeoutMin: 15
##   tags: "platform-independent"
##   description: treeboot rollback, reboot: the old deployment is booted.
# treeboot-vm: platforms=bookworm-bios-grub (a rollback is the swap of 02's finalize, which runs on every platform; on a FAT /boot 14 replays one. Left out on trixie for the suite's 60 minutes, docs/vm-tests.md)
set -xeuo pipefail
. /run/kola/tests/lib.sh
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    new_commit 2
    treeboot deploy debian/test
    /tmp/autopkgtest-reboot on-v2
    ;;
on-v2)
    test "$(booted_version)" = 2 || fatal "not on version 2"
    treeboot rollback
    /tmp/autopkgtest-reboot rolled-back
    ;;
rolled-back)
    test "$(booted_version)" = 1 || fatal "rollback booted $(booted_version)"
    echo "rollback: ok"
    ;;
esac
