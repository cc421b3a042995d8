#!/bin/bash
## kola:
##   timeoutMin: 20
##   tags: "platform-independent"
##   description: A staged update with the booted kernel is applied by a soft
##     reboot (systemctl soft-reboot into /run/nextroot): same kernel boot,
##     the new /usr read-only, /etc merged, status right. A next root that is
##     broken leaves the old deployment running. Other kernel arguments are
##     refused; an update with a new kernel and initramfs is refused by `upgrade --apply
##     --soft-reboot=required` and fully rebooted into by `auto`. Both times
##     are measured from the command to multi-user.target.
# treeboot-vm: platforms=trixie-uefi-grub (soft-reboot needs systemd >= 254; bookworm has 252. Not on sdboot for the suite's time: the next root does not depend on the boot loader)
set -xeuo pipefail
. /run/kola/tests/lib.sh
K=/var/lib/kola
# Seconds from the time in $K/t0 (date +%s) to multi-user.target of this boot.
to_multi_user() {
    for _ in $(seq 120); do systemctl -q is-active multi-user.target && break; sleep 0.5; done
    echo $(( $(date -d "$(systemctl show -P ActiveEnterTimestamp multi-user.target)" +%s) - $(cat $K/t0) ))
}
soft_reboot_to() { # mark, then the command that soft-reboots
    local mark=$1; shift
    echo "$mark" > $K/mark; cat /proc/sys/kernel/random/boot_id > $K/boot_id; date +%s > $K/t0; sync
    "$@" 2>&1 | tee $K/out
    sleep 600
}
same_boot() { test "$(cat /proc/sys/kernel/random/boot_id)" = "$(cat $K/boot_id)" || fatal "the kernel booted again: not a soft reboot"; }
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    systemctl list-unit-files soft-reboot.target >/dev/null || fatal "no soft-reboot.target in this systemd"
    mkdir -p /tmp/ov/usr/etc
    echo "new default" > /tmp/ov/usr/etc/kola-default.conf
    new_commit 2 /tmp/ov
    echo "local edit" > /etc/kola-local.conf
    treeboot stage debian/test
    test "$(dep_object 2 | field soft_reboot_capable)" = true || fatal "the update is not soft-reboot capable: $(dep_object 2)"
    grep -q 'Soft reboot: possible' <<<"$(treeboot status)" || fatal "status does not say a soft reboot is possible"
    echo "after staging" > /etc/kola-late.conf
    # Applied as an update front-end applies it (the update is staged
    # already, so upgrade applies it): `required`, which soft-reboots here.
    soft_reboot_to soft treeboot upgrade --apply --soft-reboot=required
    ;;
soft)
    same_boot
    echo "KOLA-BENCH soft-reboot: $(to_multi_user) s from treeboot upgrade --apply --soft-reboot=required to multi-user.target"
    # The drop-ins were there before the mounts: no daemon-reload.
    grep -q 'systemd keeps the mounts' $K/out || fatal "the soft reboot reloaded systemd: $(cat $K/out)"
    test "$(booted_version)" = 2 || fatal "booted version $(booted_version) after the soft reboot"
    test "$(cat /usr/share/kola/version)" = 2
    test "$(cat /etc/kola-local.conf)" = "local edit"
    test "$(cat /etc/kola-late.conf)" = "after staging"
    test "$(cat /etc/kola-default.conf)" = "new default"
    if touch /usr/kola-write 2>/dev/null; then fatal "/usr is writable after the soft reboot"; fi
    findmnt -no SOURCE /var | grep -q 'ostree/deploy/debian/var' || fatal "/var is not the stateroot's: $(findmnt -no SOURCE /var)"
    test ! -e /run/ostree/nextroot-booted || fatal "the next root's record is still there"
    test "$(default_version)" = 2 || fatal "the default is $(default_version): a full reboot would not boot the update"
    treeboot verify
    systemctl is-failed treeboot-remount.service && fatal "treeboot-remount failed"
    # A next root that is not an OS tree (its /usr hidden): systemd
    # soft-reboots into the same root, and the old record is dropped.
    new_commit 3
    treeboot stage debian/test
    treeboot soft-reboot --prepare-only
    test "$(dep_object 3 | field soft_reboot_target)" = true || fatal "status does not name the prepared root: $(dep_object 3)"
    mount -t tmpfs kola-hide /run/nextroot/usr
    soft_reboot_to broken systemctl soft-reboot
    ;;
