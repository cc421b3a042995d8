#!/bin/bash
## kola:
##   timeoutMin: 30
##   tags: "platform-independent"
##   description: The power is cut while finalize runs at shutdown (the harness
##     kills QEMU at several delays after the finalize unit starts stopping):
##     the next boot is in the old or the new deployment, never neither.
# treeboot-vm: platforms=bookworm-bios-grub (on the trixie platforms the lost-writes replays check every state a power cut can leave, a superset of these three cuts: 09 for the ext4 swap in GRUB 2.12's view, 14 for the FAT one in systemd-boot's and Linux's; left out there for the suite's 60 minutes, docs/vm-tests.md)
set -xeuo pipefail
. /run/kola/tests/lib.sh
step() { # next-mark delay
    n=$(( $(cat /var/kola-n 2>/dev/null || echo 1) + 1 )); echo "$n" > /var/kola-n
    echo "$(booted_version) $n" > /var/kola-expect
    new_commit "$n"
    treeboot stage debian/test
    sync
    echo "KOLA-POWERCUT delay=$2" > /dev/ttyS0
    /tmp/autopkgtest-reboot "$1"
}
check() {
    read -r old new < /var/kola-expect
    treeboot status --json || true
    treeboot verify || true
    v=$(booted_version)
    echo "after the power cut: booted version $v (old $old, staged $new)"
    [ "$v" = "$old" ] || [ "$v" = "$new" ] || fatal "booted neither $old nor $new"
    treeboot verify
    boot_is_fat || ostree admin status >/dev/null
}
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"") step cut1 0 ;;
cut1) check; step cut2 1.5 ;;
cut2) check; step cut3 4 ;;
cut3) check; echo "power cut: ok" ;;
esac
