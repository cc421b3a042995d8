#!/bin/bash
## kola:
##   timeoutMin: 10
##   tags: "platform-independent"
##   description: treeboot kargs --append, reboot: /proc/cmdline has it.
# treeboot-vm: platforms=bookworm-bios-grub
# (treeboot's own logic, the same on every platform: one platform keeps the
# suite within its time budget; docs/vm-tests.md)
set -xeuo pipefail
. /run/kola/tests/lib.sh
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    treeboot kargs --append kolatest=yes
    /tmp/autopkgtest-reboot appended
    ;;
appended)
    grep -q 'kolatest=yes' /proc/cmdline || fatal "not in /proc/cmdline: $(cat /proc/cmdline)"
    grep -q kolatest=yes <<<"$(treeboot kargs)"
    echo "kargs: ok"
    ;;
esac
