#!/bin/bash
# Build the VM test image of one platform: a Debian OS (systemd,
# linux-image-amd64, dracut with treeboot's module, Debian's ostree CLI,
# treeboot installed with `make install`) committed to an ostree repo,
# deployed with `treeboot deploy --sysroot` on an ext4 root in a raw disk
# image whose GRUB boots through treeboot's grub/ integration.
# Platforms (docs/vm-tests.md):
#   bookworm-bios-grub  bookworm (kernel 6.1, systemd 252), one MBR partition,
#                       BIOS GRUB 2.06 (the host's grub-pc-bin)
#   trixie-uefi-grub    trixie (kernel 6.12, systemd 257, ostree 2025.2 with
#                       ostree-boot installed), GPT with an ESP (FAT, built in
#                       userspace with mtools: this host cannot mount vfat)
#                       holding trixie's GRUB 2.12 as EFI/BOOT/BOOTX64.EFI,
#                       booted by OVMF
#   trixie-uefi-sdboot  the same OS; the ESP (FAT32, 256 MiB) is /boot and
#                       holds systemd-boot 257 as EFI/BOOT/BOOTX64.EFI, the
#                       deployment list as the directory loader/ and the
#                       kernels (docs/fat-boot.md)
# Also WORKDIR/update-repo: an archive repository with debian/update, the
# image's commit plus one file, that the upgrade scenario serves over HTTP
# inside the guest.
# Usage: build-image.sh WORKDIR [PLATFORM] -> WORKDIR/base.img,
#        WORKDIR/update-repo (and WORKDIR/OVMF_VARS.fd on UEFI)
#        build-image.sh --rootfs-only PLATFORM -> only the cached root file
#        system (tests/vm/prefetch: built while the cargo tests run)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [[ ${1:-} == --rootfs-only ]]; then
    ROOTFS_ONLY=1 W="" PLATFORM=${2:?usage: build-image.sh --rootfs-only PLATFORM}
else
    ROOTFS_ONLY="" W=${1:?usage: build-image.sh WORKDIR [PLATFORM]} PLATFORM=${2:-bookworm-bios-grub}
    mkdir -p "$W"
fi
# busybox: its httpd serves the update repository on 127.0.0.1 in the guest.
PKGS=systemd,systemd-sysv,udev,linux-image-amd64,dracut,ostree,e2fsprogs,kmod,procps,util-linux,dmsetup,busybox
case $PLATFORM in
bookworm-bios-grub) SUITE=bookworm; FIRMWARE=bios; BOOTLOADER=grub ;;
trixie-uefi-grub|trixie-uefi-sdboot)
    SUITE=trixie; FIRMWARE=uefi; BOOTLOADER=${PLATFORM##*-}
    # ostree-boot: a real Debian ostree system has it (its dracut module,
    # finalize units and generator) beside treeboot; grub-efi-amd64-bin:
    # the EFI GRUB and its modules, made into an image in the chroot;
    # systemd-boot-efi: systemd-boot's EFI binary (not the systemd-boot
    # package, whose postinst runs bootctl install); mtools: the FAT
    # lost-writes test reads FAT as firmware does. One root file system
    # (one cache entry) serves both trixie platforms.
    # composefs/sid: mkcomposefs, which writes a composefs deployment's
    # image (17-composefs); Debian has it from forky/sid on, and its 1.0.8
    # needs nothing newer than trixie has. Everything else is trixie's
    # (APT::Default-Release below).
    PKGS=$PKGS,ostree-boot,grub-efi-amd64-bin,systemd-boot-efi,mtools,dosfstools,composefs/sid ;;
*) echo "build-image.sh: unknown platform $PLATFORM" >&2; exit 2 ;;
esac
MIRROR=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if [[ $SUITE == bookworm ]]; then
    # The host's own sources (bookworm, -updates, -security); the key of the
    # images built before there was a second platform.
    SOURCES=()
    KEY=$(echo "bookworm $PKGS v1" | sha256sum | cut -c1-16)
    APTOPTS=()
else
    # sid only for what is asked from it by name; its Release file may be
    # older than its week of validity on a mirror (the packages are still
    # checked against the archive key).
    SOURCES=("deb $MIRROR $SUITE main" "deb $MIRROR sid main")
    APTOPTS=(--aptopt="APT::Default-Release \"$SUITE\"" --aptopt='Acquire::Check-Valid-Until "false"')
    KEY=$(echo "$SUITE $PKGS $MIRROR v2" | sha256sum | cut -c1-16)
