#!/bin/bash
## kola:
##   timeoutMin: 15
##   tags: "platform-independent"
##   description: Lost writes. A sysroot on a dm-log-writes device records
##     every write of a deploy and a rollback, in the order the disk made
##     them durable. The log is then replayed onto a copy of the device up to
##     each flush (and sampled points between flushes), and each such state,
##     which is what a power cut at that moment leaves, must boot the old or
##     the new deployment: GRUB's view (no journal replay) finds its menu and
##     a whole kernel, and that entry's ostree= resolves, in Linux's view
##     (journal replayed), to a deployment of the same bootcsum;
##     treeboot verify passes and Debian's ostree admin status reads it.
# treeboot-vm: export-disk=256M
# treeboot-vm: platforms=bookworm-bios-grub,trixie-uefi-grub (ext4 /boot read by GRUB; the FAT one is 14-fat-lost-writes)
set -euo pipefail
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND"' ERR
. /run/kola/tests/lib.sh
W=/dev/shm/lw; M=/run/lw-mnt; G=/run/lw-grub
mkdir -p $W $M
modprobe dm-log-writes

# A small OS tree; v2 has another kernel (a new bootcsum, so the deploy also
# copies a kernel into /boot).
tree() { # dir version kernel
    mkdir -p "$1/usr/lib/modules/6.1.0-lw" "$1/usr/etc" "$1/usr/lib" "$1/var"
    for d in sysroot boot proc sys dev run tmp; do mkdir -p "$1/$d"; done
    head -c 300000 /dev/zero | tr '\0' "$3" > "$1/usr/lib/modules/6.1.0-lw/vmlinuz"
    echo "initramfs $3" > "$1/usr/lib/modules/6.1.0-lw/initramfs.img"
    printf 'NAME="LW"\nID=lw\nPRETTY_NAME="LW %s"\n' "$2" > "$1/usr/lib/os-release"
    echo "motd $2" > "$1/usr/etc/motd"
    ln -sfn sysroot/ostree "$1/ostree"
}

# The sysroot, made before logging starts: v1 deployed, v2 committed.
truncate -s 40M $W/data.img
D=$(losetup -f --show $W/data.img)
mkfs.ext4 -q -L lw $D
mount $D $M
treeboot init-fs $M >/dev/null
treeboot --sysroot $M os-init lw >/dev/null
mkdir -p $M/boot/grub   # GRUB without BLS: each swap writes loader.N/grub.cfg
for v in 1 2; do
    k=A; [ $v = 2 ] && k=B
    tree $W/tree$v $v $k
    ostree --repo=$M/ostree/repo commit -b lw/v$v --tree=dir=$W/tree$v \
        --add-metadata-string=version=$v --no-xattrs >/dev/null
done
V1=$(ostree --repo=$M/ostree/repo rev-parse lw/v1)
V2=$(ostree --repo=$M/ostree/repo rev-parse lw/v2)
treeboot --sysroot $M deploy --karg root=LABEL=lw lw/v1 >/dev/null
# Boot counting on from here: the deploy of v2 gives it a counted entry,
# so its swap also creates boot/grub/grubenv before the entry goes live.
ostree --repo=$M/ostree/repo config set sysroot.boot-counting-tries 2
umount $M
cp $W/data.img $W/base.img

# Log the deploy of v2 and a rollback to v1.
truncate -s 96M $W/log.img
L=$(losetup -f --show $W/log.img)
dmsetup create lw --table "0 $(blockdev --getsz $D) log-writes $D $L"
mount /dev/mapper/lw $M
dmsetup message lw 0 mark deploy
treeboot --sysroot $M deploy lw/v2 >/dev/null
dmsetup message lw 0 mark rollback
treeboot --sysroot $M rollback >/dev/null
dmsetup message lw 0 mark done
umount $M
dmsetup remove lw
losetup -d $D

losetup -d $L
kernel_sum() { sha256sum < $W/tree$1/usr/lib/modules/6.1.0-lw/vmlinuz | cut -c1-16; }
printf 'V1=%s\nV2=%s\nKA=%s\nKB=%s\n' "$V1" "$V2" "$(kernel_sum 1)" "$(kernel_sum 2)" > $W/meta

# The replay and its checks need no guest: given an export disk (the VM
# harness gives one), leave the log there for the host, which runs them
# natively instead of under emulation; else (under real kola) run them here.
if [ -b /dev/vdc ]; then
    tar -C $W -cSf /dev/vdc log.img base.img meta
    sync
    echo "KOLA-HOST-CHECK lost writes: the log ($(du -h --apparent-size $W/log.img | cut -f1)) is on the export disk; the host replays and checks it"
    exit 0
fi
TREEBOOT=treeboot REPLAY=/usr/lib/treeboot-test/replay-log OSTREE=ostree
. /run/kola/tests/lost-writes-lib.sh
lost_writes_check
echo "lost writes: ok"
