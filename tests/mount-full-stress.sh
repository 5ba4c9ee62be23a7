#!/bin/bash
# Full clones under pressure. Four writers hammer a clone while its copy
# runs, each in a region of its own (so the model, which gets the same
# writes, is exact): when the copy is done every write is there, through
# the mount and offline; the copier never wrote over a guest's grain. Then
# a library that runs out of space: the copy pauses with the reason, the
# clone still reads and writes, and the copy goes on by itself once space
# is free.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

C=$MNT/clones
# A VM whose disk is 32 MiB of data in a 48 MiB disk.
make_vm() { # NAME
    new_vm "$1" monolithicSparse 48M
    head -c 32M /dev/urandom >"$T/data"
    qemu-io -f vmdk -c "write -s $T/data 8M 32M" "$LIB/$1/$1.vmdk" >/dev/null
    rm -f "$T/data"
}

# ---- concurrent writers during the copy
make_library
make_vm Busy
raw_of "$LIB/Busy/Busy.vmdk" "$T/model.raw"
mount_lib -o clone_type=full,copy_rate=8
mkdir "$C/Busy/b1"
F=$C/Busy/b1/b1-flat.vmdk
parallel_writes 4 $((12 * 1048576)) 60 "$F" "$T/model.raw"
[ "$(attr "$C/Busy/b1" state)" = copying ] ||
    note "the copy ended before the writers (state $(attr "$C/Busy/b1" state)): they raced less"
same_bytes "$F" "$T/model.raw" "b1 right after the writers"
wait_state "$C/Busy/b1" full 60
same_bytes "$F" "$T/model.raw" "b1 full"
raw_of "$LIB/.vmclonefs/clones/b1/b1.vmdk" "$T/off.raw"
same_bytes "$T/off.raw" "$T/model.raw" "b1 offline"
qemu-img check -q "$LIB/.vmclonefs/clones/b1/b1.vmdk" || fail "qemu-img check of b1"
unmount_lib

# ---- out of space: paused, then resumed once space is free
SMALL=$T/small
mkdir "$SMALL"
# Room for both VMs and the copy, once the filler below is gone.
mount -t tmpfs -o size=100m tmpfs "$SMALL"
EXTRA_CLEANUP='umount -l "$SMALL" 2>/dev/null' 
OLD=$LIB
LIB=$SMALL/lib
mkdir "$LIB"
cp -a "$OLD/Ubuntu" "$LIB/"
make_vm Tight
rm -rf "$OLD"
raw_of "$LIB/Tight/Tight.vmdk" "$T/tight.raw"
# Room for the store's tables and a few MiB of the copy, not for 32 MiB.
free_kib=$(df -k --output=avail "$SMALL" | tail -1)
fallocate -l $(( (free_kib - 6 * 1024) * 1024 )) "$SMALL/filler"
log_mark
mount_lib -o clone_type=full
mkdir "$C/Tight/t1"
wait_state "$C/Tight/t1" paused 30
attr "$C/Tight/t1" error | grep -q "out of space" || fail "paused t1 says: $(attr "$C/Tight/t1" error)"
grep -q "^state: *paused" "$C/Tight/t1/.vmclonefs-status" || fail "status of t1: $(cat "$C/Tight/t1/.vmclonefs-status")"
expect_log "pause" "clone t1: full copy paused" "out of space"
same_bytes "$C/Tight/t1/t1-flat.vmdk" "$T/tight.raw" "t1 while paused"
read -r done1 _ <<<"$(attr "$C/Tight/t1" progress)"
rm "$SMALL/filler"
wait_state "$C/Tight/t1" full 60
read -r done2 total2 <<<"$(attr "$C/Tight/t1" progress)"
[ "$done2" = "$total2" ] && [ "$done2" -ge "$done1" ] || fail "t1's progress went $done1 then $done2 of $total2"
same_bytes "$C/Tight/t1/t1-flat.vmdk" "$T/tight.raw" "t1 full after the pause"
unmount_lib
raw_of "$LIB/.vmclonefs/clones/t1/t1.vmdk" "$T/off.raw"
same_bytes "$T/off.raw" "$T/tight.raw" "t1 offline"
umount "$SMALL"
EXTRA_CLEANUP=
finish_soft_fails
