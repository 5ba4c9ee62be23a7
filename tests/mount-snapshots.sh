#!/bin/bash
# The snapshots vmclonefs takes do not pile up: clones of an unchanged VM
# share one; when the last clone based on it goes and the VM has not
# written since, it is taken back and the VM's files are byte for byte as
# before the first clone (also for a VM with snapshots of its own, after a
# crash, and, by undoing just our change, after the .vmx was edited). A
# VM that wrote keeps it. A mkdir that fails after the snapshot (the
# store's file system is full) takes it back too.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

vmx_value() { sed -n "s/^$2 = \"\\(.*\\)\"\$/\\1/p" "$1"; }
n_snapshots() { grep -c '^snapshot[0-9]*\.uid' "$1" 2>/dev/null || true; }

make_library
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/ubuntu.raw"
U=$LIB/Ubuntu
C=$MNT/clones
STORE=$LIB/.vmclonefs/clones
ubuntu_before=$(tree_state "$U")
chain_before=$(tree_state "$LIB/Chain")
mount_lib

# ---- fourteen clones of an untouched template: one snapshot, one delta
for i in $(seq 14); do
    mkdir "$C/Ubuntu/t$i" || fail "mkdir t$i"
done
[ "$(n_snapshots "$U/Ubuntu.vmsd")" = 1 ] || fail "14 clones left $(n_snapshots "$U/Ubuntu.vmsd") snapshots"
[ "$(vmx_value "$U/Ubuntu.vmx" 'scsi0:0\.fileName')" = Ubuntu-000001.vmdk ] || fail "the VM is not on one delta"
[ ! -e "$U/Ubuntu-000002.vmdk" ] || fail "a second delta was made"
[ "$(find "$C" -maxdepth 1 -name 'Ubuntu@*' | wc -l)" = 1 ] || fail "more than one Ubuntu@ source: $(ls "$C")"
same_bytes "$C/Ubuntu/t14/t14-flat.vmdk" "$T/ubuntu.raw" "the 14th clone"
# A clone of the snapshot itself counts as based on it.
mkdir "$C/Ubuntu@vmclonefs: t1/s1" || fail "mkdir of a clone of the base snapshot"
for i in $(seq 14); do
    rmdir "$C/Ubuntu/t$i" || fail "rmdir t$i"
done
[ "$(n_snapshots "$U/Ubuntu.vmsd")" = 1 ] || fail "the snapshot went while s1 is based on it"
log_mark
rmdir "$C/Ubuntu@vmclonefs: t1/s1" || fail "rmdir s1"
expect_log "take-back" 'took back snapshot "vmclonefs: t1" of Ubuntu'
same_tree "$ubuntu_before" "$U" "Ubuntu after its last clone went"
[ -z "$(ls -A "$LIB/.vmclonefs/snapshots")" ] || fail "a snapshot record is left: $(ls "$LIB/.vmclonefs/snapshots")"

# ---- a VM with snapshots of its own is restored byte for byte too
mkdir "$C/Chain/c1" "$C/Chain/c2" || fail "mkdir c1 c2"
[ "$(n_snapshots "$LIB/Chain/Chain.vmsd")" = 3 ] || fail "Chain has $(n_snapshots "$LIB/Chain/Chain.vmsd") snapshots"
rmdir "$C/Chain/c1" "$C/Chain/c2" || fail "rmdir c1 c2"
same_tree "$chain_before" "$LIB/Chain" "Chain after its clones went"

# ---- a take-back cut short after the .vmsd (a crash): the next mount
# finishes it, and keeps the .vmsd as it was
cp "$LIB/Chain/Chain.vmsd" "$T/chain.vmsd"
mkdir "$C/Chain/c3" || fail "mkdir c3"
crash_daemon
rm -rf "${STORE:?}/c3"
cp "$T/chain.vmsd" "$LIB/Chain/Chain.vmsd"
mount_lib
same_tree "$chain_before" "$LIB/Chain" "Chain after a take-back cut short"

# ---- a VM that wrote since keeps the snapshot
mkdir "$C/Ubuntu/w1" || fail "mkdir w1"
qemu-io -c "write -P 0x5a 0 64k" "$MNT/Ubuntu/Ubuntu-000001.vmdk" >/dev/null || fail "the VM writes"
rmdir "$C/Ubuntu/w1" || fail "rmdir w1"
[ "$(n_snapshots "$U/Ubuntu.vmsd")" = 1 ] || fail "the snapshot of a VM that wrote was taken back"
[ "$(vmx_value "$U/Ubuntu.vmx" 'scsi0:0\.fileName')" = Ubuntu-000001.vmdk ] || fail "the VM lost its delta"
qemu-img check -q "$U/Ubuntu-000001.vmdk" || fail "the VM's delta after its clone went"
unmount_lib

# Back to the template, by hand, as VMware's "delete snapshot" would not do
# byte for byte: a fresh library for the rest.
rm -rf "$LIB"
make_library
mount_lib

# ---- the .vmx edited since: only our change is undone
mkdir "$C/Ubuntu/e1" || fail "mkdir e1"
echo 'annotation = "edited while a clone existed"' >>"$MNT/Ubuntu/Ubuntu.vmx" || fail "editing the VM's .vmx"
rmdir "$C/Ubuntu/e1" || fail "rmdir e1"
[ "$(vmx_value "$U/Ubuntu.vmx" 'scsi0:0\.fileName')" = Ubuntu.vmdk ] || fail "the .vmx is not back on Ubuntu.vmdk"
grep -qx 'annotation = "edited while a clone existed"' "$U/Ubuntu.vmx" || fail "the user's edit was lost"
[ ! -e "$U/Ubuntu-000001.vmdk" ] || fail "the delta outlived its snapshot"
[ "$(n_snapshots "$U/Ubuntu.vmsd")" = 0 ] || fail "the .vmsd still lists a snapshot"
sed -i '/^annotation = "edited while a clone existed"$/d' "$U/Ubuntu.vmx"
ubuntu_before=$(tree_state "$U")

# ---- a crash between the snapshot and the store: the next mount takes it back
mkdir "$C/Ubuntu/k1" || fail "mkdir k1"
crash_daemon
rm -rf "${STORE:?}/k1"    # what a crash before the store's rename leaves
mount_lib
expect_log "take-back at mount" 'took back snapshot' 'Ubuntu'
same_tree "$ubuntu_before" "$U" "Ubuntu after a crash and a remount"
unmount_lib

# ---- the store's file system full after the snapshot: mkdir fails, and
# the VM's files are as before
mount -t tmpfs -o size=16k vcf-full "$STORE" || fail "mounting a tiny tmpfs on the store"
trap 'umount "$STORE" 2>/dev/null || true; cleanup' EXIT
mount_lib
expect_err "mkdir with a full store" "No space left on device" mkdir "$C/Ubuntu/nospace"
expect_log "mkdir with a full store" 'mkdir clones/Ubuntu/nospace'
same_tree "$ubuntu_before" "$U" "Ubuntu after a mkdir that failed after its snapshot"
[ -z "$(ls -A "$LIB/.vmclonefs/snapshots" 2>/dev/null)" ] || fail "the failed mkdir left a snapshot record"
[ -z "$(ls -A "$STORE")" ] || fail "the failed mkdir left $(ls -A "$STORE")"
unmount_lib
umount "$STORE"
trap cleanup EXIT
finish_soft_fails
note "clones share an unchanged VM's snapshot; the last one's delete takes it back, byte for byte"
