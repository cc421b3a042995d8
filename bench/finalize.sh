#!/bin/bash
# Finalize benchmark: shutdown time of treeboot's finalize-staged with a
# 1 MiB and a 64 MiB initramfs and 200 modified /etc files, /boot on its own
# ext4 file system, beside Debian's ostree doing the same update. Run by
# bench/run (as `bench/run finalize.sh`); runs itself in a private mount
# namespace. Prints one line per figure.
set -euo pipefail
if [[ "${TREEBOOT_BENCH_NS:-}" != 1 ]]; then
    exec unshare -m --propagation private env TREEBOOT_BENCH_NS=1 "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TB=${TREEBOOT:-$ROOT/target/release/treeboot}
REPS=${BENCH_REPS:-3}
W=$(mktemp -d /var/tmp/treeboot-bench-fin-XXXXXX)
cleanup() { chattr -R -i "$W" 2>/dev/null || true; umount -R "$W"/* 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mount -t tmpfs tmpfs /run

make_tree() { # dir initramfs-MiB seed
    local t=$1 mib=$2 seed=$3
    mkdir -p "$t/usr/lib/modules/6.1.0-bench" "$t/usr/bin"
    head -c 8M /dev/urandom > "$t/usr/lib/modules/6.1.0-bench/vmlinuz"
    head -c "${mib}M" /dev/urandom > "$t/usr/lib/modules/6.1.0-bench/initramfs.img"
    printf 'ID=bench\nPRETTY_NAME="Bench OS"\n' > "$t/usr/lib/os-release"
    for d in $(seq -w 0 19); do
        mkdir -p "$t/usr/etc/d$d"
        for f in $(seq -w 0 99); do echo "default $d/$f $seed" > "$t/usr/etc/d$d/f$f.conf"; done
    done
    echo "$seed" > "$t/usr/bin/version"
}

# A sysroot with /boot on its own 512 MiB ext4, v1 deployed, 200 /etc edits.
make_sysroot() { # dir mib
    local s=$1 mib=$2
    mkdir -p "$s"
    "$TB" init-fs "$s/root" >/dev/null
    truncate -s 512M "$s/boot.img"
    mkfs.ext4 -q -F "$s/boot.img"
    mount -o loop "$s/boot.img" "$s/root/boot"
    "$TB" --sysroot "$s/root" os-init bench >/dev/null
    ostree --repo="$s/root/ostree/repo" commit -b bench/os --timestamp=2026-01-01T00:00:00Z \
        --add-metadata-string=version=1 --tree=dir="$W/tree-$mib-1" >/dev/null
    "$TB" --sysroot "$s/root" deploy --os bench bench/os >/dev/null
    local etc
    etc=$("$TB" --sysroot "$s/root" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["deployments"][0]["deploy_path"])')
    for d in 00 01; do for f in $(seq -w 0 99); do echo "local edit" > "$s/root/$etc/etc/d$d/f$f.conf"; done; done
    ostree --repo="$s/root/ostree/repo" commit -b bench/os --timestamp=2026-01-02T00:00:00Z \
        --add-metadata-string=version=2 --tree=dir="$W/tree-$mib-2" >/dev/null
}

booted_record() { # sysroot -> writes /run/ostree-booted for deployment 0
    local dir
    dir=$1/$("$TB" --sysroot "$1" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["deployments"][0]["deploy_path"])')
    python3 - "$dir" <<'PY'
import os, struct, sys
st = os.stat(sys.argv[1])
# a{sv} with one entry: backing-root-device-inode => (tt)
key = b"backing-root-device-inode\0"
body = key + b"\0" * ((8 - len(key) % 8) % 8)
val = struct.pack("<QQ", st.st_dev, st.st_ino) + b"\0(tt)"
entry = body + val + bytes([len(key)])
data = entry + bytes([len(entry)])
open("/run/ostree-booted", "wb").write(data)
PY
}

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
peak() { /usr/bin/time -f %M -o "$W/rss" "$@" >/dev/null 2>&1; cat "$W/rss"; }

for mib in 1 64; do
    make_tree "$W/tree-$mib-1" "$mib" 1
    make_tree "$W/tree-$mib-2" "$mib" 2
    tb_times=(); tb_rss=0; os_times=(); co_times=()
    for rep in $(seq "$REPS"); do
        s="$W/tb-$mib-$rep"; make_sysroot "$s" "$mib"
        booted_record "$s/root"
        TREEBOOT_NO_SYSTEMCTL=1 "$TB" --sysroot "$s/root" stage bench/os >/dev/null 2>&1
        sync; echo 3 > /proc/sys/vm/drop_caches
        [[ -n "${TREEBOOT_TIMING:-}" ]] && { "$TB" --sysroot "$s/root" finalize-staged 2>&1 | grep timing >&2; exit 0; }
        t0=$(now); tb_rss=$(peak "$TB" --sysroot "$s/root" finalize-staged); t1=$(now)
        tb_times+=("$(echo "$t1 - $t0" | bc)")
        "$TB" --sysroot "$s/root" status --json | grep -q '"version": "2"' || { echo "finalize did not apply" >&2; exit 1; }
        rm -f /run/ostree-booted
        umount "$s/root/boot"; chattr -R -i "$s" 2>/dev/null || true; rm -rf "$s"

        s="$W/os-$mib-$rep"; make_sysroot "$s" "$mib"
        sync; echo 3 > /proc/sys/vm/drop_caches
        t0=$(now); os_rss=$(peak ostree admin --sysroot="$s/root" deploy --os=bench bench/os); t1=$(now)
        os_times+=("$(echo "$t1 - $t0" | bc)")
        # The checkout part of that deploy, which ostree's own finalize does
        # not do at shutdown (it happens at stage time there too).
        c=$(ostree --repo="$s/root/ostree/repo" rev-parse bench/os)
        sync; echo 3 > /proc/sys/vm/drop_caches
        t0=$(now); ostree --repo="$s/root/ostree/repo" checkout -H "$c" "$s/root/ostree/co-bench"; t1=$(now)
        co_times+=("$(echo "$t1 - $t0" | bc)")
        umount "$s/root/boot"; chattr -R -i "$s" 2>/dev/null || true; rm -rf "$s"
    done
    tb=$(printf '%s\n' "${tb_times[@]}" | median)
    os=$(printf '%s\n' "${os_times[@]}" | median)
    co=$(printf '%s\n' "${co_times[@]}" | median)
    est=$(echo "$os - $co" | bc)
    printf 'finalize, %s MiB initramfs, 200 modified /etc: treeboot finalize-staged %.3f s (peak RSS %d KiB); ostree admin deploy %.3f s (peak RSS %d KiB), minus its checkout %.3f s = %.3f s; ratio %.2f (target <= 0.2)\n' \
        "$mib" "$tb" "$tb_rss" "$os" "$os_rss" "$co" "$est" "$(echo "$tb / $est" | bc -l)"
    echo "finalize_${mib}mib_s=$tb" >> "$W/../treeboot-bench-finalize.env" 2>/dev/null || true
done
