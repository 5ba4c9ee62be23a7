#!/bin/bash
# Clones of clones, to depth 8: each clone is a source (clones/NAME/), and
# mkdir there clones its current state, freezing its delta as a read-only
# layer. Every clone is checked against a model (a raw file that gets the
# same writes) through the mount, after a remount, and offline through
# qemu-img's reading of the stored chain. A freeze while a writer has the
# disk open is one step: the new clone holds a prefix of the writer's
# writes, and the source loses none. Clones that others depend on refuse
# rmdir, rm and mv with EBUSY, naming them.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

DEPTH=8
make_library
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/m0.raw"
raw_of "$LIB/TwoDisks/TwoDisks.vmdk" "$T/two0.raw"
raw_of "$LIB/TwoDisks/TwoDisks_1.vmdk" "$T/two1.raw"
size=$(stat -c %s "$T/m0.raw")
C=$MNT/clones
STORE=$LIB/.vmclonefs/clones
flat() { echo "$C/$2/$1/$1-flat.vmdk"; }   # NAME SOURCE
layers() { find "$STORE/$1" -maxdepth 1 -name '.vcf-layer-*.vmdk' | wc -l; }
hint_of() { grep -a '^parentFileNameHint=' "$1" | sed 's/^parentFileNameHint="\(.*\)"$/\1/'; }
# libvmdk opens a single-file delta's extent by the name its embedded
# descriptor gives: every top and frozen layer must name itself.
extent_names_ok() {
    local f ext
    for f in "$STORE"/*/*.vmdk "$STORE"/*/.vcf-layer-*.vmdk; do
        ext=$(grep -a -m1 '^RW [0-9]* SPARSE "' "$f" | sed 's/.*"\(.*\)"$/\1/')
        [ "$ext" = "$(basename "$f")" ] || fail "$f names extent \"$ext\", not itself"
        vmdkinfo "$f" >"$T/vmdkinfo.out" 2>&1 || fail "vmdkinfo $f: $(tail -3 "$T/vmdkinfo.out")"
    done
}
random_writes() { # FLAT MODEL COUNT
    local i len off
    for i in $(seq "$3"); do
        len=$(( (RANDOM * 32768 + RANDOM) % 200000 + 1 ))
        off=$(( (RANDOM * 32768 + RANDOM) % (size - len) ))
        [ $((i % 3)) -eq 0 ] && off=$(( off / 65536 * 65536 ))
        write_both "$off" "$len" "$1" "$2"
    done
}

mount_lib
# ---- a chain c1 <- c2 <- ... <- c8, each written before and after its child is made
src=Ubuntu
cp "$T/m0.raw" "$T/c1.raw"
for d in $(seq 1 $DEPTH); do
    name=c$d
    mkdir "$C/$src/$name" || fail "mkdir clones/$src/$name"
    [ -d "$C/$name" ] || fail "clone $name is not listed as a source: $(ls "$C")"
    ls "$C" | grep -qx "$name" || fail "clones/ does not list $name"
    [ "$d" = 1 ] || cp "$T/c$((d - 1)).raw" "$T/$name.raw"
    same_bytes "$(flat $name $src)" "$T/$name.raw" "new clone $name of $src"
    random_writes "$(flat $name $src)" "$T/$name.raw" 6
    # the parent goes on writing after its child was made
    [ "$d" = 1 ] || random_writes "$(flat "c$((d - 1))" "$prev_src")" "$T/c$((d - 1)).raw" 3
    prev_src=$src
    src=$name
done
for d in $(seq 1 $DEPTH); do
    s=$([ "$d" = 1 ] && echo Ubuntu || echo "c$((d - 1))")
    same_bytes "$(flat "c$d" "$s")" "$T/c$d.raw" "c$d at depth $d"
done
# The chain is as deep as it says: c8's store, 7 frozen layers of c1..c7
# below it, then the VM's snapshot deltas.
chain=$(qemu-img info --backing-chain "$STORE/c8/c8.vmdk" | grep -c '^image:')
[ "$chain" -ge $((DEPTH + 1)) ] || fail "c8's chain has $chain images"

# ---- nothing new is frozen when a source has not changed since its last freeze
mkdir "$C/c8/x1" || fail "mkdir clones/c8/x1"
n1=$(layers c8)
mkdir "$C/c8/x2" || fail "mkdir clones/c8/x2"
[ "$(layers c8)" = "$n1" ] || fail "a second clone of an unchanged c8 froze another layer"
[ "$(hint_of "$STORE/x1/x1.vmdk")" = "$(hint_of "$STORE/x2/x2.vmdk")" ] ||
    fail "x1 and x2 do not share c8's frozen layer"
