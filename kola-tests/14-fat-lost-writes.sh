#!/bin/bash
## kola:
##   timeoutMin: 30
##   tags: "platform-independent"
##   description: Lost writes on a FAT /boot. A sysroot whose /boot is FAT
##     (the deployment list the directory loader/, swapped in with
##     RENAME_EXCHANGE) sits on one dm-log-writes device with its ext4 root,
##     so that one log orders the writes of both. A deploy and a rollback
##     are logged, and the log is replayed onto a copy up to each flush (and
##     sampled points between): each such state, what a power cut at that
##     moment leaves, must boot the old or the new deployment in
##     systemd-boot's view (the FAT read from userspace with mtools, as
##     firmware reads it: no fsck, no kernel) and in Linux's (the ext4
##     journal replayed, the FAT checked by fsck.fat -a as systemd-fsck does
##     at boot, then mounted): the default entry's
##     kernel and initrd whole, its ostree= resolving to a deployment of the
##     same bootcsum, treeboot verify passing.
# treeboot-vm: platforms=trixie-uefi-sdboot
# treeboot-vm: boot-max=1500
set -euo pipefail
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND"' ERR
. /run/kola/tests/lib.sh
W=/dev/shm/flw; M=/run/flw-mnt
mkdir -p $W $M
modprobe dm-log-writes
export MTOOLS_SKIP_CHECK=1
REPLAY=/usr/lib/treeboot-test/replay-log
# One device: the root (40 MiB, ext4) then /boot (40 MiB, FAT32 with
# 512-byte clusters: enough of them for FAT32), each a linear map over it.
ROOT_S=81920 BOOT_S=81920
BOOT_OFF=$((ROOT_S * 512))
maps() { # device
    dmsetup create flw-root --table "0 $ROOT_S linear $1 0"
    dmsetup create flw-boot --table "0 $BOOT_S linear $1 $ROOT_S"
}
unmaps() { dmsetup remove flw-boot; dmsetup remove flw-root; }
mount_both() { mount /dev/mapper/flw-root $M; mount -t vfat /dev/mapper/flw-boot $M/boot; }

tree() { # dir version kernel
    mkdir -p "$1/usr/lib/modules/6.12.0-flw" "$1/usr/etc" "$1/usr/lib" "$1/var"
    for d in sysroot boot proc sys dev run tmp; do mkdir -p "$1/$d"; done
    head -c 300000 /dev/zero | tr '\0' "$3" > "$1/usr/lib/modules/6.12.0-flw/vmlinuz"
    head -c 100000 /dev/zero | tr '\0' "$3" > "$1/usr/lib/modules/6.12.0-flw/initramfs.img"
    printf 'NAME="FLW"\nID=flw\nPRETTY_NAME="FLW %s"\n' "$2" > "$1/usr/lib/os-release"
    echo "motd $2" > "$1/usr/etc/motd"
    ln -sfn sysroot/ostree "$1/ostree"
}

# The sysroot before logging starts: v1 deployed, v2 committed.
truncate -s $(( (ROOT_S + BOOT_S) * 512 )) $W/data.img
D=$(losetup -f --show $W/data.img)
maps $D
mkfs.ext4 -q -L flw /dev/mapper/flw-root
mkfs.vfat -F 32 -s 1 -n FLWBOOT /dev/mapper/flw-boot >/dev/null
mount /dev/mapper/flw-root $M; mkdir -p $M/boot; mount -t vfat /dev/mapper/flw-boot $M/boot
treeboot init-fs $M >/dev/null
treeboot --sysroot $M os-init flw >/dev/null
# As `bootctl install` leaves it; every swap must keep loader.conf.
mkdir -p $M/boot/loader/entries; printf 'timeout 0\n' > $M/boot/loader/loader.conf
for v in 1 2; do
    k=A; [ $v = 2 ] && k=B
    tree $W/tree$v $v $k
    ostree --repo=$M/ostree/repo commit -b flw/v$v --tree=dir=$W/tree$v \
        --add-metadata-string=version=$v --no-xattrs >/dev/null
