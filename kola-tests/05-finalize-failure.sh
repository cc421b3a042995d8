#!/bin/bash
## kola:
##   timeoutMin: 15
##   tags: "platform-independent"
##   description: Finalize fails at shutdown (a local file where the update
##     ships a directory, created after staging): the old deployment boots,
##     treeboot-boot-complete.service fails with the message, status shows it.
# treeboot-vm: platforms=bookworm-bios-grub
# (treeboot's own logic, the same on every platform: one platform keeps the
# suite within its time budget; docs/vm-tests.md)
set -xeuo pipefail
. /run/kola/tests/lib.sh
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    mkdir -p /tmp/ov/usr/etc/kola.d; echo x > /tmp/ov/usr/etc/kola.d/README
    new_commit 2 /tmp/ov
    treeboot stage debian/test
    echo "local file" > /etc/kola.d
    /tmp/autopkgtest-reboot failed
    ;;
failed)
    test "$(booted_version)" = 1 || fatal "booted $(booted_version)"
    systemctl is-failed treeboot-boot-complete.service || fatal "boot-complete did not fail"
    grep -q "/etc/kola.d" <<<"$(journalctl -u treeboot-boot-complete.service)" || fatal "no message in the journal"
    grep -q "did not apply the staged deployment" <<<"$(treeboot status)" || fatal "status does not show it"
    echo "finalize failure: ok"
    ;;
esac