# a clone of a clone that never wrote sits where its source sits
mkdir "$C/x1/y" || fail "mkdir clones/x1/y"
[ "$(layers x1)" = 0 ] || fail "an unwritten clone got a frozen layer"
[ "$(hint_of "$STORE/y/y.vmdk")" = "$(hint_of "$STORE/x1/x1.vmdk")" ] ||
    fail "y does not sit on what x1 sits on"
for n in x1 x2; do same_bytes "$(flat $n c8)" "$T/c8.raw" "clone $n of c8"; done
same_bytes "$(flat y x1)" "$T/c8.raw" "clone y of x1"

# ---- several disks freeze together
mkdir "$C/TwoDisks/p" || fail "mkdir clones/TwoDisks/p"
cp "$T/two0.raw" "$T/p0.raw"
cp "$T/two1.raw" "$T/p1.raw"
random_writes "$C/TwoDisks/p/p-flat.vmdk" "$T/p0.raw" 3
size=$(stat -c %s "$T/two1.raw") random_writes "$C/TwoDisks/p/p_1-flat.vmdk" "$T/p1.raw" 3
mkdir "$C/p/q" || fail "mkdir clones/p/q"
same_bytes "$C/p/q/q-flat.vmdk" "$T/p0.raw" "first disk of q, clone of p"
same_bytes "$C/p/q/q_1-flat.vmdk" "$T/p1.raw" "second disk of q, clone of p"

# ---- a freeze while a writer has the disk open (O_DIRECT, one write after another)
N=400
GATE=60
F1=$(flat c1 Ubuntu)
cp "$T/c1.raw" "$T/c1-before.raw"
for k in $(seq 0 $((N - 1))); do
    perl -e 'print chr(1 + $ARGV[0] % 250) x 4096' "$k" >"$T/blk$k"
done
(
    for k in $(seq 0 $((N - 1))); do
        dd if="$T/blk$k" of="$F1" bs=4096 seek=$((k * 16 + 3)) oflag=direct conv=notrunc status=none
        if [ "$k" = $GATE ]; then touch "$T/gate"; fi
    done
) &
writer=$!
while [ ! -e "$T/gate" ]; do sleep 0.01; done
mkdir "$C/c1/during" || fail "mkdir clones/c1/during while c1 is being written"
wait "$writer" || fail "the writer failed across the freeze"
for k in $(seq 0 $((N - 1))); do
    dd if="$T/blk$k" of="$T/c1.raw" bs=4096 seek=$((k * 16 + 3)) conv=notrunc status=none
done
same_bytes "$F1" "$T/c1.raw" "c1 after writes across a freeze"
# The new clone holds the writes of some prefix 0..K-1, and no other.
K=0
while [ $K -lt $N ] && cmp -s -n 4096 -i "$(( (K * 16 + 3) * 4096 )):0" "$C/c1/during/during-flat.vmdk" "$T/blk$K"; do
    K=$((K + 1))
done
cp "$T/c1-before.raw" "$T/during.raw"
for k in $(seq 0 $((K - 1))); do
    dd if="$T/blk$k" of="$T/during.raw" bs=4096 seek=$((k * 16 + 3)) conv=notrunc status=none
done
same_bytes "$C/c1/during/during-flat.vmdk" "$T/during.raw" "clone made during writes (prefix of $K of $N)"
note "the clone made during the writes holds the first $K of $N"
# Writes that completed before mkdir began are in it.
[ "$K" -gt $GATE ] || fail "the clone lacks writes done before its mkdir: it holds $K, $GATE were done"

# ---- who depends on whom
log_mark
expect_err "rmdir of a clone with dependents" "Device or resource busy" rmdir "$C/c2/c3"
expect_log "rmdir refusal names the dependent" "rmdir clones/c2/c3" "c4"
before=$(tree_state "$STORE/c3")
expect_err "rm -r of a clone with dependents" "Device or resource busy" rm -r "$C/c2/c3"
expect_err "mv of a clone with dependents" "Device or resource busy" mv "$C/c2/c3" "$C/c2/c3b"
same_tree "$before" "$STORE/c3" "refused rm -r and mv of c3"
same_bytes "$(flat c3 c2)" "$T/c3.raw" "c3 after the refusals"
expect_err "rmdir of p with q on it" "Device or resource busy" rmdir "$C/TwoDisks/p"
# a leaf goes; its source can be cloned and written on
rmdir "$C/x1/y" || fail "rmdir of leaf y"
[ ! -e "$C/x1/y" ] && [ ! -e "$STORE/y" ] || fail "y is still there"