fi
# The root file system is cached outside the clone, keyed by its package
# list, so that a fresh clone (CI) does not build it again.
CACHE=${TREEBOOT_VM_CACHE:-/var/cache/treeboot/vm}
mkdir -p "$CACHE"
TAR=$CACHE/rootfs-$KEY.tar
# One build per key at a time: tests/vm/prefetch may be building it in the
# background (while the cargo tests run); then this waits for it.
exec 8>"$CACHE/rootfs-$KEY.lock"
if ! flock -n 8; then
    echo "vm: waiting for the $SUITE root file system being built in the background ($CACHE/rootfs-$KEY.log)"
    t=$SECONDS; flock 8; echo "vm: waited $((SECONDS - t))s for it"
fi
# mmdebstrap guesses its output format from the name, and a name it does not
# know (such as *.tar.tmp) gives a directory: say tar, and keep the suffix.
[[ -d $TAR ]] && rm -rf "$TAR"
if [[ ! -f $TAR || ! -s $TAR ]]; then
    echo "vm: building the Debian $SUITE root file system (mmdebstrap, ~2-6 min)"
    t=$SECONDS
    mmdebstrap --variant=apt --include="$PKGS" --aptopt='Apt::Install-Recommends "false"' "${APTOPTS[@]}" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --format=tar "$SUITE" "$CACHE/rootfs-$KEY.partial.tar" "${SOURCES[@]}" >"$CACHE/rootfs-$KEY.log" 2>&1 \
        || { tail -30 "$CACHE/rootfs-$KEY.log"; rm -f "$CACHE/rootfs-$KEY.partial.tar"; exit 1; }
    mv "$CACHE/rootfs-$KEY.partial.tar" "$TAR"
    echo "vm: $SUITE root file system built in $((SECONDS - t))s: $TAR"
else
    echo "vm: reusing the cached root file system $TAR"
fi
exec 8>&-
[[ -n $ROOTFS_ONLY ]] && exit 0
R=$W/rootfs
rm -rf "$R"; mkdir -p "$R"
tar -C "$R" -xf "$TAR"

echo "vm: installing treeboot into the image"
make -C "$ROOT" install DESTDIR="$R" PREFIX=/usr >/dev/null
install -Dm755 "$ROOT/tests/vm/guest/kola-runner" "$R/usr/lib/treeboot-test/kola-runner"
cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" --example replay-log >/dev/null 2>&1 \
    || cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" --example replay-log
install -Dm755 "$ROOT/target/release/examples/replay-log" "$R/usr/lib/treeboot-test/replay-log"
for f in autopkgtest-reboot autopkgtest-reboot-prepare; do
    install -Dm755 "$ROOT/tests/vm/guest/$f" "$R/usr/lib/treeboot-test/$f"
done
install -Dm644 "$ROOT/tests/vm/guest/treeboot-kola.service" "$R/usr/lib/systemd/system/treeboot-kola.service"
ln -sf /usr/lib/systemd/system/treeboot-kola.service "$R/etc/systemd/system/multi-user.target.wants/treeboot-kola.service"
ln -sf /usr/lib/systemd/system/treeboot-boot-complete.service "$R/etc/systemd/system/multi-user.target.wants/treeboot-boot-complete.service"
# Boot assessment as docs/installing.md enables it: the checks before
# boot-complete.target, the rollback made permanent, the blessing.
mkdir -p "$R/etc/systemd/system/boot-complete.target.requires"
ln -sf /usr/lib/systemd/system/treeboot-health-check.service "$R/etc/systemd/system/boot-complete.target.requires/treeboot-health-check.service"
for u in treeboot-health-check treeboot-assess-boot; do
    ln -sf /usr/lib/systemd/system/$u.service "$R/etc/systemd/system/multi-user.target.wants/$u.service"
