#!/bin/bash
## kola:
##   timeoutMin: 15
##   tags: "platform-independent"
##   description: An update fetched over HTTP from a server in the guest on
##     127.0.0.1 (busybox httpd serving the archive repository of the test
##     disk): switch stages it, the reboot applies it, and upgrade --check
##     then finds nothing newer.
# treeboot-vm: platforms=bookworm-bios-grub
# (treeboot's own logic, the same on every platform: one platform keeps the
# suite within its time budget; docs/vm-tests.md)
# treeboot-vm: update-repo=yes
set -xeuo pipefail
. /run/kola/tests/lib.sh
serve() {
    # It daemonizes: its stdio must not keep the runner's pipe open.
    busybox httpd -p 127.0.0.1:8080 -h /run/kola/repo </dev/null >/dev/null 2>&1
    grep -qx vmsrv <<<"$(ostree remote list)" || ostree remote add --no-gpg-verify vmsrv http://127.0.0.1:8080/
}
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    test -e /run/kola/repo/refs/heads/debian/update || fatal "no update repository on the test disk"
    serve
    # The image follows the local ref debian/test: nothing to fetch, no update.
    rc=0; treeboot upgrade --check || rc=$?
    test "$rc" = 77 || fatal "upgrade --check of the local ref: exit $rc, not 77"
    treeboot switch --json vmsrv:debian/update | tee /tmp/switch.json
    tr -d ' \n' < /tmp/switch.json | grep -q '"action":"staged"' || fatal "switch did not stage"
    treeboot status | tee /tmp/status
    grep -q "^Update pending: 0 (version 2) is staged" /tmp/status || fatal "status does not show the pending update"
    test -e /run/reboot-required || fatal "no /run/reboot-required"
    /tmp/autopkgtest-reboot upgraded
    ;;
upgraded)
    test "$(booted_version)" = 2 || fatal "booted version $(booted_version)"
    test "$(cat /usr/share/treeboot-update/marker)" = 2 || fatal "the update's file is missing"
    grep -q '"refspec":"vmsrv:debian/update"' <<<"$(booted_object)" || fatal "the booted deployment does not follow vmsrv:debian/update"
    serve
    rc=0; treeboot upgrade --check || rc=$?
    test "$rc" = 77 || fatal "upgrade --check after the update: exit $rc, not 77"
    echo "upgrade over http: ok"
    ;;
esac
