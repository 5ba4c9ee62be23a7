#!/bin/bash
# What the kernel caches of a clone's disk stays true when direct and
# cached handles mix: O_DIRECT writers (a VM with cache=none, fio) bypass
# the page cache, and a cached reader (cat, cp, a backup tool) opened
# before, during or after them reads what they wrote, never older pages.
# The model: the bytes each step wrote. Also: O_DIRECT writes arrive with
# no getxattr before each (the cached write path asks for
# security.capability every time), seen in the daemon's debug output, and
# O_DSYNC ones are durable when they return (kill -9 right after).
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

make_library
C=$MNT/clones
mount_lib
mkdir "$C/Ubuntu/k1"
F=$C/Ubuntu/k1/k1-flat.vmdk

python3 - "$F" <<'PY' || fail "the page cache served bytes older than a direct write"
import mmap, os, sys
F = sys.argv[1]
def dwrite(fd, off, byte):
    m = mmap.mmap(-1, 65536)       # page-aligned, as O_DIRECT needs
    m.write(bytes([byte]) * 65536)
    os.pwritev(fd, [m], off)
def read_cached(off):
    with open(F, 'rb') as f:
        f.seek(off)
        return f.read(65536)
def want(byte): return bytes([byte]) * 65536
# Cached pages kept past close, then a direct write: the next open reads it.
read_cached(65536)
a = os.open(F, os.O_RDWR | os.O_DIRECT); dwrite(a, 65536, 0x11); os.close(a)
assert read_cached(65536) == want(0x11), "pages kept from before a direct write"
# A cached handle open across a direct write.
b = os.open(F, os.O_RDONLY); os.pread(b, 65536, 65536)
a = os.open(F, os.O_RDWR | os.O_DIRECT); dwrite(a, 65536, 0x22)
assert os.pread(b, 65536, 65536) == want(0x22), "a cached handle missed a direct write"
os.close(a); os.close(b)
# A reader opened while a direct writer is open, which writes again.
a = os.open(F, os.O_RDWR | os.O_DIRECT); dwrite(a, 65536, 0x33)
c = os.open(F, os.O_RDONLY)
assert os.pread(c, 65536, 65536) == want(0x33)
dwrite(a, 65536, 0x44)
assert os.pread(c, 65536, 65536) == want(0x44), "a reader missed a later direct write"
os.close(c); os.close(a)
assert read_cached(65536) == want(0x44), "stale at the end"
PY

# The disk holds what the last write wrote, offline too.
sync "$F"
unmount_lib
raw_of "$LIB/.vmclonefs/clones/k1/k1.vmdk" "$T/k1.raw"
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/want.raw"
perl -e 'print "\x44" x 65536' | dd of="$T/want.raw" bs=64K seek=1 conv=notrunc status=none
same_bytes "$T/k1.raw" "$T/want.raw" "k1 offline after the mixed writes"

# O_DIRECT with O_DSYNC: each write is durable when it returns (the
# kernel sends no fsync for it), so kill -9 right after loses none of it.
mount_lib
head -c 196608 /dev/urandom >"$T/sync.bin"
dd if="$T/sync.bin" of="$F" bs=64K seek=5 oflag=direct,dsync conv=notrunc status=none ||
    fail "dd oflag=direct,dsync into k1"
crash_daemon
dd if="$T/sync.bin" of="$T/want.raw" bs=64K seek=5 conv=notrunc status=none
raw_of "$LIB/.vmclonefs/clones/k1/k1.vmdk" "$T/k1.raw"
same_bytes "$T/k1.raw" "$T/want.raw" "k1 after kill -9 following O_DSYNC direct writes"

# A parent file cut short under a read served straight from it: EIO, not
# a short read (which the kernel would take as zeros, or as the disk's end).
P=$LIB/FlatVM
mkdir "$P"
sed 's/^scsi0:0\.fileName = .*/scsi0:0.fileName = "Flat.vmdk"/; s/Ubuntu/FlatVM/g' \
    "$LIB/Ubuntu/Ubuntu.vmx" >"$P/FlatVM.vmx"
(cd "$P" && qemu-img create -q -f vmdk -o subformat=monolithicFlat Flat.vmdk 16M)
head -c 16M /dev/urandom >"$P/Flat-flat.vmdk"
mount_lib
mkdir "$C/FlatVM/f1" || fail "mkdir of a clone of a flat disk"
G1=$C/FlatVM/f1/f1-flat.vmdk
cmp -s -n 1M "$G1" "$P/Flat-flat.vmdk" || fail "f1 reads wrong"
truncate -s 1M "$P/Flat-flat.vmdk"
if dd if="$G1" of="$T/cut.bin" bs=512K skip=4 count=4 iflag=direct status=none 2>"$T/dd.err"; then
    fail "a read past the cut end of the parent's file succeeded ($(stat -c %s "$T/cut.bin") bytes)"
fi
grep -q 'Input/output error' "$T/dd.err" || fail "reading past the cut: $(cat "$T/dd.err")"
unmount_lib

# No getxattr per O_DIRECT write (the debug log lists every request).
mount_lib -d
mark=$(wc -l <"$DAEMON_ERR")
dd if=/dev/urandom of="$F" bs=4k count=50 seek=100 oflag=direct conv=notrunc status=none
sleep 0.2
writes=$(tail -n +"$((mark + 1))" "$DAEMON_ERR" | grep -c 'opcode: WRITE' || true)
getx=$(tail -n +"$((mark + 1))" "$DAEMON_ERR" | grep -c 'opcode: GETXATTR' || true)
[ "$writes" -ge 50 ] || fail "expected 50 writes in the debug log, saw $writes"
[ "$getx" = 0 ] || fail "$getx getxattr requests came with 50 O_DIRECT writes"
unmount_lib
note "direct and cached handles of a clone's disk read what was last written"
