#!/bin/bash
# Early-boot benchmark: treeboot-prepare-root beside Debian's
# ostree-prepare-root on the same sysroot (each run in a fresh private mount
# namespace), binary sizes, generator time. Prints one line per figure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REL=$ROOT/target/release
TB=$REL/treeboot
N=${BENCH_EARLY_RUNS:-30}
W=$(mktemp -d /var/tmp/treeboot-bench-early-XXXXXX)
trap 'chattr -R -i "$W" 2>/dev/null || true; rm -rf "$W"' EXIT
S=$W/sysroot
"$TB" init-fs "$S" >/dev/null
"$TB" --sysroot "$S" os-init bench >/dev/null
t=$W/tree
mkdir -p "$t/usr/lib/modules/6.1.0/" "$t/usr/etc" "$t/sysroot" "$t/boot" "$t/var" "$t/proc"
echo k > "$t/usr/lib/modules/6.1.0/vmlinuz"; echo i > "$t/usr/lib/modules/6.1.0/initramfs.img"
echo x > "$t/usr/etc/x"; ln -s sysroot/ostree "$t/ostree"
ostree --repo="$S/ostree/repo" commit -b bench/os --tree=dir="$t" >/dev/null
"$TB" --sysroot "$S" deploy --karg root=LABEL=root bench/os >/dev/null
grep '^options ' "$S"/boot/loader/entries/*.conf | sed 's/^options //' > "$W/cmdline"
mkdir -p "$W/mnt"

# One namespace per run; time only the prepare-root command itself.
time_runs() { # label command...
    local label=$1; shift
    local total
    total=$(unshare -m --propagation private bash -c '
        set -e
        mount -t tmpfs tmpfs /run
        mount --bind "$0" /proc/cmdline
        sum=0
        for i in $(seq '"$N"'); do
            mount --bind "'"$S"'" "'"$W"'/mnt"
            t0=$(date +%s%N)
            "$@" "'"$W"'/mnt" >/dev/null 2>&1
            t1=$(date +%s%N)
            sum=$((sum + t1 - t0))
            # Lazily: a file-backed composefs image keeps the sysroot busy.
            umount -R -l "'"$W"'/mnt"
            rm -f /run/ostree-booted
        done
        echo $sum' "$W/cmdline" "$@")
    echo "scale=3; $total / $N / 1000000" | bc
}
ours=$(time_runs treeboot "$REL/treeboot-prepare-root" --no-bind-var --cmdline "$W/cmdline")
theirs=$(time_runs ostree /usr/lib/ostree/ostree-prepare-root)
printf 'prepare-root wall (mean of %d, in a mount namespace): ostree-prepare-root %.3f ms, treeboot-prepare-root %.3f ms, ratio %.2f (target <= 1.0)\n' "$N" "$theirs" "$ours" "$(echo "$ours / $theirs" | bc -l)"

# composefs: the same commit deployed again with an image (trixie's root's
# mkcomposefs, from sid: hack/ostree-reference), then prepare-root on that
# deployment without (the kernel argument off) and with composefs.
REF=$("$ROOT/hack/ostree-reference" trixie)
printf '#!/bin/sh\nexec chroot %s mkcomposefs "$@"\n' "$REF" > "$W/mkcomposefs"; chmod 0755 "$W/mkcomposefs"
ostree --repo="$S/ostree/repo" config set ex-integrity.composefs yes
TREEBOOT_MKCOMPOSEFS=$W/mkcomposefs "$TB" --sysroot "$S" deploy --karg root=LABEL=root bench/os >/dev/null
entry=$(ls "$S"/boot/loader/entries/*.conf | sort -V | tail -1)
opts=$(sed -n 's/^options //p' "$entry")
echo "$opts ostree.prepare-root.composefs=0" > "$W/cmdline"
plain=$(time_runs treeboot "$REL/treeboot-prepare-root" --no-bind-var --cmdline "$W/cmdline")
echo "$opts ostree.prepare-root.composefs=1" > "$W/cmdline"
cfs=$(time_runs treeboot "$REL/treeboot-prepare-root" --no-bind-var --cmdline "$W/cmdline")
printf 'prepare-root wall (mean of %d): without composefs %.3f ms, with composefs (EROFS image + overlay) %.3f ms, +%.3f ms\n' "$N" "$plain" "$cfs" "$(echo "$cfs - $plain" | bc -l)"

for b in treeboot-prepare-root treeboot-remount treeboot-generator treeboot; do
    strip -o "$W/$b.stripped" "$REL/$b"
    printf 'binary size stripped: %s %d KiB\n' "$b" "$(( $(stat -c %s "$W/$b.stripped") / 1024 ))"
done
# The static build for PID 1 mode (make static).
STATIC=$(dirname "$0")/../target/static/x86_64-unknown-linux-gnu/release/treeboot-prepare-root
if [[ -x $STATIC ]]; then
    strip -o "$W/static.stripped" "$STATIC"
    printf 'binary size stripped: treeboot-prepare-root-static (PID 1 mode, no shared library) %d KiB\n' "$(( $(stat -c %s "$W/static.stripped") / 1024 ))"
else
    echo "binary size stripped: treeboot-prepare-root-static not built (make static)"
fi
printf 'binary size stripped: ostree-prepare-root (Debian) %d KiB (+ shared libraries: %s)\n' "$(( $(stat -c %s /usr/lib/ostree/ostree-prepare-root) / 1024 ))" "$(ldd /usr/lib/ostree/ostree-prepare-root | wc -l)"

# The generator, as systemd runs it: three output directories, real /proc/cmdline.
gen_total=$(unshare -m --propagation private bash -c '
    mount --bind "$0" /proc/cmdline
    sum=0
    for i in $(seq '"$N"'); do
        d=$(mktemp -d)
        t0=$(date +%s%N); "'"$REL"'/treeboot-generator" "$d" "$d" "$d"; t1=$(date +%s%N)
        sum=$((sum + t1 - t0)); rm -rf "$d"
    done
    echo $sum' "$W/cmdline")
printf 'generator wall (mean of %d): %.3f ms (target <= 5 ms)\n' "$N" "$(echo "scale=3; $gen_total / $N / 1000000" | bc)"
