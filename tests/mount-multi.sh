#!/bin/bash
# Clones of every kind of source read what qemu-img says the source holds:
# a VM with two disks, a 2.5 GiB disk split in 2 GiB extents, a snapshot
# chain (current state and each snapshot), a clone's own base snapshot.
# Clones of one parent stay independent, and so do two clones of a VM's
# current state made in a row, each on its own snapshot, while the VM goes
# on writing its newest delta.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

MiB=$((1024 * 1024))
# same_region A B OFFSET LEN WHAT: the same bytes in both files there.
same_region() {
    cmp -s -n "$4" -i "$3:$3" "$1" "$2" ||
        fail "$5: [$3, +$4) differs: $(cmp -n "$4" -i "$3:$3" "$1" "$2" 2>&1 | head -1)"
}
# is_pattern FILE OFFSET LEN HEXBYTE WHAT: every byte there is HEXBYTE.
is_pattern() {
    perl -e 'print chr(hex $ARGV[0]) x $ARGV[1]' "$4" "$3" >"$T/pattern"
    cmp -s -n "$3" -i "$2:0" "$1" "$T/pattern" || fail "$5: [$2, +$3) is not all 0x$4"
}
vmx_value() { # FILE KEY
    sed -n "s/^$2 = \"\\(.*\\)\"\$/\\1/p" "$1"
}
# The DDB value KEY of a VMDK descriptor (embedded in a sparse file or not).
ddb() { grep -a "^$2 = " "$1" | head -1 | sed 's/^[^"]*"\(.*\)"$/\1/'; }
hint_of() { grep -a '^parentFileNameHint=' "$1" | sed 's/^parentFileNameHint="\(.*\)"$/\1/'; }

make_library
raw_of "$LIB/TwoDisks/TwoDisks.vmdk" "$T/two0.raw"
raw_of "$LIB/TwoDisks/TwoDisks_1.vmdk" "$T/two1.raw"
raw_of "$LIB/Split/Split.vmdk" "$T/split.raw"   # sparse: 2.5 GiB, a few MiB used
raw_of "$LIB/Chain/Chain-000002.vmdk" "$T/chain-current.raw"
raw_of "$LIB/Chain/Chain.vmdk" "$T/chain-base.raw"
raw_of "$LIB/Chain/Chain-000001.vmdk" "$T/chain-configured.raw"
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/ubuntu.raw"
mount_lib
C=$MNT/clones
STORE=$LIB/.vmclonefs/clones

# ---- two disks: one pair of files per disk, in the source's order
mkdir "$C/TwoDisks/pair" || fail "mkdir clones/TwoDisks/pair"
P=$C/TwoDisks/pair
[ "$(cd "$P" && find . -mindepth 1 -printf '%f\n' | LC_ALL=C sort | tr '\n' ' ')" = \
    "pair-flat.vmdk pair.vmdk pair.vmx pair_1-flat.vmdk pair_1.vmdk " ] ||
    fail "two-disk clone folder: $(ls "$P")"
