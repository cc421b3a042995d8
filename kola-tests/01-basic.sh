#!/bin/bash
## kola:
##   timeoutMin: 10
##   tags: "platform-independent"
##   description: Booted through GRUB and treeboot's prepare-root; /usr read-only,
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
    treeboot status --json | tr -d ' \n' | grep -q '"booted":true' || fatal "treeboot status names no booted deployment"
    ostree admin status | grep '^\* debian' | grep -q "$(booted_csum)" || fatal "ostree admin status disagrees"
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
