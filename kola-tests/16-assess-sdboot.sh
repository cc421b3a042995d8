#!/bin/bash
## kola:
##   timeoutMin: 20
##   tags: "platform-independent"
##   description: boot assessment on systemd-boot: an update whose kernel panics and one whose required health check fails are each rolled back by systemd-boot's own counting with no console input; a power cut while the first rollback is made permanent leaves a machine that boots the old deployment and completes it.
# treeboot-vm: reboots=auto
# The guest reboots on its own here: the first update's kernel panics
# (panic=5), the second's failing check reboots it.
# treeboot-vm: platforms=trixie-uefi-sdboot (GRUB's counting is 11 and 12; here systemd-boot counts, in the names of the FAT entries)
# One try each (two tries counted down are 11's, on GRUB): systemd-boot
# renames the update's entry from +1 to +0-1 before it starts it, and sorts
# a spent entry after the others, so the next boot is the old deployment.
# The image has no systemd-bless-boot: treeboot's units assess and bless.
set -xeuo pipefail
. /run/kola/tests/lib.sh
entries() { ls /boot/loader/entries | tr '\n' ' '; }
# The deployment of VERSION's origin file.
origin_of() { echo "/ostree/deploy/debian/deploy/$(dep_object "$1" | field checksum).$(dep_object "$1" | field serial).origin"; }
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    boot_is_fat || fatal "/boot is not the FAT ESP"
    ostree --repo=/sysroot/ostree/repo config set sysroot.boot-counting-tries 1
    new_commit 2
    # The update's kernel cannot start its init: it panics before any
    # userspace runs.
    treeboot deploy --karg-append=rdinit=/nonexistent debian/test
    test "$(dep_object 2 | field boot_tries_left)" = 1 || fatal "the update is not counted: $(entries)"
    grep -q '+1\.conf' <<<"$(entries)" || fatal "no +1 entry on the ESP: $(entries)"
    # In this deployment's /etc only: the rollback boot leaves making the
    # rollback permanent to this test, which does it under a power cut.
    systemctl mask treeboot-assess-boot.service
    date +%s > /var/lib/kola/t-update
    /tmp/autopkgtest-reboot updated
    ;;
updated)
    # Only the old deployment can get here: the update panics.
    test "$(booted_version)" = 1 || fatal "booted $(booted_version)"
    echo "rollback (panic): the old deployment runs again $(( $(date +%s) - $(cat /var/lib/kola/t-update) ))s after the reboot into the update"
    treeboot status
    check_loader_entry_selected
    # systemd-boot spent the try in the entry's name; nothing is permanent
    # yet (assess-boot is masked in this /etc).
    grep -q '+0-1\.conf' <<<"$(entries)" || fatal "systemd-boot did not count the try in the entry's name: $(entries)"
    test "$(default_version)" = 2 || fatal "the default changed without assess-boot"
    test "$(dep_object 2 | field boot_tries_left)" = 0 || fatal "tries left: $(dep_object 2)"
    test "$(dep_object 2 | field boot_tries_done)" = 1 || fatal "tries done: $(dep_object 2)"
    origin=$(origin_of 2)
    # A power cut once the failure is recorded in the origin, while the swap
    # on the FAT makes the rollback permanent.
    treeboot assess-boot &
    for i in $(seq 200); do grep -q treeboot-boot-failed "$origin" && break; sleep 0.05; done
    power_cut cut-rollback
    ;;
cut-rollback)
    test "$(booted_version)" = 1 || fatal "after the power cut, booted $(booted_version)"
    check_loader_entry_selected
    treeboot verify
    treeboot assess-boot
    treeboot status
    test "$(default_version)" = 1 || fatal "the rollback is not the default"
    test "$(dep_object 2 | field boot_assessment)" = failed || fatal "the update is not shown failed: $(dep_object 2)"
    test "$(dep_object 2 | field tries)" = 1 || fatal "failed tries: $(dep_object 2)"
    grep -q 'tries ran out' <<<"$(dep_object 2)" || fatal "no reason: $(dep_object 2)"
    grep -q 'Boot assessment failed at .* after 1 tries' <<<"$(treeboot status)" || fatal "status does not say why"
    # (The journal message is checked after the second rollback: the swap
    # may have completed before the cut, and its message gone with it.)
    systemctl unmask treeboot-assess-boot.service
    # The second update starts, but the service the device exists for does
    # not: its required check fails, which reboots the counted boot.
    ov=/tmp/kola-ov-3
    mkdir -p $ov/usr/lib/greenboot/check/required.d
    printf '#!/bin/sh\necho "the service this device exists for is down"\nexit 1\n' > $ov/usr/lib/greenboot/check/required.d/50-kola-service
    chmod 0755 $ov/usr/lib/greenboot/check/required.d/50-kola-service
    new_commit 3 $ov
    treeboot deploy debian/test
    test "$(dep_object 3 | field boot_tries_left)" = 1 || fatal "the update is not counted: $(entries)"
    date +%s > /var/lib/kola/t-update
    /tmp/autopkgtest-reboot check-updated
    ;;
check-updated)
    if [ "$(booted_version)" = 3 ]; then
        # The failing check reboots this boot; the same step runs again.
        touch /run/kola-reboot
        check_loader_entry_selected
        echo "on the update: waiting for its failed health check to reboot"
        sleep 300
        fatal "the failed required check did not reboot the machine"
    fi
    test "$(booted_version)" = 1 || fatal "booted $(booted_version)"
    echo "rollback (failed check): the old deployment runs again $(( $(date +%s) - $(cat /var/lib/kola/t-update) ))s after the reboot into the update"
    # (Not check_loader_entry_selected: assess-boot has renamed the entries
    # since systemd-boot read them, as the rollback's swap does.)
    # treeboot-assess-boot ran at this boot: the rollback is permanent.
    systemctl is-active treeboot-assess-boot.service || fatal "assess-boot did not run: $(systemctl status treeboot-assess-boot.service 2>&1 | tail -5)"
    treeboot status
    test "$(default_version)" = 1 || fatal "the rollback is not the default"
    test "$(dep_object 3 | field boot_assessment)" = failed || fatal "the update is not shown failed: $(dep_object 3)"
    grep -q '50-kola-service' <<<"$(dep_object 3)" || fatal "the reason is not the failed check: $(dep_object 3)"
    grep -q 'failed its boot assessment after 1 tries' <<<"$(journalctl -b -o cat MESSAGE_ID=$ROLLED_BACK)" || fatal "no journal message for the rollback"
    # The failed boot's message, where the journal outlives a boot.
    if [ -d /var/log/journal ]; then
        grep -q 50-kola-service <<<"$(journalctl -o cat MESSAGE_ID=$HEALTH_FAILED)" || fatal "no journal message for the failed check"
    fi
    grep -q '+0-1\.conf' <<<"$(entries)" || fatal "the failed update's entry is not kept spent: $(entries)"
    treeboot verify
    echo "assess-sdboot: ok"
    ;;
esac
