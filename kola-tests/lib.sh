# Helpers sourced by the kola tests (the harness copies this file beside them).
booted_csum() { treeboot status --json | tr -d ' \n' | grep -o '"checksum":"[0-9a-f]*","serial":[0-9]*,"refspec":"[^"]*","version":"[^"]*","booted":true' | sed 's/.*"checksum":"\([0-9a-f]*\)".*/\1/'; }
booted_version() { treeboot status --json | tr -d ' \n' | grep -o '"version":"[^"]*","booted":true' | sed 's/"version":"\([^"]*\)".*/\1/'; }
# A new commit on debian/test: the booted tree plus an overlay directory.
new_commit() { # version overlay-dir
    ostree --repo=/sysroot/ostree/repo commit -b debian/test --tree=ref="$(booted_csum)" \
        --tree=dir="$2" --add-metadata-string=version="$1" --no-xattrs >/dev/null
}
fatal() { echo "FAIL: $*"; exit 1; }