[ "$(stat -c %s "$P/pair-flat.vmdk")" = $((64 * MiB)) ] || fail "size of pair-flat.vmdk"
[ "$(stat -c %s "$P/pair_1-flat.vmdk")" = $((32 * MiB)) ] || fail "size of pair_1-flat.vmdk"
same_bytes "$P/pair-flat.vmdk" "$T/two0.raw" "first disk of the TwoDisks clone"
same_bytes "$P/pair_1-flat.vmdk" "$T/two1.raw" "second disk of the TwoDisks clone"
[ "$(vmx_value "$P/pair.vmx" 'scsi0:0\.fileName')" = pair.vmdk ] || fail "scsi0:0 of the clone's .vmx"
[ "$(vmx_value "$P/pair.vmx" 'sata0:1\.fileName')" = pair_1.vmdk ] || fail "sata0:1 of the clone's .vmx"
[ "$(vmx_value "$P/pair.vmx" 'scsi0:0\.present')" = TRUE ] || fail "scsi0:0 not present"
[ "$(vmx_value "$P/pair.vmx" 'sata0:1\.present')" = TRUE ] || fail "sata0:1 not present"
[ "$(vmx_value "$P/pair.vmx" 'sata0:0\.deviceType')" = cdrom-raw ] || fail "the CD-ROM on sata0:0 changed"
[ "$(vmx_value "$P/pair.vmx" 'sata0:0\.fileName')" = "auto detect" ] || fail "the CD-ROM on sata0:0 changed"
# Each descriptor describes its own flat file: qemu-img reads the same bytes.
raw_of "$P/pair_1.vmdk" "$T/pair1-desc.raw"
same_bytes "$T/pair1-desc.raw" "$T/two1.raw" "qemu-img through pair_1.vmdk"
# The VM took one snapshot holding both disks.
V=$LIB/TwoDisks
[ "$(vmx_value "$V/TwoDisks.vmx" 'scsi0:0\.fileName')" = TwoDisks-000001.vmdk ] || fail "TwoDisks scsi0:0 not moved on"
[ "$(vmx_value "$V/TwoDisks.vmx" 'sata0:1\.fileName')" = TwoDisks_1-000001.vmdk ] || fail "TwoDisks sata0:1 not moved on"
hint_of "$STORE/pair/pair.vmdk" | grep -q 'TwoDisks/TwoDisks\.vmdk$' || fail "pair.vmdk's parent: $(hint_of "$STORE/pair/pair.vmdk")"
hint_of "$STORE/pair/pair_1.vmdk" | grep -q 'TwoDisks/TwoDisks_1\.vmdk$' || fail "pair_1.vmdk's parent: $(hint_of "$STORE/pair/pair_1.vmdk")"
# A write to one disk lands there only.
cp "$T/two1.raw" "$T/two1.model"
write_both $((5 * MiB + 123)) 200000 "$P/pair_1-flat.vmdk" "$T/two1.model"
write_both $((32 * MiB - 4096)) 4096 "$P/pair_1-flat.vmdk" "$T/two1.model"
same_bytes "$P/pair_1-flat.vmdk" "$T/two1.model" "second disk after writes"
same_bytes "$P/pair-flat.vmdk" "$T/two0.raw" "first disk after writes to the second"

# ---- a disk in 2 GiB extents: compare the patterned regions and some holes
mkdir "$C/Split/big" || fail "mkdir clones/Split/big"
F=$C/Split/big/big-flat.vmdk
VS=$((2560 * MiB))
B=$(( $(awk '$1 == "RW" { print $2; exit }' "$LIB/Split/Split.vmdk") * 512 ))
if [ "$B" -le "$MiB" ] || [ "$B" -ge $((VS - 2 * MiB)) ]; then fail "cannot find the extent boundary: $B"; fi
[ "$(stat -c %s "$F")" = "$VS" ] || fail "size of the Split clone: $(stat -c %s "$F")"
is_pattern "$F" 0 "$MiB" 41 "Split start"
is_pattern "$F" $((B - 512 * 1024)) "$MiB" 42 "Split across the extent boundary"
is_pattern "$F" $((VS - MiB)) "$MiB" 43 "Split end"
same_region "$F" "$T/split.raw" 0 $((2 * MiB)) "Split start and the hole after it"
same_region "$F" "$T/split.raw" $((B - 2 * MiB)) $((4 * MiB)) "Split around the extent boundary"
same_region "$F" "$T/split.raw" $((VS - 3 * MiB)) $((3 * MiB)) "Split end and the hole before it"
same_region "$F" "$T/split.raw" $((1024 * MiB + 12345)) $((MiB)) "Split hole in the first extent"
same_region "$F" "$T/split.raw" $((B + 100 * MiB)) $((MiB)) "Split hole in the second extent"
# A write straddling the extent boundary, and the bytes around it.
cp --sparse=always "$T/split.raw" "$T/split.model"
write_both $((B - 70000)) 140000 "$F" "$T/split.model"
same_region "$F" "$T/split.model" $((B - 2 * MiB)) $((4 * MiB)) "Split after a write across the boundary"
same_region "$F" "$T/split.model" 0 $((2 * MiB)) "Split start after a write elsewhere"

