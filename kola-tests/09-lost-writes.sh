#!/bin/bash
## kola:
##   timeoutMin: 30
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
set -euo pipefail
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND"' ERR
. /run/kola/tests/lib.sh
MAX_BETWEEN=${LOST_WRITES_SAMPLES:-40}   # sampled non-flush points per phase
W=/dev/shm/lw; M=/run/lw-mnt; G=/run/lw-grub
REPLAY=/usr/lib/treeboot-test/replay-log
mkdir -p $W $M $G
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

$REPLAY list $L > $W/entries
losetup -d $L
total=$(wc -l < $W/entries)
echo "lost writes: $total log entries"

# The state after replaying entries 0..=K: the checks a boot would make.
fails=0; points=0; flushes=0; differ=0
check() { # K old new phase
    local k=$1 why="" dep=""
    cp --sparse=always "${CHECK_FROM:-$W/work.img}" $W/check.img
    local dev; dev=$(losetup -f --show $W/check.img)
    # GRUB: reads the file system as it is on disk, without the journal.
    local linux="" initrd="" ostree="" kcsum=""
    if mount -o ro,noload $dev $G 2>/dev/null; then
        if [ -f $G/boot/loader/grub.cfg ]; then
            local l; l=$(sed -n '/^menuentry/,/^}/p' $G/boot/loader/grub.cfg | grep -m1 '^  linux ') || true
            linux=${l#  linux /boot}; linux=${linux%% *}
            ostree=$(echo "$l" | grep -o 'ostree=[^ ]*' | sed 's/ostree=//') || true
            initrd=$(sed -n '/^menuentry/,/^}/p' $G/boot/loader/grub.cfg | grep -m1 '^  initrd ' | sed 's/^  initrd \/boot//') || true
            if [ -z "$linux" ] || [ -z "$ostree" ] || [ -z "$initrd" ]; then why="GRUB: no usable first entry in loader/grub.cfg"
            elif ! [ -f "$G/boot$linux" ] || ! [ -f "$G/boot$initrd" ]; then why="GRUB: $linux or $initrd missing"
            else
                kcsum=$(sha256sum < "$G/boot$linux" | cut -c1-16)
                case "$kcsum" in "$KA"|"$KB") ;; *) why="GRUB: $linux is not a whole kernel";; esac
            fi
        else
            why="GRUB: no boot/loader/grub.cfg"
        fi
        umount $G
    else
        why="GRUB: the file system does not mount without its journal"
    fi
    # Linux: the journal replayed; the initramfs resolves ostree=.
    if mount $dev $M 2>/dev/null; then
        if [ -z "$why" ]; then
            dep=$(readlink -f "$M$ostree" || true)
            local bootcsum; bootcsum=$(echo "$ostree" | cut -d/ -f5)
            case "$dep" in
            "$M"/ostree/deploy/lw/deploy/$2.*|"$M"/ostree/deploy/lw/deploy/$3.*)
                [ -d "$dep/usr" ] || why="Linux: $ostree resolves to $dep without usr/"
                case "$linux" in /ostree/lw-$bootcsum/*) ;; *) why="Linux: kernel $linux is not of bootcsum $bootcsum";; esac ;;
            *) why="Linux: $ostree resolves to '$dep', not the old or the new deployment" ;;
            esac
        fi
        if [ -z "$why" ]; then
            treeboot --sysroot $M verify > $W/verify.out 2>&1 || why="treeboot verify: $(tail -3 $W/verify.out | tr '\n' ' ')"
        fi
        if [ -z "$why" ]; then
            local def; def=$(treeboot --sysroot $M status --json | tr -d ' \n' | grep -o '"checksum":"[0-9a-f]*"' | head -1 | cut -d'"' -f4)
            [ "$def" = "$2" ] || [ "$def" = "$3" ] || why="the default deployment is $def, neither old nor new"
            case "$dep" in */$def.*) ;; *) differ=$((differ + 1));; esac
        fi
        if [ -z "$why" ]; then
            ostree admin status --sysroot=$M >/dev/null 2>$W/ostree.err || why="ostree admin status: $(head -2 $W/ostree.err | tr '\n' ' ')"
        fi
        umount $M
    else
        why="Linux: the file system does not mount"
    fi
    losetup -d $dev
    points=$((points + 1))
    if [ -n "$why" ]; then
        fails=$((fails + 1))
        if [ "$4" = control ]; then echo "control caught, as it must be: $why"
        else echo "LOST-WRITES FAIL phase=$4 entry=$k: $why"; fi
    fi
}
KA=$(sha256sum < $W/tree1/usr/lib/modules/6.1.0-lw/vmlinuz | cut -c1-16)
KB=$(sha256sum < $W/tree2/usr/lib/modules/6.1.0-lw/vmlinuz | cut -c1-16)

# Phases between marks, with the deployments each may leave as the default.
mark_at() { grep -m1 -E "^[0-9]+ mark 0 0 $1\$" $W/entries | cut -d' ' -f1; }
a=$(mark_at deploy); b=$(mark_at rollback); c=$(mark_at done)
cp $W/base.img $W/work.img
$REPLAY replay $W/log.img $W/work.img 0 "$a"
applied=$a
t0=$SECONDS
for phase in "deploy $a $b $V1 $V2" "rollback $b $c $V2 $V1"; do
    set -- $phase; name=$1; from=$2; to=$3; old=$4; new=$5
    # Every flush and FUA, and up to MAX_BETWEEN evenly spread other entries.
    n=$((to - from)); stride=$(( n / MAX_BETWEEN + 1 ))
    sed -n "$((from + 1)),$((to + 1))p" $W/entries > $W/phase
    while read -r k flags _; do
        pick=""
        case "$flags" in *flush*|*fua*) pick=1; flushes=$((flushes + 1));; esac
        [ $(( (k - from) % stride )) = 0 ] && pick=1
        [ "$k" = "$to" ] && pick=1
        [ -n "$pick" ] || continue
        $REPLAY replay $W/log.img $W/work.img $applied $((k + 1))
        applied=$((k + 1))
        check "$k" "$old" "$new" "$name"
    done < $W/phase
done
echo "LOST-WRITES points=$points flushes=$flushes failures=$fails views-differ=$differ entries=$total seconds=$((SECONDS - t0))"
# The whole log replayed: the rollback is complete, v1 is the default again.
mount -o loop $W/work.img $M
def=$(treeboot --sysroot $M status --json | tr -d ' \n' | grep -o '"checksum":"[0-9a-f]*"' | head -1 | cut -d'"' -f4)
umount $M
[ "$def" = "$V1" ] || fatal "after the whole log the default is $def, not v1"
[ "$fails" = 0 ] || fatal "$fails of $points replayed states are not bootable"
# Controls: the checks must see a broken state. A half-written default
# kernel, then a default deployment that is gone.
control() { # what to break (a command run in the mounted copy)
    cp --sparse=always $W/work.img $W/ctl.img
    mount -o loop $W/ctl.img $M
    (cd $M && eval "$1")
    umount $M
    local before=$fails
    CHECK_FROM=$W/ctl.img check control "$V1" "$V2" control
    [ "$fails" = $((before + 1)) ] || fatal "the checks did not notice: $1"
}
control 'k=.$(grep -m1 "^  linux " boot/loader/grub.cfg | cut -d" " -f4); truncate -s 1000 "$k"'
control 'chattr -i ostree/deploy/lw/deploy/$V1.*; rm -rf ostree/deploy/lw/deploy/$V1.*'
echo "controls: a truncated kernel and a missing deployment are both reported"
echo "lost writes: ok"