done
# No login prompt on the serial console: agetty's vhangup() would cut the
# test's output (and its writes would fail with EIO).
ln -sf /dev/null "$R/etc/systemd/system/serial-getty@ttyS0.service"
# Less for the emulated CPU to do at every boot: no gettys on the virtual
# consoles nobody reads, no kvm modules (-cpu max offers SVM; nothing here
# runs a nested guest), no timers that only a long-lived system needs.
# dracut-shutdown unpacks the initramfs into /run at every shutdown, for
# storage a plain ext4 root does not have.
# udev loads a module for every device and CPU feature it finds, and under
# TCG each load costs seconds (drm alone stalled a guest for 26 s, "soft
# lockup", with a second guest beside it): none of these devices is used
# here (no display, no SATA/IDE/floppy disk, no watchdog, SMBus, speaker or
# mouse; the kernel's generic crypto serves what the CPU extensions would).
# Blacklisting stops loads by alias (udev); the modprobe@ units that load
# some by name at every boot are masked. The tests use loop and dm_mod,
# which stay. The one-shot caches rebuilt when /usr is newer than /etc
# (every deployment's first boot) are not rebuilt: nothing reads them here.
mkdir -p "$R/etc/modprobe.d"
printf 'blacklist %s\n' kvm kvm_amd kvm_intel drm bochs ahci ata_piix ata_generic floppy pcspkr psmouse \
    serio_raw evdev joydev i2c_piix4 i2c_i801 lpc_ich iTCO_wdt intel_pmc_bxt efi_pstore nfit \
    aesni_intel ghash_clmulni_intel polyval_clmulni sha1_ssse3 sha256_ssse3 sha512_ssse3 crct10dif_pclmul \
    crc32_pclmul > "$R/etc/modprobe.d/treeboot-vm.conf"
for u in getty-static.service getty@.service autovt@.service dracut-shutdown.service dpkg-db-backup.timer \
    systemd-tmpfiles-clean.timer logrotate.timer apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
    modprobe@drm.service modprobe@efi_pstore.service modprobe@configfs.service modprobe@fuse.service \
    ldconfig.service systemd-journal-catalog-update.service systemd-hwdb-update.service systemd-update-done.service \
    e2scrub_reap.service; do
    ln -sf /dev/null "$R/etc/systemd/system/$u"
done
# Generators systemd runs at every start of its manager (each boot, in the
# root and again after a soft reboot, and at every daemon-reload), for what
# this guest does not have: no kernel-command-line units or shells, no
# getty (the serial one is masked above), no GPT auto-mounts (fstab says
# where /boot is), no hibernation, rc.local, SysV scripts, sshd, TPM or
# offline updates. Under TCG each costs 0.1-0.25 s (1.6 s together,
# measured in the guest). Masked: fstab's, treeboot's and ostree-boot's
# stay, and systemd-boot's bless-boot generator when it is there.
mkdir -p "$R/etc/systemd/system-generators"
for g in systemd-debug-generator systemd-getty-generator systemd-gpt-auto-generator \
    systemd-hibernate-resume-generator systemd-rc-local-generator systemd-run-generator systemd-ssh-generator \
    systemd-system-update-generator systemd-sysv-generator systemd-tpm2-generator; do
    ln -sf /dev/null "$R/etc/systemd/system-generators/$g"
done
echo treeboot-vm > "$R/etc/hostname"
: > "$R/etc/machine-id"
: > "$R/etc/fstab"
if [[ $BOOTLOADER == sdboot ]]; then
    # /boot is the ESP, checked at every boot (passno 2): FAT's writes are
    # unordered, and what a power cut leaves half made, fsck.fat -a repairs
    # before Linux meets it (docs/fat-boot.md).
    echo 'PARTLABEL=esp /boot vfat umask=0022 0 2' > "$R/etc/fstab"
fi
if [[ $SUITE != bookworm ]]; then
    # What a Debian system with GRUB has (grub2-common ships it there): libostree's
    # finalize (ostree-boot) runs grub-mkconfig, whose 15_ostree needs it.
    mkdir -p "$R/etc/default"
    cat > "$R/etc/default/grub" <<'EOF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX=""
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
fi
# On bookworm only the ostree CLI is installed; on trixie ostree-boot too,
# whose prepare-root module treeboot's dracut.conf.d omits (checked below).
# treeboot's dracut.conf.d adds 98treeboot.
# Only the drivers this guest boots from (--drivers is exclusive; their
# dependencies come along): the initramfs shrinks from 38 MB to a few, which
# SeaBIOS and GRUB read and the kernel unpacks under TCG at every boot.

KVER=$(ls "$R/usr/lib/modules" | head -1)
echo "vm: dracut initramfs for $KVER with the treeboot module"
unshare -m --propagation private bash -c "
    set -e
    mount -t proc proc '$R/proc'; mount --rbind /sys '$R/sys'; mount --rbind /dev '$R/dev'
    # Modules uncompressed (trixie ships them xz-compressed): every boot
    # loads them, in the initramfs and after, and unpacking xz under TCG
    # is slow.
    find '$R/usr/lib/modules/$KVER' -name '*.ko.xz' -exec xz -d -T1 {} +
    chroot '$R' depmod -a '$KVER'
    # No dracut qemu module (it adds the SATA, IDE and NVDIMM drivers of a
    # QEMU machine, which udev then loads); the blacklist above goes in too.
    chroot '$R' dracut --force --no-hostonly --add treeboot --omit 'plymouth nfs iscsi lvm dm mdraid multipath crypt qemu qemu-net' \
        --install /etc/modprobe.d/treeboot-vm.conf \
        --drivers 'virtio_pci virtio_blk ext4' \
        --kver '$KVER' /usr/lib/modules/$KVER/initramfs.img >/dev/null 2>'$W/dracut.log'
