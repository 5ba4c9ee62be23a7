#!/bin/bash
# Full clones on a file system that shares blocks (XFS, mkfs.xfs -m
# reflink=1, loop-mounted): the copier clones the layers' grains into the
# store instead of copying them. Checked against models (qemu-img convert
# of each source, plus the same writes): the store shares its blocks with
# the source (FIEMAP), reads right while copying (guest writes during the
# copy win) and after, after kill -9 and a remount, after the source is
# deleted, and offline. Grains of a frozen layer of ours are read and
# checked against its sums, not cloned unchecked. A grain's sum is made at its first read: a grain
# damaged in the store after it was read is EIO at the next mount.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

command -v mkfs.xfs >/dev/null || fail "needs mkfs.xfs (Debian: xfsprogs)"
truncate -s 700M "$T/xfs.img"
mkfs.xfs -q -m reflink=1 "$T/xfs.img"
mkdir "$T/xfs"
mount -o loop "$T/xfs.img" "$T/xfs"
EXTRA_CLEANUP='umount -l "$T/xfs" 2>/dev/null'
LIB=$T/xfs/lib
make_library
C=$MNT/clones
STORE=$LIB/.vmclonefs/clones
MiB=1048576

# Bytes of FILE's extents that share their blocks with another file.
shared_bytes() {
    local n=0 total flags
    while read -r total flags; do
        [[ $flags =~ ^0x[0-9a-fA-F]+$ ]] && (( flags & 0x2000 )) && n=$((n + total))
    done < <(xfs_io -c "fiemap -v" "$1" | awk 'NR > 2 { print $(NF - 1), $NF }')
    echo $((n * 512))
}

# A VM with 12 MiB of data in a 64 MiB monolithicSparse disk, and one
# with a monolithicFlat disk.
D=$LIB/Data
new_vm Data monolithicSparse 64M
head -c 4M /dev/urandom >"$T/r1"
head -c 8M /dev/urandom >"$T/r2"
qemu-io -f vmdk -c "write -s $T/r1 1M 4M" -c "write -s $T/r2 40M 8M" "$D/Data.vmdk" >/dev/null
raw_of "$D/Data.vmdk" "$T/f1.raw"
P=$LIB/Plain
new_vm Plain monolithicFlat 32M
qemu-io -f vmdk -c "write -s $T/r1 8M 4M" "$P/Plain.vmdk" >/dev/null
raw_of "$P/Plain.vmdk" "$T/p1.raw"

# ---- a capped copy, with guest writes racing it
mount_lib -o clone_type=full,copy_rate=3
mkdir "$C/Data/f1"
F=$C/Data/f1/f1-flat.vmdk
[ "$(attr "$C/Data/f1" state)" = copying ] || fail "f1 is $(attr "$C/Data/f1" state), not copying"
parallel_writes 4 $((16 * MiB)) 40 "$F" "$T/f1.raw"
sync "$F"
same_bytes "$F" "$T/f1.raw" "f1 while copying"
sleep 1.5
crash_daemon
qemu-img check -q "$STORE/f1/f1.vmdk" || fail "qemu-img check of f1 after a crash mid-copy"
mount_lib -o clone_type=full
wait_state "$C/Data/f1" full 30
same_bytes "$F" "$T/f1.raw" "f1 once full"
shared=$(shared_bytes "$STORE/f1/f1.vmdk")
[ "$shared" -ge $((4 * MiB)) ] || fail "f1's store shares only $shared bytes with Data"
log_mark

# Flat, and a chain of VMware deltas (Chain's current state).
mkdir "$C/Plain/p1" "$C/Chain/ch1"
raw_of "$LIB/Chain/Chain-000002.vmdk" "$T/ch1.raw"
wait_state "$C/Plain/p1" full 30
wait_state "$C/Chain/ch1" full 30
same_bytes "$C/Plain/p1/p1-flat.vmdk" "$T/p1.raw" "p1, a full clone of a flat disk"
same_bytes "$C/Chain/ch1/ch1-flat.vmdk" "$T/ch1.raw" "ch1, a full clone of a chain"
shared=$(shared_bytes "$STORE/p1/p1.vmdk")
[ "$shared" -ge $((4 * MiB)) ] || fail "p1's store shares $shared bytes with Plain, not 4 MiB"
shared=$(shared_bytes "$STORE/ch1/ch1.vmdk")
[ "$shared" -ge $((2 * MiB)) ] || fail "ch1's store shares $shared bytes with Chain, under 2 MiB"

