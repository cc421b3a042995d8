#!/bin/bash
## kola:
##   timeoutMin: 20
##   tags: "platform-independent"
##   description: Finalize fails at shutdown (a local file where the update
##     ships a directory, created after staging): the old deployment boots,
##     treeboot-boot-complete.service fails with the message, status shows
##     it. Then undeploy and cleanup leave a bootable system with the
##     expected entries; treeboot kargs --append on the default, reboot:
##     /proc/cmdline has it. Then an update fetched over HTTP from a server
##     in the guest on 127.0.0.1 (busybox httpd serving the archive
##     repository of the test disk): switch stages it, the reboot applies
##     it, and upgrade --check then finds nothing newer.
# (05-finalize-failure's, 07-kargs's and 10-upgrade-http's checks, made in
# this scenario's boots since 2026-12-07: the boot suite's time is its
# boots. Each step starts from the state the one before left, as a machine
# would: a failed finalize leaves nothing behind that the next update trips
# on.)
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
    # Finalize failure: the update ships /etc/kola.d as a directory; a local
    # file of that name appears after staging.
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
    test "$(ls /boot/loader/entries | wc -l)" = 1 || fatal "the failed finalize left entries: $(ls /boot/loader/entries)"
    echo "finalize failure: ok"
    # Undeploy, cleanup and kargs, from there.
    for v in 3 4; do
        new_commit $v
        treeboot deploy --retain debian/test
    done
    test "$(ls /boot/loader/entries | wc -l)" = 3
    treeboot undeploy 1
    treeboot cleanup
    test "$(ls /boot/loader/entries | wc -l)" = 2 || fatal "entries: $(ls /boot/loader/entries)"
    treeboot verify
    treeboot kargs --deployment 0 --append kolatest=yes   # the default, v4 (not the booted one)
    test "$(ls /boot/loader/entries | wc -l)" = 2 || fatal "entries after kargs: $(ls /boot/loader/entries)"
    treeboot verify
    /tmp/autopkgtest-reboot after
    ;;
after)
    test "$(booted_version)" = 4 || fatal "booted $(booted_version)"
    test "$(ls /boot/loader/entries | wc -l)" = 2
    treeboot verify
    grep -q 'kolatest=yes' /proc/cmdline || fatal "not in /proc/cmdline: $(cat /proc/cmdline)"
    grep -q kolatest=yes <<<"$(treeboot kargs)" || fatal "treeboot kargs does not show it"
    echo "undeploy, cleanup and kargs: ok"
    # An update over HTTP, from there.
    test -e /run/kola/repo/refs/heads/debian/update || fatal "no update repository on the test disk"
    serve
    # The booted deployment follows the local ref debian/test, whose head it
    # is: nothing to fetch, no update.
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
    grep -q 'kolatest=yes' /proc/cmdline || fatal "the update did not keep the kernel arguments: $(cat /proc/cmdline)"
    serve
    rc=0; treeboot upgrade --check || rc=$?
    test "$rc" = 77 || fatal "upgrade --check after the update: exit $rc, not 77"
    echo "upgrade over http: ok"
    ;;
esac