# ---- a snapshot chain: current state, and each snapshot
mkdir "$C/Chain/now" || fail "mkdir clones/Chain/now"
mkdir "$C/Chain@Base install/base" || fail "mkdir clones/Chain@Base install/base"
mkdir "$C/Chain@Configured/conf1" || fail "mkdir clones/Chain@Configured/conf1"
mkdir "$C/Chain@Configured/conf2" || fail "mkdir clones/Chain@Configured/conf2"
# conf1 is written before conf2 is ever read: nothing of it may show there.
cp "$T/chain-configured.raw" "$T/conf1.model"
write_both $((512 * 1024)) $((MiB)) "$C/Chain@Configured/conf1/conf1-flat.vmdk" "$T/conf1.model"
write_both $((9 * MiB + 77)) 100000 "$C/Chain@Configured/conf1/conf1-flat.vmdk" "$T/conf1.model"
same_bytes "$C/Chain/now/now-flat.vmdk" "$T/chain-current.raw" "Chain's current state"
same_bytes "$C/Chain@Base install/base/base-flat.vmdk" "$T/chain-base.raw" "Chain@Base install"
same_bytes "$C/Chain@Configured/conf2/conf2-flat.vmdk" "$T/chain-configured.raw" "Chain@Configured beside a written clone"
same_bytes "$C/Chain@Configured/conf1/conf1-flat.vmdk" "$T/conf1.model" "Chain@Configured after writes"
hint_of "$STORE/now/now.vmdk" | grep -q 'Chain/Chain-000002\.vmdk$' || fail "now.vmdk's parent"
hint_of "$STORE/base/base.vmdk" | grep -q 'Chain/Chain\.vmdk$' || fail "base.vmdk's parent"
hint_of "$STORE/conf1/conf1.vmdk" | grep -q 'Chain/Chain-000001\.vmdk$' || fail "conf1.vmdk's parent"
# Spot checks against the writes the sample library documents.
is_pattern "$C/Chain@Base install/base/base-flat.vmdk" $((768 * 1024)) 65536 11 "base at 768K"
is_pattern "$C/Chain@Configured/conf2/conf2-flat.vmdk" $((768 * 1024)) 65536 21 "Configured at 768K"
is_pattern "$C/Chain/now/now-flat.vmdk" $((768 * 1024)) 65536 31 "current at 768K"

# ---- two clones of the unchanged current state share one snapshot (as
# N clones of an untouched template share one base); once the VM has
# written, the next clone takes a new one
U=$LIB/Ubuntu
mkdir "$C/Ubuntu/a" || fail "mkdir clones/Ubuntu/a"
mkdir "$C/Ubuntu/b" || fail "mkdir clones/Ubuntu/b"
[ "$(grep -c '^snapshot[0-9]*\.displayName = "vmclonefs: a"$' "$U/Ubuntu.vmsd")" = 1 ] || fail "snapshot for a"
[ "$(grep -c '^snapshot[0-9]*\.displayName = "vmclonefs: b"$' "$U/Ubuntu.vmsd")" = 0 ] ||
    fail "b took a snapshot of an unchanged VM"
[ "$(vmx_value "$U/Ubuntu.vmsd" 'snapshot\.numSnapshots')" = 1 ] || fail "numSnapshots after a and b"
grep -qx 'base-snapshot=vmclonefs: a' "$STORE/b/clone.ini" || fail "b is not on a's snapshot: $(cat "$STORE/b/clone.ini")"
[ "$(vmx_value "$U/Ubuntu.vmx" 'scsi0:0\.fileName')" = Ubuntu-000001.vmdk ] || fail "the VM is not on its one new delta"
hint_of "$STORE/a/a.vmdk" | grep -q 'Ubuntu/Ubuntu\.vmdk$' || fail "a.vmdk's parent"
hint_of "$STORE/b/b.vmdk" | grep -q 'Ubuntu/Ubuntu\.vmdk$' || fail "b.vmdk's parent"
sa=$(grep '^snapshot[0-9]*\.displayName = "vmclonefs: a"$' "$U/Ubuntu.vmsd" | cut -d. -f1)
uid_a=$(vmx_value "$U/Ubuntu.vmsd" "$sa\\.uid")
# The VM goes on (through the mount) in its delta; neither clone sees it.
qemu-io -c "write -P 0x77 0 1M" -c "write -P 0x78 $((40 * MiB)) 64k" "$MNT/Ubuntu/Ubuntu-000001.vmdk" >/dev/null ||
    fail "qemu-io write into the VM's current delta"
