#!/bin/bash
# Deleting does what rmdir, rm and rm -r do on any file system:
# - rm -r of a clone whose disk is open fails, and the clone is exactly as
#   it was: its .vmx and disk names are still there;
# - rm of a disk file removes that name for good (after a remount too);
#   the clone's stored disks go with its last disk name, and rmdir of the
#   folder left then deletes the clone;
# - mv of the clone's .vmx is refused, sed -i over it still works;
# - on a library whose file system is full, the first rmdir and the first
#   rm -r of a clone work, and free the space.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

listing() { (cd "$1" && find . -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort | tr '\n' ' '); }

make_library
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/parent.raw"
mount_lib
C=$MNT/clones/Ubuntu
STORE=$LIB/.vmclonefs/clones

# ---- rm -r of a clone in use fails as a whole: nothing of the clone goes
mkdir "$C/busy" || fail "mkdir busy"
cp "$T/parent.raw" "$T/busy.model"
write_both 123456 70000 "$C/busy/busy-flat.vmdk" "$T/busy.model"
sync "$C/busy/busy-flat.vmdk"
before=$(tree_state "$STORE/busy")
exec 3<"$C/busy/busy-flat.vmdk"
expect_err "rm -r while the disk is open" "Device or resource busy" rm -r "$C/busy"
expect_log "rm -r while the disk is open" 'busy.vmx' 'open'
same_tree "$before" "$STORE/busy" "a refused rm -r"
[ "$(listing "$C/busy")" = "busy-flat.vmdk busy.vmdk busy.vmx " ] ||
    fail "after a refused rm -r the clone folder shows '$(listing "$C/busy")'"
exec 3<&-
same_bytes "$C/busy/busy-flat.vmdk" "$T/busy.model" "busy after the refused rm -r"

# ---- the clone's own .vmx keeps its name; editing it in place works
expect_err "mv of the clone's .vmx" "Operation not permitted" mv "$C/busy/busy.vmx" "$C/busy/other.vmx"
expect_log "mv of the clone's .vmx" 'busy.vmx' "own config"
[ -e "$STORE/busy/busy.vmx" ] && [ ! -e "$STORE/busy/other.vmx" ] || fail "the refused mv changed the store"
sed -i 's/^displayName = .*/displayName = "busy box"/' "$C/busy/busy.vmx" || fail "sed -i on the clone's .vmx"
grep -qx 'displayName = "busy box"' "$STORE/busy/busy.vmx" || fail "sed -i did not reach the store"

# ---- rm of a disk name: gone for good, the disk's data stays until the
# clone's last disk name goes
rm "$C/busy/busy-flat.vmdk" || fail "rm of the flat disk"
[ ! -e "$C/busy/busy-flat.vmdk" ] || fail "busy-flat.vmdk still there after rm"
[ "$(listing "$C/busy")" = "busy.vmdk busy.vmx " ] || fail "after rm the folder shows '$(listing "$C/busy")'"
[ -e "$STORE/busy/busy.vmdk" ] || fail "the delta went with only one of its names"
unmount_lib
mount_lib
[ ! -e "$C/busy/busy-flat.vmdk" ] || fail "busy-flat.vmdk came back after a remount"
[ "$(listing "$C/busy")" = "busy.vmdk busy.vmx " ] || fail "after remount the folder shows '$(listing "$C/busy")'"
# The user's file stays a user's file: a new file under the removed name.
echo "mine" >"$C/busy/busy-flat.vmdk" || fail "making a file under the removed disk name"
grep -qx mine "$STORE/busy/busy-flat.vmdk" || fail "the new file is not an ordinary file"
rm "$C/busy/busy-flat.vmdk" || fail "rm of the user's file"
log_mark
rm "$C/busy/busy.vmdk" || fail "rm of the last disk name"
expect_log "rm of the last disk name" 'clone busy' 'stored disks'
[ ! -e "$STORE/busy/busy.vmdk" ] && [ ! -e "$STORE/busy/busy.vmdk.xxh" ] ||
    fail "the clone's stored disk outlived its last name: $(listing "$STORE/busy")"
[ "$(listing "$C/busy")" = "busy.vmx " ] || fail "after the last rm the folder shows '$(listing "$C/busy")'"
rmdir "$C/busy" || fail "rmdir of the clone whose disks are gone"
[ ! -e "$STORE/busy" ] || fail "store folder left: $(listing "$STORE/busy")"

# ---- rm -r of a whole clone folder, nested user files included
mkdir "$C/tree" || fail "mkdir tree"
mkdir -p "$C/tree/logs/old"
echo log >"$C/tree/logs/old/vmware-1.log"
head -c 8684 /dev/urandom >"$C/tree/tree.nvram"
rm -r "$C/tree" || fail "rm -r of a clone with nested files"
[ ! -e "$STORE/tree" ] || fail "rm -r left $(listing "$STORE/tree")"
[ -z "$(ls -A "$C")" ] || fail "clones/Ubuntu lists $(ls -A "$C")"
unmount_lib

# ---- a full library: the first rmdir and the first rm -r work
img=$T/full.img
truncate -s 48M "$img"
mkfs.ext4 -q -F -O ^has_journal -m 0 "$img" || fail "mkfs.ext4"
FULL=$T/fulllib
mkdir -p "$FULL"
mount -o loop "$img" "$FULL" || fail "loop mount"
trap 'umount -l "$FULL" 2>/dev/null || true; cleanup' EXIT
cp -a "$LIB/Ubuntu" "$FULL/" || fail "copying Ubuntu onto the small file system"
LIB=$FULL
mount_lib
mkdir "$C/f1" "$C/f2" || fail "mkdir on the small file system"
# Grains in both, so that the deletes have something to free.
head -c $((4 * 1024 * 1024)) /dev/urandom | dd of="$C/f1/f1-flat.vmdk" conv=notrunc status=none
head -c $((4 * 1024 * 1024)) /dev/urandom | dd of="$C/f2/f2-flat.vmdk" conv=notrunc status=none
sync "$C/f1/f1-flat.vmdk" "$C/f2/f2-flat.vmdk"
echo "notes" >"$C/f2/notes.txt"
# Full to the last block: big writes, then small files until none fits.
fill_up() {
    dd if=/dev/zero of="$FULL/filler.$1" bs=1M status=none 2>/dev/null || true
    dd if=/dev/zero of="$FULL/filler.$1.small" bs=4k status=none 2>/dev/null || true
    sync -f "$FULL"
    for i in $(seq 64); do echo x 2>/dev/null >"$FULL/filler.$1.$i" || break; done
    sync -f "$FULL"
}
fill_up 1
[ "$(df --output=avail -B1 "$FULL" | tail -1)" -lt 8192 ] || fail "the file system is not full: $(df -h "$FULL" | tail -1)"
expect_err "writing on the full disk" "No space left on device" bash -c "echo x >'$C/f2/more.txt'"
rmdir "$C/f1" || fail "rmdir of a clone on a full disk"
[ ! -e "$FULL/.vmclonefs/clones/f1" ] || fail "rmdir on a full disk left the store folder"
fill_up 2   # what f1 freed goes to fillers again
rm -r "$C/f2" || fail "rm -r of a clone on a full disk"
[ ! -e "$FULL/.vmclonefs/clones/f2" ] || fail "rm -r on a full disk left $(listing "$FULL/.vmclonefs/clones/f2")"
unmount_lib
LIB=$T/lib
umount "$FULL" || fail "unmounting the small file system"
trap cleanup EXIT
finish_soft_fails
note "rm -r of a busy clone changes nothing, rm of disk names is for good, deletes work on a full disk"