broken)
    same_boot
    test "$(booted_version)" = 2 || fatal "booted $(booted_version): a broken next root must leave 2 running"
    test "$(cat /usr/share/kola/version)" = 2
    test ! -e /run/ostree/nextroot-booted || fatal "the stale record of the next root is still there"
    test "$(default_version)" = 3 || fatal "the finalized update 3 is not the default"
    treeboot verify
    # Other kernel arguments: refused (exit 7), a full reboot is needed.
    treeboot kargs --deployment 0 --append=kola.soft=1
    set +e; treeboot soft-reboot > /tmp/refused 2>&1; rc=$?; set -e
    test $rc = 7 || fatal "soft-reboot with other kernel arguments exited $rc: $(cat /tmp/refused)"
    grep -q 'kernel arguments differ' /tmp/refused || fatal "no reason: $(cat /tmp/refused)"
    test ! -e /run/ostree/nextroot-booted
    # A new kernel and initramfs (the booted ones with zeros after them,
    # which the boot loader loads and the kernel skips): the update of
    # `upgrade --apply` has another kernel/initramfs pair.
    # `--soft-reboot=required` stages it and refuses the soft reboot (exit
    # 7); `--soft-reboot=auto` then reboots fully.
    mods=/usr/lib/modules/$(uname -r)
    mkdir -p /tmp/ov4/$mods
    for f in vmlinuz initramfs.img; do
        test -f "$mods/$f" || fatal "no $mods/$f in the booted tree"
        { cat "$mods/$f"; head -c 4096 /dev/zero; } > /tmp/ov4/$mods/$f
    done
    new_commit 4 /tmp/ov4
    set +e; treeboot upgrade --apply --soft-reboot=required > /tmp/refused 2>&1; rc=$?; set -e
    cat /tmp/refused
    test $rc = 7 || fatal "upgrade --apply --soft-reboot=required of a new kernel exited $rc"
    grep -q 'kernel or initramfs differs' /tmp/refused || fatal "no reason: $(cat /tmp/refused)"
    test "$(dep_object 4 | field soft_reboot_capable)" = false || fatal "status calls the update soft-reboot capable: $(dep_object 4)"
    test ! -e /run/ostree/nextroot-booted
    same_boot
    # The next update, staged first as the soft one was, so that both
    # times run from the same command with the update staged.
    new_commit 5 /tmp/ov4
    treeboot stage debian/test
    # The reboot protocol's mark, written before the command that reboots.
    cat /proc/sys/kernel/random/boot_id > $K/boot_id
    /tmp/autopkgtest-reboot-prepare full
    date +%s > $K/t0
    treeboot upgrade --apply --soft-reboot=auto
    sleep 600
    ;;
full)
    echo "KOLA-BENCH full reboot: $(to_multi_user) s from treeboot upgrade --apply --soft-reboot=auto to multi-user.target"
    if [ "$(cat /proc/sys/kernel/random/boot_id)" = "$(cat $K/boot_id)" ]; then fatal "a soft reboot into a new kernel"; fi
    test "$(booted_version)" = 5 || fatal "booted $(booted_version) after the full reboot"
    for f in vmlinuz initramfs.img; do
        test -z "$(tail -c 4096 /usr/lib/modules/$(uname -r)/$f | tr -d '\0')" || fatal "the booted tree has not the new $f"
    done
    bootcsum=$(booted_object | tr -d ' ' | grep -o '"bootcsum":"[0-9a-f]*"' | cut -d'"' -f4)
    test -n "$bootcsum" || fatal "no bootcsum in $(booted_object)"
    test "\"bootcsum\":\"$bootcsum\"" != "$(dep_object 2 | tr -d ' ' | grep -o '"bootcsum":"[0-9a-f]*"')" || fatal "the update has the old bootcsum"
    # The boot loader loaded the new kernel: the one in the update's boot
    # directory, which has the new pair's checksum.
    grep -q "BOOT_IMAGE=[^ ]*-$bootcsum/vmlinuz" /proc/cmdline || fatal "not the update's kernel: $(cat /proc/cmdline)"
    treeboot verify
    echo "soft reboot: ok"
    ;;
esac