raw_of "$U/Ubuntu-000001.vmdk" "$T/vm-now.raw"
is_pattern "$T/vm-now.raw" 0 "$MiB" 77 "the VM's own write"
same_bytes "$C/Ubuntu/a/a-flat.vmdk" "$T/ubuntu.raw" "clone a after the VM wrote"
same_bytes "$C/Ubuntu/b/b-flat.vmdk" "$T/ubuntu.raw" "clone b after the VM wrote"
mkdir "$C/Ubuntu/c" || fail "mkdir clones/Ubuntu/c"
sc=$(grep '^snapshot[0-9]*\.displayName = "vmclonefs: c"$' "$U/Ubuntu.vmsd" | cut -d. -f1)
[ -n "$sc" ] || fail "c did not take a snapshot of the changed VM"
uid_c=$(vmx_value "$U/Ubuntu.vmsd" "$sc\\.uid")
if [ -z "$uid_a" ] || [ "$uid_a" = "$uid_c" ]; then fail "snapshot uids: '$uid_a' '$uid_c'"; fi
[ "$(vmx_value "$U/Ubuntu.vmsd" "$sc\\.parent")" = "$uid_a" ] || fail "c's snapshot is not a child of a's"
[ "$(vmx_value "$U/Ubuntu.vmsd" 'snapshot\.current')" = "$uid_c" ] || fail "snapshot.current is not c's"
[ "$(vmx_value "$U/Ubuntu.vmsd" "$sa\\.disk0\\.fileName")" = Ubuntu.vmdk ] || fail "a's snapshot disk"
[ "$(vmx_value "$U/Ubuntu.vmsd" "$sc\\.disk0\\.fileName")" = Ubuntu-000001.vmdk ] || fail "c's snapshot disk"
[ "$(vmx_value "$U/Ubuntu.vmx" 'scsi0:0\.fileName')" = Ubuntu-000002.vmdk ] || fail "the VM is not on its newest delta"
same_bytes "$C/Ubuntu/c/c-flat.vmdk" "$T/vm-now.raw" "clone c of the VM's written state"
cp "$T/ubuntu.raw" "$T/a.model"
write_both $((3 * MiB)) 300000 "$C/Ubuntu/a/a-flat.vmdk" "$T/a.model"
same_bytes "$C/Ubuntu/a/a-flat.vmdk" "$T/a.model" "clone a after its own write"
same_bytes "$C/Ubuntu/b/b-flat.vmdk" "$T/ubuntu.raw" "clone b after a wrote"

# ---- the base snapshot of a clone is a source too
[ -d "$C/Ubuntu@vmclonefs: a" ] || fail "clones/Ubuntu@vmclonefs: a missing: $(ls "$C")"
mkdir "$C/Ubuntu@vmclonefs: a/a2" || fail "mkdir of a clone of a's base snapshot"
same_bytes "$C/Ubuntu@vmclonefs: a/a2/a2-flat.vmdk" "$T/ubuntu.raw" "clone of Ubuntu@vmclonefs: a"
hint_of "$STORE/a2/a2.vmdk" | grep -q 'Ubuntu/Ubuntu\.vmdk$' || fail "a2.vmdk's parent"
[ "$(vmx_value "$U/Ubuntu.vmsd" 'snapshot\.numSnapshots')" = 2 ] || fail "cloning a snapshot took a snapshot"
same_bytes "$C/Ubuntu/a/a-flat.vmdk" "$T/a.model" "clone a beside a2"

# ---- all of it again from the store, after a remount
unmount_lib
mount_lib
same_bytes "$P/pair_1-flat.vmdk" "$T/two1.model" "second disk after remount"
same_bytes "$P/pair-flat.vmdk" "$T/two0.raw" "first disk after remount"
same_region "$F" "$T/split.model" $((B - 2 * MiB)) $((4 * MiB)) "Split boundary after remount"
same_bytes "$C/Chain@Configured/conf1/conf1-flat.vmdk" "$T/conf1.model" "conf1 after remount"
same_bytes "$C/Chain@Configured/conf2/conf2-flat.vmdk" "$T/chain-configured.raw" "conf2 after remount"
same_bytes "$C/Ubuntu/b/b-flat.vmdk" "$T/ubuntu.raw" "clone b after remount"

# ---- each flat descriptor describes the disk it stands for: a guest must
# see the same virtual disk as in its source, so the same adapter type and
# BIOS geometry as the source disk's descriptor (an IDE/SATA disk has 16
# heads, not a SCSI disk's 255).
for pair in "pair.vmdk:TwoDisks/TwoDisks.vmdk" "pair_1.vmdk:TwoDisks/TwoDisks_1.vmdk"; do
    desc=$P/${pair%%:*}
    src=$LIB/${pair#*:}
    for key in ddb.adapterType ddb.geometry.cylinders ddb.geometry.heads ddb.geometry.sectors; do
        [ "$(ddb "$desc" "$key")" = "$(ddb "$src" "$key")" ] ||
            soft_fail "${pair%%:*}: $key is \"$(ddb "$desc" "$key")\", the source disk's is \"$(ddb "$src" "$key")\""
    done
done

unmount_lib
finish_soft_fails
note "two disks, split extents, snapshot chains and repeated clones read as qemu-img does"
