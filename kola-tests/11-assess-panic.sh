#!/bin/bash
## kola:
##   timeoutMin: 25
##   tags: "platform-independent"
##   description: boot assessment on GRUB: an update whose kernel panics at boot is rolled back with no console input, and status says why; a good update is then blessed and stays.
# treeboot-vm: reboots=auto
# The guest reboots on its own here: the bad update's kernel panics (panic=5
# reboots it), twice, before GRUB falls back to the old deployment.
# treeboot-vm: platforms=bookworm-bios-grub,trixie-uefi-grub (GRUB counts in grubenv; systemd-boot counting: 16-assess-sdboot)
set -xeuo pipefail
. /run/kola/tests/lib.sh
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    ostree --repo=/sysroot/ostree/repo config set sysroot.boot-counting-tries 2
    new_commit 2
    # The update's kernel cannot start its init: it panics, before any
    # userspace (and before any health check) runs.
    treeboot deploy --karg-append=rdinit=/nonexistent debian/test
    treeboot status
    test "$(dep_object 2 | field boot_tries_left)" = 2 || fatal "the update is not counted: $(ls /boot/loader/entries)"
    test "$(dep_object 1 | field boot_assessment)" = blessed || fatal "the old deployment is not shown blessed"
    date +%s > /var/lib/kola/t-update
    /tmp/autopkgtest-reboot updated
    ;;
updated)
    # Only the old deployment can get here: the update panics.
    test "$(booted_version)" = 1 || fatal "booted $(booted_version)"
    echo "rollback: the old deployment runs again $(( $(date +%s) - $(cat /var/lib/kola/t-update) ))s after the reboot into the update (uptime $(cut -d' ' -f1 /proc/uptime)s)"
    treeboot status
    test "$(default_version)" = 1 || fatal "the rollback is not the default"
    test "$(dep_object 2 | field boot_assessment)" = failed || fatal "the update is not shown failed"
    test "$(dep_object 2 | field tries)" = 2 || fatal "failed tries: $(dep_object 2)"
    grep -q 'tries ran out' <<<"$(dep_object 2)" || fatal "no reason: $(dep_object 2)"
    grep -q 'Boot assessment failed at .* after 2 tries' <<<"$(treeboot status)" || fatal "status does not say why"
    journalctl -b -o cat MESSAGE_ID=$ROLLED_BACK | grep 'failed its boot assessment after 2 tries' || fatal "no journal message"
    grep -a -o 'treeboot_tries_[^#]*' /boot/grub/grubenv || true
    # A good update: counted, blessed once the boot is complete.
    new_commit 3
    treeboot deploy debian/test
    test "$(dep_object 3 | field boot_tries_left)" = 2 || fatal "the good update is not counted"
    /tmp/autopkgtest-reboot good
    ;;
good)
    test "$(booted_version)" = 3 || fatal "booted $(booted_version)"
    # treeboot-bless-boot.service runs after boot-complete.target; wait for it.
    systemctl start treeboot-bless-boot.service
    treeboot status
    test "$(dep_object 3 | field boot_assessment)" = blessed || fatal "not blessed: $(dep_object 3)"
    test "$(dep_object 3 | field boot_tries_left)" = null || fatal "still counted"
    ! grep -q '^ostree-3+' <<<"$(ls /boot/loader/entries)" || fatal "the entry keeps its counter: $(ls /boot/loader/entries)"
    ! grep -a -q "treeboot_tries_$(dep_object 3 | field checksum | cut -c1-16)" /boot/grub/grubenv || fatal "grubenv keeps the blessed counter"
    # That the blessed entry, now without a counter, stays the default is
    # a boot of GRUB's script, the same on 2.06 and 2.12: made on bookworm
    # only (one boot less for the suite's 60 minutes).
    . /etc/os-release
    if [ "$VERSION_CODENAME" != bookworm ]; then
        booted_blessed_default 3
        echo "assess-panic: ok"
        exit 0
    fi
    /tmp/autopkgtest-reboot blessed
    ;;
blessed)
    # The blessed update stayed.
    booted_blessed_default 3
    echo "assess-panic: ok"
    ;;
esac