# ---- remount, then offline
extent_names_ok   # as the freezes left them, before a mount's recovery
unmount_lib
mount_lib
for d in $(seq 1 $DEPTH); do
    s=$([ "$d" = 1 ] && echo Ubuntu || echo "c$((d - 1))")
    same_bytes "$(flat "c$d" "$s")" "$T/c$d.raw" "c$d after remount"
done
same_bytes "$C/c1/during/during-flat.vmdk" "$T/during.raw" "during after remount"
unmount_lib
for n in c1 c2 c3 c4 c5 c6 c7 c8 x1 x2 during p q; do
    qemu-img check -q "$STORE/$n/$n.vmdk" || fail "qemu-img check of $n's store"
done
extent_names_ok
for d in $(seq 1 $DEPTH); do
    raw_of "$STORE/c$d/c$d.vmdk" "$T/off.raw"
    same_bytes "$T/off.raw" "$T/c$d.raw" "qemu-img's reading of c$d's stored chain"
done
raw_of "$STORE/q/q_1.vmdk" "$T/off.raw"
same_bytes "$T/off.raw" "$T/p1.raw" "qemu-img's reading of q's second disk"

# ---- deleting leaf first empties the store, and the VM's snapshot goes back
# An unreadable clone.ini elsewhere holds back only clones with layers.
mkdir "$STORE/zz"
echo "not an ini file [" >"$STORE/zz/clone.ini"
mount_lib
expect_err "a library folder named after a clone" "File exists" mkdir "$MNT/c2"
rmdir "$C/c1/during" || fail "rmdir of during (no layers) with an unreadable clone.ini around"
rm -r "$STORE/zz"
for pair in q:p p:TwoDisks x2:c8 x1:c8 c8:c7 c7:c6 c6:c5 c5:c4 c4:c3 c3:c2 c2:c1 c1:Ubuntu; do
    rmdir "$C/${pair#*:}/${pair%%:*}" || fail "rmdir clones/${pair#*:}/${pair%%:*}: $(tail -2 "$LOG")"
done
[ -z "$(ls -A "$STORE")" ] || fail "store not empty after deleting every clone: $(ls -A "$STORE")"
ls "$C" | grep -q '^c1$' && fail "deleted clone c1 is still a source"
unmount_lib
grep -q '^scsi0:0.fileName = "Ubuntu.vmdk"$' "$LIB/Ubuntu/Ubuntu.vmx" ||
    fail "the VM's snapshot was not taken back with its last clone"

# ---- a frozen layer keeps its checksums: a damaged grain is EIO, not wrong bytes
mount_lib
mkdir "$C/Ubuntu/f1" || fail "mkdir clones/Ubuntu/f1"
head -c 65536 /dev/urandom >"$T/grain"
dd if="$T/grain" of="$C/Ubuntu/f1/f1-flat.vmdk" bs=64K seek=10 conv=notrunc,fsync status=none
mkdir "$C/f1/f2" || fail "mkdir clones/f1/f2"
unmount_lib
layer=$STORE/f1/.vcf-layer-0-1.vmdk
at=$(host_offset "$layer" 655360)
[ -n "$at" ] || fail "qemu-img map does not place f1's grain 10 in its frozen layer"
cp "$layer" "$T/layer.good"
printf 'damage' | dd of="$layer" bs=1 seek=$((at + 1000)) conv=notrunc status=none
mount_lib
log_mark
expect_err "reading a damaged grain of a frozen layer" "Input/output error" \
    dd if="$C/f1/f2/f2-flat.vmdk" of=/dev/null bs=64K skip=10 count=1 status=none
expect_log "the log names the damaged layer" "checksum mismatch" ".vcf-layer-0-1.vmdk"
unmount_lib
cp "$T/layer.good" "$layer"
mount_lib
cmp -s -n 65536 -i "$((10 * 65536)):0" "$C/f1/f2/f2-flat.vmdk" "$T/grain" ||
    fail "f2 does not read f1's grain from the repaired layer"
unmount_lib
finish_soft_fails
