#!/bin/bash
# The main job: mount a library, mkdir a linked clone, write into its flat
# disk at random offsets, and check every byte against a model made by
# qemu-img, through unmount and remount, and against qemu-img's own reading
# of the stored delta with no vmclonefs running.
. "$top_srcdir/tests/lib.sh"

make_library
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/parent.raw"
cp "$T/parent.raw" "$T/model.raw"
sha_before=$(sha256sum <"$LIB/Ubuntu/Ubuntu.vmdk")

mount_lib
[ -d "$MNT/clones/Ubuntu" ] || fail "clones/Ubuntu missing"
mkdir "$MNT/clones/Ubuntu/web1" || fail "mkdir of a linked clone failed"
C=$MNT/clones/Ubuntu/web1
for f in web1.vmx web1.vmdk web1-flat.vmdk; do
    [ -f "$C/$f" ] || fail "clone folder lacks $f: $(ls -la "$C")"
done
[ "$(stat -c %s "$C/web1-flat.vmdk")" = "$(stat -c %s "$T/parent.raw")" ] || fail "flat disk size"
same_bytes "$C/web1-flat.vmdk" "$T/parent.raw" "a new clone reads as its parent"
grep -q '^displayName = "web1"$' "$C/web1.vmx" || fail "displayName not set"
grep -q '^scsi0:0.fileName = "web1.vmdk"$' "$C/web1.vmx" || fail "disk key not set"
grep -q 'createType="monolithicFlat"' "$C/web1.vmdk" || fail "descriptor is not monolithicFlat"
qemu-img info "$C/web1.vmdk" | grep -q "virtual size: 64 MiB" || fail "qemu-img info of the descriptor"
# The VM went on in a new delta; the snapshot is listed.
grep -q '^scsi0:0.fileName = "Ubuntu-000001.vmdk"$' "$LIB/Ubuntu/Ubuntu.vmx" || fail "parent .vmx not moved to a new delta"
grep -q 'vmclonefs: web1' "$LIB/Ubuntu/Ubuntu.vmsd" || fail "snapshot not in the .vmsd"
ls "$MNT/clones" | grep -qx 'Ubuntu@vmclonefs: web1' || fail "the new snapshot is not a source"

size=$(stat -c %s "$T/parent.raw")
for i in $(seq 40); do
    len=$(( (RANDOM * 32768 + RANDOM) % 300000 + 1 ))
    off=$(( ((RANDOM * 32768 + RANDOM) * 7) % (size - len) ))
    [ $((i % 5)) -eq 0 ] && off=$(( off / 65536 * 65536 ))
    write_both "$off" "$len" "$C/web1-flat.vmdk" "$T/model.raw"
done
write_both $((size - 1000)) 1000 "$C/web1-flat.vmdk" "$T/model.raw"   # the very end
same_bytes "$C/web1-flat.vmdk" "$T/model.raw" "after random writes"
# qemu opens the descriptor read/write and renews its CID on its first
# write: that works; any other change to the generated text is refused.
qemu-io -f vmdk -c "write -P 0x5c 3M 70000" "$C/web1.vmdk" >/dev/null || fail "qemu-io write through the descriptor"
perl -e 'print "\x5c" x 70000' >"$T/chunk"
dd if="$T/chunk" of="$T/model.raw" bs=64K seek=3M oflag=seek_bytes conv=notrunc status=none
same_bytes "$C/web1-flat.vmdk" "$T/model.raw" "after a qemu-io write through the descriptor"
if echo 'ddb.adapterType = "ide"' >>"$C/web1.vmdk" 2>/dev/null; then fail "an edit of the descriptor was taken"; fi
grep -q 'ddb.adapterType = "ide"' "$C/web1.vmdk" && fail "the descriptor shows a refused edit"
sync "$C/web1-flat.vmdk"

# The parent's data never changed.
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/parent-after.raw"
same_bytes "$T/parent-after.raw" "$T/parent.raw" "the parent snapshot disk"
raw_of "$LIB/Ubuntu/Ubuntu-000001.vmdk" "$T/vm-after.raw"
same_bytes "$T/vm-after.raw" "$T/parent.raw" "the VM's current state"
[ "$(sha256sum <"$LIB/Ubuntu/Ubuntu.vmdk")" = "$sha_before" ] || fail "Ubuntu.vmdk changed"

unmount_lib
# No vmclonefs running: qemu-img reads the stored delta over its parent.
S=$LIB/.vmclonefs/clones/web1
qemu-img check -q "$S/web1.vmdk" || fail "qemu-img check of the stored delta"
qemu-img info --backing-chain "$S/web1.vmdk" | grep -q "Ubuntu/Ubuntu.vmdk" || fail "backing chain"
raw_of "$S/web1.vmdk" "$T/store.raw"
same_bytes "$T/store.raw" "$T/model.raw" "qemu-img's reading of the stored delta"

mount_lib
same_bytes "$C/web1-flat.vmdk" "$T/model.raw" "after remount"

# ---- a disk does not grow: past its end is ENOSPC, a write across it is
# short, a zero-length write there is 0, and the size never changes
size=$(stat -c %s "$C/web1-flat.vmdk")
pwrite() { # FILE OFFSET LENGTH: prints the count or the errno text
    perl -e 'open(my $fh, "+<", $ARGV[0]) or die "open: $!\n";
             my $n = syswrite($fh, "\xab" x $ARGV[2], $ARGV[2], 0) if sysseek($fh, $ARGV[1], 0);
             print defined $n ? "$n\n" : "$!\n"' "$@"
}
[ "$(pwrite "$C/web1-flat.vmdk" "$size" 4096)" = "No space left on device" ] ||
    fail "a write at the end: $(pwrite "$C/web1-flat.vmdk" "$size" 4096)"
[ "$(pwrite "$C/web1-flat.vmdk" $((size + 65536)) 512)" = "No space left on device" ] || fail "a write past the end"
[ "$(pwrite "$C/web1-flat.vmdk" $((size - 1000)) 4096)" = 1000 ] ||
    fail "a write across the end is not short: $(pwrite "$C/web1-flat.vmdk" $((size - 1000)) 4096)"
printf '\xab%.0s' $(seq 1000) | dd of="$T/model.raw" bs=1000 seek=$((size - 1000)) oflag=seek_bytes conv=notrunc status=none
[ "$(pwrite "$C/web1-flat.vmdk" $((size + 100)) 0)" = 0 ] || fail "a zero-length write past the end"
[ "$(stat -c %s "$C/web1-flat.vmdk")" = "$size" ] || fail "the disk's size changed"
same_bytes "$C/web1-flat.vmdk" "$T/model.raw" "after writes at the end"
write_both 12345 77777 "$C/web1-flat.vmdk" "$T/model.raw"
same_bytes "$C/web1-flat.vmdk" "$T/model.raw" "after a write on the remounted clone"
unmount_lib
raw_of "$S/web1.vmdk" "$T/store2.raw"
same_bytes "$T/store2.raw" "$T/model.raw" "stored delta after the second session"
note "linked clone: mkdir, random writes, remount and qemu-img agree"