" || { tail -30 "$W/dracut.log"; exit 1; }
lsinitrd "$R/usr/lib/modules/$KVER/initramfs.img" > "$W/lsinitrd.txt" 2>/dev/null || true
grep -q treeboot-prepare-root "$W/lsinitrd.txt" || { echo "vm: treeboot-prepare-root is not in the initramfs"; exit 1; }
# One prepare-root: treeboot's dracut.conf.d omits ostree-boot's module
# (trixie's ostree-boot adds it in /etc/dracut.conf.d/ostree.conf).
if grep -q ostree-prepare-root "$W/lsinitrd.txt"; then echo "vm: ostree-prepare-root is in the initramfs beside treeboot's"; exit 1; fi
cp "$R/boot/vmlinuz-$KVER" "$R/usr/lib/modules/$KVER/vmlinuz"
rm -rf "$R"/boot/* "$R"/dev/* "$R"/proc/* "$R"/sys/* "$R"/run/* "$R"/tmp/*
# The ostree layout: /etc defaults in /usr/etc, /sysroot and /ostree.
mv "$R/etc" "$R/usr/etc"
mkdir -p "$R/sysroot"
ln -s sysroot/ostree "$R/ostree"
rm -rf "$W/var-seed"; mv "$R/var" "$W/var-seed"; mkdir "$R/var"

IMG=$W/base.img
echo "vm: disk image ($PLATFORM)"
rm -f "$IMG"; truncate -s 3G "$IMG"
if [[ $FIRMWARE == bios ]]; then
    echo 'label: dos
start=2048, type=83, bootable' | sfdisk -q "$IMG"
    ROOT_START=2048
else
    # GPT: the ESP (64 MiB; 256 MiB when it is /boot and holds the
    # kernels), then the root.
    ESP_START=2048 ESP_SECTORS=131072
    [[ $BOOTLOADER == sdboot ]] && ESP_SECTORS=524288
    ROOT_START=$((ESP_START + ESP_SECTORS))
    printf 'label: gpt\nstart=%s, size=%s, type=U, name=esp\nstart=%s, type=L, name=root\n' \
        "$ESP_START" "$ESP_SECTORS" "$ROOT_START" | sfdisk -q "$IMG"
fi
# The root partition's own extent: on GPT the disk ends with the backup
# table, and a file system as long as the rest of the disk would overrun it.
ROOT_PART=$(sfdisk -l -o Start,Sectors "$IMG" | awk -v s="$ROOT_START" '$1 == s { print $2 }')
LOOP=$(losetup -f --show -o $((ROOT_START*512)) --sizelimit $((ROOT_PART*512)) "$IMG")
M=$W/mnt; mkdir -p "$M"
cleanup() { umount "$M" 2>/dev/null || true; losetup -d "$LOOP" 2>/dev/null || true; }
trap cleanup EXIT
mkfs.ext4 -q -L root "$LOOP"
mount "$LOOP" "$M"
TB=$ROOT/target/release/treeboot
"$TB" init-fs "$M" >/dev/null
"$TB" --sysroot "$M" os-init debian >/dev/null
cp -a "$W/var-seed/." "$M/ostree/deploy/debian/var/"
if [[ $BOOTLOADER == grub ]]; then
    mkdir -p "$M/boot/grub"
else
    # systemd-boot's loader/ (as bootctl install leaves it) makes the
    # deployment list a directory, as on the FAT it is copied to below.
    mkdir -p "$M/boot/loader/entries"
    printf 'timeout 0\n' > "$M/boot/loader/loader.conf"
fi
echo "vm: ostree commit of the OS tree"
ostree --repo="$M/ostree/repo" commit -b debian/test -s "treeboot VM test OS" \
    --add-metadata-string=version=1 --tree=dir="$R" >/dev/null
# The update the upgrade scenario fetches: the image's commit with one more
# file, in an archive repository that holds only what is new (its parent
# repository, the image's, lends the rest while committing; the guest has
# the rest already, so a pull fetches only the new objects).
U=$W/update-repo
rm -rf "$U" "$W/update-ov"
ostree --repo="$U" init --mode=archive
ostree --repo="$U" config set core.parent "$M/ostree/repo"
mkdir -p "$W/update-ov/usr/share/treeboot-update"; echo 2 > "$W/update-ov/usr/share/treeboot-update/marker"
ostree --repo="$U" commit -b debian/update -s "treeboot VM test OS, update 2" --add-metadata-string=version=2 \
    --tree=ref="$(ostree --repo="$M/ostree/repo" rev-parse debian/test)" --tree=dir="$W/update-ov" >/dev/null
ostree --repo="$U" config unset core.parent
"$TB" --sysroot "$M" deploy --os debian --karg root=LABEL=root --karg rw \
    --karg console=ttyS0,115200 --karg systemd.show_status=1 --karg mitigations=off --karg panic=5 debian/test
[[ $BOOTLOADER == grub ]] && { echo 'serial --unit=0 --speed=115200'; echo 'terminal_input serial'; echo 'terminal_output serial';
  sed 's/^set timeout=3/set timeout=0/' "$ROOT/grub/grub.cfg"; } > "$M/boot/grub/grub.cfg"
GRUB_MODS="ext2 normal linux search search_label serial terminal configfile test echo loadenv"
"$TB" --sysroot "$M" verify
if [[ $BOOTLOADER == sdboot ]]; then
    # The ESP is /boot: systemd-boot, and all treeboot wrote into /boot
    # (loader/, the kernels in ostree/), copied in from userspace (no vfat
    # here); the root keeps an empty /boot to mount it on.
    ESP=$W/esp.img; rm -f "$ESP"
    mkfs.vfat -F 32 -C -n ESP "$ESP" $((ESP_SECTORS / 2)) >/dev/null
    export MTOOLS_SKIP_CHECK=1
    mmd -i "$ESP" ::/EFI ::/EFI/BOOT
    mcopy -i "$ESP" "$R/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
    mcopy -s -i "$ESP" "$M/boot/loader" "$M/boot/ostree" ::/
    MTOOLS_SKIP_CHECK=1 mdir -/ -b -i "$ESP" :: > "$W/esp-files.txt"
    grep -q '/loader/entries/ostree-1.conf$' "$W/esp-files.txt" || { echo "vm: no entry on the ESP"; cat "$W/esp-files.txt"; exit 1; }
    rm -rf "${M:?}"/boot/*
    dd if="$ESP" of="$IMG" bs=512 seek="$ESP_START" conv=notrunc status=none
    rm -f "$ESP"
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$W/OVMF_VARS.fd"
elif [[ $FIRMWARE == bios ]]; then
    cp -r /usr/lib/grub/i386-pc "$M/boot/grub/"
    grub-mkimage -O i386-pc -o "$W/core.img" -p '(hd0,msdos1)/boot/grub' biosdisk part_msdos $GRUB_MODS
    dd if=/usr/lib/grub/i386-pc/boot.img of="$IMG" bs=440 count=1 conv=notrunc status=none
    dd if="$W/core.img" of="$IMG" bs=512 seek=1 conv=notrunc status=none
else
    # The image's own GRUB (2.12 on trixie), made in its root: grub-mkimage
    # and the modules must be of one version. The ESP holds only the EFI
    # binary; its prefix is /boot/grub on the root, where treeboot's menu is.
    cp -r "$R/usr/lib/grub/x86_64-efi" "$M/boot/grub/"
    chroot "$R" grub-mkimage -O x86_64-efi -o /grubx64.efi -p '(hd0,gpt2)/boot/grub' part_gpt $GRUB_MODS
    ESP=$W/esp.img; rm -f "$ESP"
    mkfs.vfat -C -n ESP "$ESP" $((ESP_SECTORS / 2)) >/dev/null
    MTOOLS_SKIP_CHECK=1 mmd -i "$ESP" ::/EFI ::/EFI/BOOT
    MTOOLS_SKIP_CHECK=1 mcopy -i "$ESP" "$R/grubx64.efi" ::/EFI/BOOT/BOOTX64.EFI
    dd if="$ESP" of="$IMG" bs=512 seek="$ESP_START" conv=notrunc status=none
    rm -f "$ESP"
    # Each scenario boots with its own copy of the firmware's variables.
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$W/OVMF_VARS.fd"
fi
if [[ $SUITE != bookworm ]]; then
    # fs-verity on the trixie root, for composefs's `verity` (17-composefs):
    # set once the image is written, since this host's kernel has no
    # fs-verity and so mounts such a file system read-only only. GRUB reads
    # past this read-only-compatible feature.
    umount "$M"
    tune2fs -O verity "$LOOP" >/dev/null
fi
sync
echo "vm: image ready: $IMG"
