#!/bin/bash
# dracut module: treeboot-prepare-root and its unit in the initramfs.

check() {
    # Only when asked for (dracut.conf.d/treeboot.conf adds it).
    require_binaries /usr/lib/treeboot/treeboot-prepare-root || return 1
    return 255
}

depends() {
    echo systemd
    return 0
}

# composefs (a deployment whose prepare-root.conf asks for it): its image is
# EROFS, mounted from the file or from a loop device, under overlayfs.
installkernel() {
    hostonly='' instmods erofs overlay loop
}

install() {
    inst_binary /usr/lib/treeboot/treeboot-prepare-root
    for r in /usr/lib /etc; do
        if [[ -f "$r/ostree/prepare-root.conf" ]]; then
            inst_simple "$r/ostree/prepare-root.conf"
        fi
    done
    inst_simple "${systemdsystemunitdir}/treeboot-prepare-root.service"
    mkdir -p "${initdir}${systemdsystemconfdir}/initrd-root-fs.target.wants"
    ln_r "${systemdsystemunitdir}/treeboot-prepare-root.service" \
        "${systemdsystemconfdir}/initrd-root-fs.target.wants/treeboot-prepare-root.service"
}