# A full clone of a linked clone: its frozen layer is ours, with sums.
setfattr -n user.vmclonefs.type -v linked "$C/Data"
mkdir "$C/Data/l1"
raw_of "$D/Data.vmdk" "$T/l1.raw"
write_both $((3 * MiB)) $((2 * MiB)) "$C/Data/l1/l1-flat.vmdk" "$T/l1.raw"
sync "$C/Data/l1/l1-flat.vmdk"
# Its grains are read and checked, not cloned blind: one damaged in the
# frozen layer breaks the copy (the layer is made by a linked clone first).
setfattr -n user.vmclonefs.type -v linked "$C/l1"
mkdir "$C/l1/bad"
layer=$(ls "$STORE/l1"/.vcf-layer-*.vmdk)
[ -f "$layer" ] || fail "no frozen layer of l1: $(ls -a "$STORE/l1")"
lhost=$(host_offset "$layer" $((3 * MiB)))
[ -n "$lhost" ] || fail "qemu-img map does not place offset 3 MiB in l1's frozen layer"
# As bit rot would: the file's time stays (else it reads as a changed
# parent), and no daemon sees the write (a mounted one is told of it by
# inotify, and would look while its time is new).
unmount_lib
dd if="$layer" of="$T/saved" bs=1 skip=$((lhost + 200)) count=8 status=none
touch -r "$layer" "$T/stamp"
printf 'damaged!' | dd of="$layer" bs=1 seek=$((lhost + 200)) conv=notrunc status=none
touch -r "$T/stamp" "$layer"
mount_lib -o clone_type=full
setfattr -n user.vmclonefs.type -v full "$C/l1/bad"
wait_state "$C/l1/bad" broken 30
attr "$C/l1/bad" error | grep -q "checksum mismatch" ||
    fail "the copy of a damaged frozen grain: $(attr "$C/l1/bad" error)"
rmdir "$C/l1/bad"
[ -z "$(log_lines "copy" "broken" | grep -v "clone bad:")" ] || fail "a copy broke: $(log_lines copy broken)"
unmount_lib
dd if="$T/saved" of="$layer" bs=1 seek=$((lhost + 200)) conv=notrunc status=none
touch -r "$T/stamp" "$layer"
mount_lib -o clone_type=full
log_mark
setfattr -n user.vmclonefs.type -v full "$C/l1"
mkdir "$C/l1/g1"
wait_state "$C/l1/g1" full 30
same_bytes "$C/l1/g1/g1-flat.vmdk" "$T/l1.raw" "g1, a full clone of linked clone l1"
# Data's 10 MiB are shared; l1's own 2 MiB were read from its checked layer.
[ "$(shared_bytes "$STORE/g1/g1.vmdk")" -ge $((8 * MiB)) ] || fail "g1's store shares too little"
[ -z "$(log_lines "copy" "broken")" ] || fail "a copy broke: $(log_lines copy broken)"

# ---- standalone: the sources go, the clones read the same
write_both $((5 * MiB)) 100000 "$F" "$T/f1.raw"
rmdir "$C/Data/l1" || fail "rmdir l1 once g1 is full"
rm -r "$MNT/Data" || fail "rm -r of Data once f1 is full"
same_bytes "$F" "$T/f1.raw" "f1 once Data is gone"
unmount_lib
for n in f1 p1 ch1 g1; do
    qemu-img check -q "$STORE/$n/$n.vmdk" || fail "qemu-img check of $n"
    [ "$(qemu-img info --backing-chain "$STORE/$n/$n.vmdk" | grep -c '^image:')" = 1 ] ||
        fail "$n's store is not standalone"
done
raw_of "$STORE/f1/f1.vmdk" "$T/off.raw"
same_bytes "$T/off.raw" "$T/f1.raw" "f1 offline"

# ---- sums made at first read: p1 was read whole above (and was copied
# in one go, no crash re-made its sums), so a grain damaged since is EIO.
P1=$C/Plain/p1/p1-flat.vmdk
host=$(host_offset "$STORE/p1/p1.vmdk" $((8 * MiB)))
[ -n "$host" ] || fail "qemu-img map does not place p1's offset 8 MiB"
printf 'damaged!' | dd of="$STORE/p1/p1.vmdk" bs=1 seek=$((host + 100)) conv=notrunc status=none
mount_lib
if dd if="$P1" of=/dev/null bs=64K skip=128 count=1 status=none 2>"$T/dd.err"; then
    fail "a damaged grain of p1 read without error"
fi
grep -q "Input/output error" "$T/dd.err" || fail "damaged grain: $(cat "$T/dd.err")"
cmp -s <(dd if="$P1" bs=64K skip=129 count=100 status=none) \
    <(dd if="$T/p1.raw" bs=64K skip=129 count=100 status=none) || fail "p1 past the damaged grain"
same_bytes "$F" "$T/f1.raw" "f1 after a remount"
unmount_lib
note "full clones share their blocks on XFS, read right, and check their sums once read"
