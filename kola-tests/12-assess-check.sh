#!/bin/bash
## kola:
##   timeoutMin: 30
##   tags: "platform-independent"
##   description: boot assessment on GRUB: an update whose required health check fails reboots into the old deployment after its tries; power cuts while making the rollback permanent and while blessing leave a machine that boots the old or the new deployment.
# treeboot-vm: reboots=auto
# The guest reboots on its own here: the failing check reboots each try.
# treeboot-vm: platforms=bookworm-bios-grub (GRUB counts in grubenv; GRUB 2.12 counting and falling back is 11 on trixie-uefi-grub; left out there for the suite's 60 minutes, docs/vm-tests.md; systemd-boot counting: 16-assess-sdboot)
set -xeuo pipefail
. /run/kola/tests/lib.sh
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    # One try: the failed check's reboot is the update's only boot (11
    # counts two tries down, on GRUB 2.06 and 2.12; one boot less here).
    ostree --repo=/sysroot/ostree/repo config set sysroot.boot-counting-tries 1
    ov=/tmp/kola-ov-2
    mkdir -p $ov/usr/lib/greenboot/check/required.d
    printf '#!/bin/sh\necho "the service this device exists for is down"\nexit 1\n' > $ov/usr/lib/greenboot/check/required.d/50-kola-service
    chmod 0755 $ov/usr/lib/greenboot/check/required.d/50-kola-service
    new_commit 2 $ov
    treeboot deploy debian/test
    # In this deployment's /etc only (after the deploy, so the update's
    # /etc does not carry it): the rollback boot does not make the rollback
    # permanent by itself; this test does it by hand, under a power cut.
    systemctl mask treeboot-assess-boot.service
    date +%s > /var/lib/kola/t-update
    /tmp/autopkgtest-reboot updated
    ;;
updated)
    if [ "$(booted_version)" = 2 ]; then
        # The failing check reboots this boot; the same step runs again.
        touch /run/kola-reboot
        echo "on the update: waiting for its failed health check to reboot"
        sleep 300
        fatal "the failed required check did not reboot the machine"
    fi
    test "$(booted_version)" = 1 || fatal "booted $(booted_version)"
    echo "rollback: the old deployment runs again $(( $(date +%s) - $(cat /var/lib/kola/t-update) ))s after the reboot into the update"
    treeboot status
    # GRUB fell back; nothing is permanent yet (assess-boot is masked here).
    test "$(default_version)" = 2 || fatal "the default changed without assess-boot"
    test "$(dep_object 2 | field boot_tries_left)" = 0 || fatal "tries left: $(dep_object 2)"
    test "$(dep_object 2 | field boot_tries_done)" = 1 || fatal "tries done: $(dep_object 2)"
    grep -q 50-kola-service /var/lib/treeboot/health-failed/* || fatal "the failed boot left no reason"
    origin=/ostree/deploy/debian/deploy/$(dep_object 2 | field checksum).$(dep_object 2 | field serial).origin
    # A power cut once the failure is recorded, while the swap makes the
    # rollback permanent.
    treeboot assess-boot &
    for i in $(seq 200); do grep -q treeboot-boot-failed "$origin" && break; sleep 0.05; done
    power_cut cut-rollback
    ;;
cut-rollback)
    test "$(booted_version)" = 1 || fatal "after the power cut, booted $(booted_version)"
    treeboot verify
    treeboot assess-boot
    treeboot status
    test "$(default_version)" = 1 || fatal "the rollback is not the default"
    test "$(dep_object 2 | field boot_assessment)" = failed
    test "$(dep_object 2 | field tries)" = 1 || fatal "failed tries: $(dep_object 2)"
    grep -q '50-kola-service' <<<"$(dep_object 2)" || fatal "the reason is not the failed check: $(dep_object 2)"
    if [ -d /var/log/journal ]; then
        grep -q 50-kola-service <<<"$(journalctl -o cat MESSAGE_ID=$HEALTH_FAILED)" || fatal "no journal message for the failed checks"
    fi
    systemctl unmask treeboot-assess-boot.service
    # A good update, three tries; blessing it by hand under a power cut.
    ostree --repo=/sysroot/ostree/repo config set sysroot.boot-counting-tries 3
    systemctl mask treeboot-bless-boot.service   # carried into the update's /etc
    new_commit 3
    treeboot deploy debian/test
    /tmp/autopkgtest-reboot good
    ;;
good)
    test "$(booted_version)" = 3 || fatal "booted $(booted_version)"
    test "$(dep_object 3 | field boot_tries_left)" = 2 || fatal "tries: $(dep_object 3)"
    # A power cut once the swap has begun writing the new entries.
    cur=$(readlink /boot/loader); new=loader.$((1 - ${cur#loader.}))
    treeboot bless &
    for i in $(seq 200); do [ -d /boot/$new/entries ] && break; sleep 0.05; done
    ls /boot/$new/entries || true
    power_cut cut-bless
    ;;
cut-bless)
    test "$(booted_version)" = 3 || fatal "after the power cut, booted $(booted_version)"
    treeboot verify
    treeboot status
    state=$(dep_object 3 | field boot_assessment)
    echo "after the power cut the update is: $state"
    case $state in blessed | assessing) ;; *) fatal "state $state" ;; esac
    treeboot bless
    # That a blessed deployment stays the default across reboots is
    # 11-assess-panic's last boot; no boot of its own here.
    booted_blessed_default 3
    treeboot verify
    echo "assess-check: ok"
    ;;
esac
