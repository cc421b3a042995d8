#!/bin/bash
# The demo: a sysroot lifecycle in target/demo/sysroot, one step a line.
set -euo pipefail
cd "$(dirname "$0")/.."
TB=${TREEBOOT:-target/release/treeboot}
D=target/demo
S=$D/sysroot
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "Start from nothing"
if [[ -d $D ]]; then chattr -R -i "$D" 2>/dev/null || true; rm -rf "$D"; fi
mkdir -p "$D"

step "Create an empty sysroot and a stateroot 'demo'"
run "$TB" init-fs "$S"
run "$TB" --sysroot "$S" os-init demo

make_tree() { # dir version
    local t=$1 v=$2
    mkdir -p "$t/usr/lib/modules/6.1.0-demo" "$t/usr/etc/ssh" "$t/usr/bin" "$t/var/lib"
    echo "demo kernel" > "$t/usr/lib/modules/6.1.0-demo/vmlinuz"
    echo "demo initramfs" > "$t/usr/lib/modules/6.1.0-demo/initramfs.img"
    printf 'NAME="Demo OS"\nID=demo\nPRETTY_NAME="Demo OS"\nVERSION_ID=%s\n' "$v" > "$t/usr/lib/os-release"
    echo "Welcome to Demo OS $v" > "$t/usr/etc/motd"
    echo "demo" > "$t/usr/etc/hostname"
    printf 'PermitRootLogin no\n# release %s\n' "$v" > "$t/usr/etc/ssh/sshd_config"
    printf '#!/bin/sh\necho demo %s\n' "$v" > "$t/usr/bin/demo"
}

step "Commit version 1.0 of a small OS tree (kernel + initramfs in usr/lib/modules)"
make_tree "$D/tree-1" 1.0
run ostree --repo="$S/ostree/repo" commit -b demo/stable -s "Demo OS 1.0" --add-metadata-string=version=1.0 --tree=dir="$D/tree-1"

step "Deploy version 1.0"
run "$TB" --sysroot "$S" deploy --os demo --karg root=LABEL=root --karg-append quiet demo/stable
run cat "$S"/boot/loader/entries/ostree-1.conf

step "The admin edits /etc of the running deployment"
ETC=$("$TB" --sysroot "$S" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["deployments"][0]["deploy_path"])')/etc
run sh -c "echo 'PermitRootLogin prohibit-password' > $S/$ETC/ssh/sshd_config"
run sh -c "echo 'admin note' > $S/$ETC/local.conf"
run rm "$S/$ETC/hostname"

step "Preview: what differs between /usr/etc and /etc"
run "$TB" --sysroot "$S" etc diff

step "Commit version 2.0 and deploy it (the /etc changes are merged)"
make_tree "$D/tree-2" 2.0
run ostree --repo="$S/ostree/repo" commit -b demo/stable -s "Demo OS 2.0" --add-metadata-string=version=2.0 --tree=dir="$D/tree-2"
run "$TB" --sysroot "$S" deploy demo/stable
NEW=$("$TB" --sysroot "$S" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["deployments"][0]["deploy_path"])')
run cat "$S/$NEW/etc/ssh/sshd_config" "$S/$NEW/etc/motd" "$S/$NEW/etc/local.conf"
run test ! -e "$S/$NEW/etc/hostname"

step "Status, and what 2.0 changed against 1.0 (files of /usr; packages when the trees have dpkg's database)"
run "$TB" --sysroot "$S" status
run "$TB" --sysroot "$S" diff --verbose

step "Debian's ostree reads the same sysroot"
run ostree admin --sysroot="$S" status

step "Roll back to 1.0"
run "$TB" --sysroot "$S" rollback
run "$TB" --sysroot "$S" status

step "Done: the sysroot is in $S"
