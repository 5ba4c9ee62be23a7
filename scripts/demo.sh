#!/bin/bash
# The main job, end to end, on a fresh Debian 12 machine as root: install
# the dependencies, build, make a sample library, mount it, make a linked
# clone with mkdir, and show it. Leaves the mount in place for you to try.
#   DEMO_DIR   where the library and mount point go (default /tmp/vmclonefs-demo)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
demo=${DEMO_DIR:-/tmp/vmclonefs-demo}
show() { printf '\n$ %s\n' "$*"; "$@"; }
# quietly LOG CMD...: CMD's output goes to LOG, and is shown only if it fails.
quietly() {
    local log=$1
    shift
    if ! "$@" >>"$log" 2>&1; then
        printf "error: '%s' failed; the end of %s:\n" "$*" "$log" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}

bash scripts/install-deps.sh
if mountpoint -q "$demo/mnt" 2>/dev/null; then fusermount3 -u "$demo/mnt"; fi
rm -rf "$demo"
mkdir -p "$demo/mnt"
build_log=$demo/build.log
echo "building vmclonefs (log: $build_log)"
# aclocal warns about a missing m4/ before libtoolize makes it.
[ -x configure ] || { mkdir -p m4 && quietly "$build_log" autoreconf -fi; }
mkdir -p build/plain
[ -f build/plain/Makefile ] || (cd build/plain && quietly "$build_log" "$top/configure" -q)
quietly "$build_log" make -C build/plain -j"$(nproc)" -s
vmclonefs=$top/build/plain/vmclonefs

show scripts/make-sample-library.sh "$demo/library"
show "$vmclonefs" -o log="$demo/vmclonefs.log" "$demo/library" "$demo/mnt"
show ls "$demo/mnt" "$demo/mnt/clones"
printf '\n$ mkdir %s\n' "$demo/mnt/clones/Ubuntu/web1"
t0=$(date +%s%N)
mkdir "$demo/mnt/clones/Ubuntu/web1"
t1=$(date +%s%N)
echo "made linked clone web1 of Ubuntu in $(( (t1 - t0 + 500000) / 1000000 )) ms"
show ls -l "$demo/mnt/clones/Ubuntu/web1"
show qemu-img info "$demo/mnt/clones/Ubuntu/web1/web1.vmdk"
show grep -E '^(displayName|uuid.bios|ethernet0.generatedAddress|scsi0:0.fileName) ' \
    "$demo/mnt/clones/Ubuntu/web1/web1.vmx"
echo
echo "# The clone's disk has every byte of its parent snapshot (qemu-img reads the parent):"
qemu-img convert -O raw "$demo/library/Ubuntu/Ubuntu.vmdk" "$demo/parent.raw"
show cmp "$demo/mnt/clones/Ubuntu/web1/web1-flat.vmdk" "$demo/parent.raw"
echo "identical"
echo
echo "# Writes go to the clone only:"
show dd if=/dev/urandom of="$demo/mnt/clones/Ubuntu/web1/web1-flat.vmdk" bs=64K count=16 seek=100 conv=notrunc,fsync status=none
if cmp -s "$demo/mnt/clones/Ubuntu/web1/web1-flat.vmdk" "$demo/parent.raw"; then
    echo "error: the write did not reach the clone" >&2; exit 1
fi
qemu-img convert -O raw "$demo/library/Ubuntu/Ubuntu.vmdk" "$demo/parent-after.raw"
show cmp "$demo/parent.raw" "$demo/parent-after.raw"
echo "the parent is unchanged"
show ls -l "$demo/library/.vmclonefs/clones/web1"
echo
echo "# A clone is a source too: web1's delta is frozen, and web2 sits on it:"
show mkdir "$demo/mnt/clones/web1/web2"
show cmp "$demo/mnt/clones/web1/web2/web2-flat.vmdk" "$demo/mnt/clones/Ubuntu/web1/web1-flat.vmdk"
echo "identical"
show qemu-img info --backing-chain "$demo/library/.vmclonefs/clones/web2/web2.vmdk"
echo
echo "# A full clone: usable at once, then copied until it needs nothing of Ubuntu:"
ctl=$top/build/plain/vmclonefs-ctl
show "$ctl" -m "$demo/mnt" clone Ubuntu full1 --full
show "$ctl" -m "$demo/mnt" status full1 --watch
show getfattr -d -m - "$demo/mnt/clones/Ubuntu/full1"
show "$ctl" -m "$demo/mnt" list
show qemu-img info --backing-chain "$demo/library/.vmclonefs/clones/full1/full1.vmdk"
cat <<MSG

The library is mounted at $demo/mnt (log: $demo/vmclonefs.log).
Try: mkdir "$demo/mnt/clones/Chain@Base install/old"; rmdir "$demo/mnt/clones/web1/web2"
(rmdir "$demo/mnt/clones/Ubuntu/web1" is refused while web2 is made from it)
Unmount with: fusermount3 -u $demo/mnt
MSG
