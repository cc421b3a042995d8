#!/bin/bash
## kola:
##   timeoutMin: 15
##   tags: "platform-independent"
##   description: composefs with fs-verity: an update whose /etc asks for composefs (enabled = verity) is staged with its image and boots with / the composefs overlay and /usr read-only; a second update staged from the composefs root boots the same way; an object changed on the disk behind the image is refused by the kernel instead of run.
# treeboot-vm: platforms=trixie-uefi-grub (trixie: kernel 6.12 with EROFS, overlayfs data-only layers and fs-verity on the ext4 root; the boot loader plays no part)
set -xeuo pipefail
. /run/kola/tests/lib.sh
# The staged deployment's directory (from the staged record, through status).
staged_dir() {
    local o
    o=$(treeboot status --json | tr -d '\n' | sed 's/}, *{/}\n{/g' | grep '"staged": *true')
    echo "/ostree/deploy/debian/deploy/$(field checksum <<<"$o").$(field serial <<<"$o")"
}
root_mount() { findmnt -no FSTYPE,SOURCE /; }
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    test "$(root_mount | cut -d' ' -f1)" != overlay || fatal "the image's deployment is composefs already"
    # The admin asks for composefs with fs-verity; the next deployment's
    # /etc carries it.
    mkdir -p /etc/ostree
    printf '[composefs]\nenabled=verity\n' > /etc/ostree/prepare-root.conf
    new_commit 2
    t0=$(date +%s%N)
    treeboot stage debian/test
    echo "stage with a composefs image: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    d=$(staged_dir)
    test -s "$d/.ostree.cfs" || fatal "the staged deployment has no composefs image: $(ls -a "$d")"
    /tmp/autopkgtest-reboot composefs
    ;;
composefs)
    test "$(booted_version)" = 2 || fatal "booted $(booted_version)"
    test "$(root_mount)" = "overlay composefs" || fatal "/ is $(root_mount), not the composefs overlay"
    grep -q 'verity=require' <<<"$(findmnt -no OPTIONS /)" || fatal "not mounted with verity=require: $(findmnt -no OPTIONS /)"
    ! touch /usr/kola-write 2>/dev/null || fatal "/usr is writable"
    ! touch /kola-write 2>/dev/null || fatal "/ is writable"
    echo kept > /etc/kola-composefs || fatal "/etc is not writable"
    grep -q '^/dev/' <<<"$(findmnt -no SOURCE /sysroot)" || fatal "/sysroot is not the physical root"
    treeboot status
    treeboot verify
    # A second update, staged from the composefs root, with a program of
    # its own.
    ov=/tmp/kola-ov-3
    mkdir -p $ov/usr/libexec
    printf '#!/bin/sh\necho genuine\n' > $ov/usr/libexec/kola-payload
    chmod 0755 $ov/usr/libexec/kola-payload
    new_commit 3 $ov
    treeboot stage debian/test
    d=$(staged_dir)
    test -s "$d/.ostree.cfs" || fatal "the staged deployment has no composefs image"
    # Change the program's object on the disk, behind the image: a new
    # file at the object's path (the object itself has fs-verity now and
    # cannot be written), as anyone with the disk in hand could put there.
    c=$(ostree --repo=/sysroot/ostree/repo ls -C debian/test /usr/libexec/kola-payload | awk '{ print $5 }')
    obj=/sysroot/ostree/repo/objects/${c:0:2}/${c:2}.file
    test -f "$obj" || fatal "no object $obj"
    printf '#!/bin/sh\necho ALTERED\n' > "$obj.new"
    chmod 0755 "$obj.new"
    mv -f "$obj.new" "$obj"
    echo "$d" > /var/lib/kola/cfs-dep
    /tmp/autopkgtest-reboot tampered
    ;;
tampered)
    test "$(booted_version)" = 3 || fatal "booted $(booted_version)"
    test "$(root_mount)" = "overlay composefs" || fatal "/ is $(root_mount)"
    test "$(cat /etc/kola-composefs)" = kept || fatal "the /etc edit did not carry over"
    # The program's object changed: the kernel refuses it rather than run
    # it (its fs-verity digest is not the one the image records).
    if out=$(/usr/libexec/kola-payload 2>&1); then fatal "the altered program ran: $out"; fi
    echo "the altered object: $out"
    grep -q 'Input/output error' <<<"$out" || fatal "refused, but not by fs-verity: $out"
    # The checkout beside the image still holds the genuine file.
    test "$(sh "$(cat /var/lib/kola/cfs-dep)/usr/libexec/kola-payload")" = genuine || fatal "the checkout's copy changed too"
    treeboot verify
    echo "composefs: ok"
    ;;
esac
