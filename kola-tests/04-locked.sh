#!/bin/bash
## kola:
##   timeoutMin: 15
##   tags: "platform-independent"
##   description: Staged with locked finalization: a reboot applies nothing;
##     staged again and unlocked: the reboot applies it.
# treeboot-vm: platforms=bookworm-bios-grub
# (treeboot's own logic, the same on every platform: one platform keeps the
# suite within its time budget; docs/vm-tests.md)
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
    ;;
esac
