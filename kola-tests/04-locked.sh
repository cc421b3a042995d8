#!/bin/bash
## kola:
##   timeoutMin: 20
##   tags: "platform-independent"
##   description: Staged with locked finalization: a reboot applies nothing;
##     staged again and unlocked: the reboot applies it. Then treeboot
##     rollback, reboot: the old deployment is booted.
# (03-rollback's check, made in this scenario's boots since 2026-12-07: the
# boot suite's time is its boots.)
# treeboot-vm: platforms=bookworm-bios-grub
# (treeboot's own logic, the same on every platform: one platform keeps the
# suite within its time budget; a rollback is the swap of 02's finalize,
# which runs on every platform, and on a FAT /boot 14 replays one;
# docs/vm-tests.md)
set -xeuo pipefail
. /run/kola/tests/lib.sh
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    new_commit 2
    treeboot stage --lock-finalization debian/test
    grep -q "finalization locked" <<<"$(treeboot status)"
    /tmp/autopkgtest-reboot locked
    ;;
locked)
    test "$(booted_version)" = 1 || fatal "a locked deployment was applied"
    treeboot stage --lock-finalization debian/test
    treeboot lock-finalization --unlock
    /tmp/autopkgtest-reboot unlocked
    ;;
unlocked)
    test "$(booted_version)" = 2 || fatal "the unlocked deployment was not applied"
    echo "locked: ok"
    # The rollback: the previous deployment becomes the default.
    treeboot rollback
    test "$(default_version)" = 1 || fatal "after rollback the default is $(default_version)"
    /tmp/autopkgtest-reboot rolled-back
    ;;
rolled-back)
    test "$(booted_version)" = 1 || fatal "rollback booted $(booted_version)"
    treeboot verify
    echo "rollback: ok"
    ;;
esac