done
V1=$(ostree --repo=$M/ostree/repo rev-parse flw/v1)
V2=$(ostree --repo=$M/ostree/repo rev-parse flw/v2)
treeboot --sysroot $M deploy --karg root=LABEL=flw flw/v1 >/dev/null
test -f $M/boot/loader/ostree-bootversion || fatal "the list on FAT is not a directory list"
umount $M/boot; umount $M; unmaps
cp $W/data.img $W/base.img

# Log the deploy of v2 and a rollback to v1.
truncate -s 96M $W/log.img
L=$(losetup -f --show $W/log.img)
dmsetup create flw --table "0 $(blockdev --getsz $D) log-writes $D $L"
maps /dev/mapper/flw
mount_both
dmsetup message flw 0 mark deploy
treeboot --sysroot $M deploy flw/v2 >/dev/null
dmsetup message flw 0 mark rollback
treeboot --sysroot $M rollback >/dev/null
dmsetup message flw 0 mark done
umount $M/boot; umount $M; unmaps
dmsetup remove flw
losetup -d $D; losetup -d $L
ksum() { sha256sum < $W/tree$1/usr/lib/modules/6.12.0-flw/vmlinuz | cut -c1-16; }
isum() { sha256sum < $W/tree$1/usr/lib/modules/6.12.0-flw/initramfs.img | cut -c1-16; }
KA=$(ksum 1) KB=$(ksum 2) IA=$(isum 1) IB=$(isum 2)

# systemd-boot's choice, from the FAT as firmware reads it: the *.conf of
# /loader/entries, spent ones (+0-N) last, then by id (the name without its
# counter) in descending version order (boot_entry_compare, systemd 257;
# our entries have no sort-key); entries without `linux` are skipped.
# Prints "ID LINUX INITRD OSTREE" or nothing.
sdboot_default() { # image
    local img="$1@@$BOOT_OFF" f id left linux initrd ostree line
    mdir -b -i "$img" ::/loader/entries 2>/dev/null | grep -i '\.conf$' | while read -r f; do
        f=${f##*/}
        id=$(echo "$f" | sed -E 's/\+[0-9]+(-[0-9]+)?\.conf$/.conf/')
        left=1; case "$f" in *+0.conf|*+0-*.conf) left=0;; esac
        mtype -i "$img" "::/loader/entries/$f" > $W/entry 2>/dev/null || continue
        linux=$(sed -n 's/^linux[ \t]\+//p' $W/entry | head -1)
        initrd=$(sed -n 's/^initrd[ \t]\+//p' $W/entry | head -1)
        ostree=$(grep -o 'ostree=[^ ]*' $W/entry | head -1 | cut -d= -f2)
        [ -n "$linux" ] || continue
        echo "$left $id $linux ${initrd:--} ${ostree:--}"
    done | sort -k1,1nr -k2,2Vr | head -1 | cut -d' ' -f2-
}

