# The boot suite's platforms, in one place: sourced by tests/vm/run (the
# scenarios' default) and tests/vm/prefetch (the root file systems to
# build ahead). Each is built by build-image.sh, which says what it is.
ALL_PLATFORMS="bookworm-bios-grub trixie-uefi-grub trixie-uefi-sdboot"
