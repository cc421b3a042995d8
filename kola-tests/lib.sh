# Helpers sourced by the kola tests (the harness copies this file beside them).
booted_csum() { treeboot status --json | tr -d ' \n' | grep -o '"checksum":"[0-9a-f]*","serial":[0-9]*,"refspec":"[^"]*","version":"[^"]*","booted":true' | sed 's/.*"checksum":"\([0-9a-f]*\)".*/\1/'; }
booted_version() { treeboot status --json | tr -d ' \n' | grep -o '"version":"[^"]*","booted":true' | sed 's/"version":"\([^"]*\)".*/\1/'; }
# A new commit on debian/test: the booted tree, /usr/share/kola/version
# holding VERSION, and the files of OVERLAY-DIR if one is given.
# No --no-xattrs (or any other filter): with one, ostree rewrites the
# metadata of every file of the base tree and reads all of it again, 7 s on
# the host and about two minutes in this emulated guest; without, the base
# tree's objects are reused as they are (0.04 s on the host).
new_commit() { # version [overlay-dir]
    local ov=${2:-/tmp/kola-ov-$1}
    mkdir -p "$ov/usr/share/kola"; echo "$1" > "$ov/usr/share/kola/version"
    ostree --repo=/sysroot/ostree/repo commit -b debian/test --tree=ref="$(booted_csum)" \
        --tree=dir="$ov" --add-metadata-string=version="$1" >/dev/null
}
fatal() { echo "FAIL: $*"; exit 1; }