fails=0; points=0; flushes=0; differ=0; same=0; repaired=0; broken=0; tried_next=0
check() { # k old new phase [image]
    local img=${5:-$W/work.img} why="" id linux initrd ostree sum dep def
    cp --sparse=always "$img" $W/check.img
    # systemd-boot's view.
    read -r id linux initrd ostree <<< "$(sdboot_default $W/check.img)" || true
    if [ -z "${id:-}" ]; then why="systemd-boot: no bootable entry in /loader/entries"
    elif [ "$initrd" = - ] || [ "$ostree" = - ]; then why="systemd-boot: $id has no initrd or no ostree="
    else
        sum=$(mtype -i "$W/check.img@@$BOOT_OFF" "::$linux" 2>/dev/null | sha256sum | cut -c1-16)
        case "$sum" in "$KA"|"$KB") ;; *) why="systemd-boot: $id: $linux is not a whole kernel";; esac
        sum=$(mtype -i "$W/check.img@@$BOOT_OFF" "::$initrd" 2>/dev/null | sha256sum | cut -c1-16)
        case "$sum" in "$IA"|"$IB") ;; *) why="systemd-boot: $id: $initrd is not a whole initrd";; esac
    fi
    # Linux's view, as the next boot has it: the journal replayed, and the
    # FAT checked by fsck.fat -a first (systemd-fsck, passno 2 in fstab),
    # which repairs what FAT's unordered writes left (docs/fat-boot.md).
    local rdev bdev frc=0
    rdev=$(losetup -f --show --sizelimit $BOOT_OFF $W/check.img)
    bdev=$(losetup -f --show -o $BOOT_OFF --sizelimit $((BOOT_S * 512)) $W/check.img)
    fsck.fat -a -w $bdev > $W/fsck.out 2>&1 || frc=$?
    if [ "$frc" -gt 1 ]; then why="Linux: fsck.fat -a could not repair /boot (rc $frc): $(tail -2 $W/fsck.out | tr '\n' ' ')"
    elif [ "$frc" = 1 ]; then
        repaired=$((repaired + 1))
        # More than the dirty flag every mounted FAT has: lost clusters
        # reclaimed, a chain into a free cluster, clusters used twice.
        grep -q -E 'free cluster|claimed|[Cc]ross' $W/fsck.out && broken=$((broken + 1))
    fi
    if [ -z "$why" ] && mount $rdev $M 2>/dev/null && mount -t vfat $bdev $M/boot 2>/dev/null; then
        if [ -z "$why" ]; then
            dep=$(readlink -f "$M$ostree" || true)
            case "$dep" in
            "$M"/ostree/deploy/flw/deploy/$2.*|"$M"/ostree/deploy/flw/deploy/$3.*)
                [ -d "$dep/usr" ] || why="Linux: $ostree resolves to $dep without usr/"
                case "$linux" in /ostree/flw-$(echo "$ostree" | cut -d/ -f5)/*) ;; *) why="Linux: kernel $linux is not of the bootcsum of $ostree";; esac ;;
            *) why="Linux: $ostree resolves to '$dep', not the old or the new deployment" ;;
            esac
        fi
        # treeboot's view of the same disk: bootable, and its default entry
        # (one verify --json: each treeboot run costs a second here).
        if [ -z "$why" ]; then
            treeboot --sysroot $M verify --json > $W/verify.out 2>&1 || why="treeboot verify: $(tr -d '\n' < $W/verify.out | head -c 400)"
        fi
        if [ -z "$why" ]; then
            def=$(tr -d ' \n' < $W/verify.out | grep -o '"default":"[^"]*"' | cut -d'"' -f4)
            [ "${def%%+*}" = "${id%.conf}" ] || [ "$def" = "$id" ] || differ=$((differ + 1))
        fi
        # The first state where fsck.fat repaired more than the dirty flag:
        # the next write must work on what it left.
        if [ -z "$why" ] && [ "$broken" = 1 ] && [ "$tried_next" = 0 ] && [ "$4" != control ]; then
            tried_next=1
            grep -E 'free cluster|claimed|[Cc]ross|^/' $W/fsck.out | head -4 | sed 's/^/  fsck.fat repaired: /'
            if treeboot --sysroot $M deploy --not-as-default flw/v2 > $W/next.out 2>&1 && treeboot --sysroot $M verify >> $W/next.out 2>&1; then
                echo "  and a deploy on the repaired state worked"
            else
                why="Linux: the next deploy failed on the state fsck.fat repaired: $(tail -3 $W/next.out | tr '\n' ' ')"
            fi
        fi
    else
        why="Linux: the file systems do not mount"
    fi
    umount $M/boot 2>/dev/null || true; umount $M 2>/dev/null || true
    losetup -d $bdev; losetup -d $rdev
    points=$((points + 1))
    if [ -n "$why" ]; then
        fails=$((fails + 1))
        if [ "$4" = control ]; then echo "control caught, as it must be: $why"
        else
            echo "LOST-WRITES FAIL phase=$4 entry=$1: $why"
            # The first failing state, for a post-mortem: what fsck.fat
            # (read only) and mtools make of its FAT.
            if [ "$fails" = 1 ]; then
                dd if=$W/check.img of=$W/boot-fail.img bs=512 skip=$ROOT_S count=$BOOT_S status=none
                fsck.fat -n -v $W/boot-fail.img 2>&1 | tail -25 | sed 's/^/  fsck.fat: /' || true
                mdir -/ -a -i $W/boot-fail.img :: 2>&1 | head -40 | sed 's/^/  mdir: /' || true
            fi
        fi
    fi
}

$REPLAY list $W/log.img > $W/entries
total=$(wc -l < $W/entries)
echo "FAT lost writes: $total log entries"
mark_at() { grep -m1 -E "^[0-9]+ mark 0 0 $1\$" $W/entries | cut -d' ' -f1; }
a=$(mark_at deploy); b=$(mark_at rollback); c=$(mark_at done)
cp --sparse=always $W/base.img $W/work.img
$REPLAY replay $W/log.img $W/work.img 0 "$a"
applied=$a; t0=$SECONDS
# Every flush, and 4 points between per phase (8 until 2026-12-07: the
# flushes are where the states differ, and each point costs ~8 s here).
SAMPLES=${LOST_WRITES_SAMPLES:-4}
for phase in "deploy $a $b $V1 $V2" "rollback $b $c $V2 $V1"; do
    set -- $phase; name=$1; from=$2; to=$3; old=$4; new=$5
    n=$((to - from)); stride=$(( n / SAMPLES + 1 ))
    sed -n "$((from + 1)),$((to + 1))p" $W/entries > $W/phase
    # Only states that differ are checked: an entry that writes nothing (a
    # bare flush, a mark) leaves the disk as the state checked before it.
    wrote=1
    while read -r k flags _ nr _; do
        [ "${nr:-0}" != 0 ] && wrote=1
        pick=""
        case "$flags" in *flush*|*fua*) pick=1; flushes=$((flushes + 1));; esac
        [ $(( (k - from) % stride )) = 0 ] && pick=1
        [ "$k" = "$to" ] && pick=1
        [ -n "$pick" ] || continue
        if [ "$wrote" = 0 ]; then same=$((same + 1)); continue; fi
        $REPLAY replay $W/log.img $W/work.img $applied $((k + 1))
        applied=$((k + 1)); wrote=0
        check "$k" "$old" "$new" "$name"
    done < $W/phase
done
echo "KOLA-BENCH fat-lost-writes points=$points flushes=$flushes unchanged-skipped=$same fsck-repaired=$repaired fsck-repaired-more=$broken failures=$fails views-differ=$differ entries=$total seconds=$((SECONDS - t0))"
[ "$fails" = 0 ] || fatal "$fails of $points replayed states are not bootable"
# After the whole log (with what the unmount wrote after the last mark)
# the rollback is complete: v1 is the default again, and systemd-boot's
# settings and nothing else are beside the list.
$REPLAY replay $W/log.img $W/work.img $applied "$total"
mount_img() { losetup -f --show --sizelimit $BOOT_OFF $1 > $W/r; losetup -f --show -o $BOOT_OFF --sizelimit $((BOOT_S * 512)) $1 > $W/b
    mount "$(cat $W/r)" $M; mount -t vfat "$(cat $W/b)" $M/boot; }
umount_img() { umount $M/boot; umount $M; losetup -d "$(cat $W/b)"; losetup -d "$(cat $W/r)"; }
mount_img $W/work.img
def=$(treeboot --sysroot $M status --json | tr -d ' \n' | grep -o '"checksum":"[0-9a-f]*"' | head -1 | cut -d'"' -f4)
[ "$def" = "$V1" ] || fatal "after the whole log the default is $def, not v1"
[ "$(cat $M/boot/loader/loader.conf)" = "timeout 0" ] || fatal "loader.conf was not kept"
ls -a $M/boot | tr '\n' ' ' | grep -qx '\. \.\. loader ostree ' || fatal "/boot holds more than the list and the kernels: $(ls -a $M/boot | tr '\n' ' ')"
umount_img
# Controls: the checks must see a broken state.
control() { # what to break, run in the mounted copy
    cp --sparse=always $W/work.img $W/ctl.img
    mount_img $W/ctl.img
    (cd $M && eval "$1")
    umount_img
    local before=$fails
    check control "$V1" "$V2" control $W/ctl.img
    [ "$fails" = $((before + 1)) ] || fatal "the checks did not notice: $1"
}
control 'k=$(sed -n "s/^linux //p" boot/loader/entries/ostree-2*.conf); truncate -s 1000 "boot$k"'
control 'chattr -i ostree/deploy/flw/deploy/$V1.*; rm -rf ostree/deploy/flw/deploy/$V1.*'
control 'rm boot/loader/entries/ostree-*.conf'
echo "controls: a truncated kernel, a missing deployment and a list without entries are all reported"
echo "FAT lost writes: ok"
