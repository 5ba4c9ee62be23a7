#!/bin/bash
# Full clones of every layout of the sample library: a VM with two disks,
# a split (twoGbMaxExtentSparse) disk, a chain of snapshots and one of its
# snapshots (whose top delta writes zeros over the base's data: the copy
# must keep them zeros once the base is gone). Each full clone, once
# standalone, reads through the mount and offline (qemu-img convert of its
# store alone) as qemu-img convert of its source's disk.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

make_library
C=$MNT/clones
STORE=$LIB/.vmclonefs/clones
# The oracles first, from the library as it is (before any snapshot).
raw_of "$LIB/TwoDisks/TwoDisks.vmdk" "$T/two0.raw"
raw_of "$LIB/TwoDisks/TwoDisks_1.vmdk" "$T/two1.raw"
raw_of "$LIB/Split/Split.vmdk" "$T/split.raw"
raw_of "$LIB/Chain/Chain-000002.vmdk" "$T/chain.raw"
raw_of "$LIB/Chain/Chain.vmdk" "$T/base.raw"

mount_lib -o clone_type=full
mkdir "$C/TwoDisks/t" "$C/Split/s" "$C/Chain/c" "$C/Chain@Base install/b"
for f in TwoDisks/t Split/s Chain/c "Chain@Base install/b"; do
    wait_state "$C/$f" full 60
done
folder_of() { # NAME: its folder in the mount (under its source)
    local d
    for d in "$C"/*/"$1"; do [ -d "$d" ] && { echo "$d"; return 0; }; done
    fail "no folder for clone $1"
}
check() { # NAME STEM RAW
    same_bytes "$(folder_of "$1")/$2-flat.vmdk" "$3" "$2 through the mount"
    local store=$STORE/$1/$2.vmdk
    qemu-img info --backing-chain "$store" >"$T/info"
    grep -q "backing file" "$T/info" && fail "$2's store still has a backing file"
    qemu-img check -q "$store" || fail "qemu-img check of $2"
    raw_of "$store" "$T/off.raw"
    same_bytes "$T/off.raw" "$3" "$2 offline, its store alone"
}
check t t "$T/two0.raw"
check t t_1 "$T/two1.raw"
check s s "$T/split.raw"
check c c "$T/chain.raw"
check b b "$T/base.raw"
# Chain's top delta wrote zeros over the base's 0x12 at 4 MiB: zeros they
# stay (checked above), and the oracle says so.
[ "$(od -An -tx1 -j $((4 << 20)) -N 16 "$T/chain.raw" | tr -d ' \n')" = "$(printf '0%.0s' $(seq 32))" ] ||
    fail "the oracle does not hold zeros at 4 MiB: the layout changed"
# Nothing of the zeros was copied: the space is the data's, not the disk's.
# Split is 2.5 GiB with 4 MiB of data.
used=$(attr "$(folder_of s)" store_bytes)
[ "$used" -lt $((16 << 20)) ] || fail "s's store uses $used bytes for 4 MiB of data"
unmount_lib
