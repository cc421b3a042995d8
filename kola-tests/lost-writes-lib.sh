# The checks of the lost-writes test (09-lost-writes.sh), sourced. They need
# no guest: the harness runs them on the host from what the guest leaves on
# its export disk (tests/vm/host/09-lost-writes), and the guest runs them
# itself where there is no such disk (under real kola).
# Input, in $W: log.img (the dm-log-writes log), base.img (the device as
# the log starts from it), meta (V1 V2: the commits; KA KB: the first 16 hex
# digits of the sha256 of their kernels). Commands: $TREEBOOT, $REPLAY,
# $OSTREE. Mount points: $M, $G. LOST_WRITES_SAMPLES: non-flush points per
# operation (default 40).
lost_writes_check() {
    local MAX_BETWEEN=${LOST_WRITES_SAMPLES:-40}
    . $W/meta
    mkdir -p $M $G
    $REPLAY list $W/log.img > $W/entries
    local total; total=$(wc -l < $W/entries)
    echo "lost writes: $total log entries"
    fails=0; points=0; flushes=0; differ=0
    local a b c applied t0 phase name from to old new n stride k flags pick def
    a=$(lw_mark_at deploy); b=$(lw_mark_at rollback); c=$(lw_mark_at done)
    cp --sparse=always $W/base.img $W/work.img
    $REPLAY replay $W/log.img $W/work.img 0 "$a"
    applied=$a
    t0=$SECONDS
    # Phases between marks, with the deployments each may leave as the default.
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
            lw_check "$k" "$old" "$new" "$name"
        done < $W/phase
    done
    echo "LOST-WRITES points=$points flushes=$flushes failures=$fails views-differ=$differ entries=$total seconds=$((SECONDS - t0))"
    # The whole log replayed: the rollback is complete, v1 is the default again.
    mount -o loop $W/work.img $M
    def=$($TREEBOOT --sysroot $M status --json | tr -d ' \n' | grep -o '"checksum":"[0-9a-f]*"' | head -1 | cut -d'"' -f4)
    umount $M
    [ "$def" = "$V1" ] || { echo "FAIL: after the whole log the default is $def, not v1"; return 1; }
    [ "$fails" = 0 ] || { echo "FAIL: $fails of $points replayed states are not bootable"; return 1; }
    # Controls: the checks must see a broken state. A half-written default
    # kernel, then a default deployment that is gone.
    lw_control 'k=.$(grep -m1 "^  linux " boot/loader/grub.cfg | cut -d" " -f4); truncate -s 1000 "$k"' || return 1
    lw_control 'chattr -i ostree/deploy/lw/deploy/$V1.*; rm -rf ostree/deploy/lw/deploy/$V1.*' || return 1
    lw_control 'truncate -s 512 boot/grub/grubenv' || return 1
    echo "controls: a truncated kernel, a missing deployment and a cut grubenv are all reported"
}

lw_mark_at() { grep -m1 -E "^[0-9]+ mark 0 0 $1\$" $W/entries | cut -d' ' -f1; }

# The state after replaying entries 0..=K: the checks a boot would make.
lw_check() { # K old new phase
    local k=$1 why="" dep=""
    cp --sparse=always "${CHECK_FROM:-$W/work.img}" $W/check.img
    local dev; dev=$(losetup -f --show $W/check.img)
    # GRUB: reads the file system as it is on disk, without the journal.
    local linux="" initrd="" ostree="" kcsum="" l
    if mount -o ro,noload $dev $G 2>/dev/null; then
        if [ -f $G/boot/loader/grub.cfg ]; then
            l=$(sed -n '/^menuentry/,/^}/p' $G/boot/loader/grub.cfg | grep -m1 '^  linux ') || true
            linux=${l#  linux /boot}; linux=${linux%% *}
            ostree=$(echo "$l" | grep -o 'ostree=[^ ]*' | sed 's/ostree=//') || true
            initrd=$(sed -n '/^menuentry/,/^}/p' $G/boot/loader/grub.cfg | grep -m1 '^  initrd ' | sed 's/^  initrd \/boot//') || true
            if [ -z "$linux" ] || [ -z "$ostree" ] || [ -z "$initrd" ]; then why="GRUB: no usable first entry in loader/grub.cfg"
            elif ! [ -f "$G/boot$linux" ] || ! [ -f "$G/boot$initrd" ]; then why="GRUB: $linux or $initrd missing"
            else
                kcsum=$(sha256sum < "$G/boot$linux" | cut -c1-16)
                case "$kcsum" in "$KA"|"$KB") ;; *) why="GRUB: $linux is not a whole kernel";; esac
            fi
            # A menu that counts tries needs the whole environment block:
            # save_env writes only into an existing 1024-byte block.
            if [ -z "$why" ] && grep -q save_env $G/boot/loader/grub.cfg; then
                if [ "$(stat -c %s $G/boot/grub/grubenv 2>/dev/null)" != 1024 ] ||
                    [ "$(head -c 24 $G/boot/grub/grubenv)" != "# GRUB Environment Block" ]; then
                    why="GRUB: the menu counts tries but boot/grub/grubenv is missing or not a whole block"
                fi
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
            $TREEBOOT --sysroot $M verify > $W/verify.out 2>&1 || why="treeboot verify: $(tail -3 $W/verify.out | tr '\n' ' ')"
        fi
        if [ -z "$why" ]; then
            local def; def=$($TREEBOOT --sysroot $M status --json | tr -d ' \n' | grep -o '"checksum":"[0-9a-f]*"' | head -1 | cut -d'"' -f4)
            [ "$def" = "$2" ] || [ "$def" = "$3" ] || why="the default deployment is $def, neither old nor new"
            case "$dep" in */$def.*) ;; *) differ=$((differ + 1));; esac
        fi
        if [ -z "$why" ]; then
            $OSTREE admin status --sysroot=$M >/dev/null 2>$W/ostree.err || why="ostree admin status: $(head -2 $W/ostree.err | tr '\n' ' ')"
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
        else
            echo "LOST-WRITES FAIL phase=$4 entry=$k: $why"
            # The first failing state is kept for a post-mortem.
            [ -e $W/first-failure.img ] || cp --sparse=always "${CHECK_FROM:-$W/work.img}" $W/first-failure.img
        fi
    fi
}

lw_control() { # what to break (a command run in the mounted copy)
    cp --sparse=always $W/work.img $W/ctl.img
    mount -o loop $W/ctl.img $M
    (cd $M && eval "$1")
    umount $M
    local before=$fails
    CHECK_FROM=$W/ctl.img lw_check control "$V1" "$V2" control
    [ "$fails" = $((before + 1)) ] || { echo "FAIL: the checks did not notice: $1"; return 1; }
}
