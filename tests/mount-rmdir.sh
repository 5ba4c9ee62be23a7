#!/bin/bash
# Deleting clones, and what a clone keeps: rmdir of a clone folder holding
# only what vmclonefs shows, and rm -r of any clone folder, delete the
# clone and its store folder; a clone whose disk is open
# is refused with EBUSY and stays whole; clones, the files a hypervisor
# writes beside them (nvram, logs) and edits of their .vmx survive unmount
# and remount, and go with the clone. A deleted name can be used again and
# then reads its parent, not the old clone's data.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

listing() { (cd "$1" && find . -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort | tr '\n' ' '); }
# The store holds exactly the clones named (and nothing half made or deleted).
store_is() {
    [ "$(listing "$STORE")" = "$*" ] || fail "store holds '$(listing "$STORE")', expected '$*'"
}

make_library
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/parent.raw"
mount_lib
C=$MNT/clones/Ubuntu
STORE=$LIB/.vmclonefs/clones

# ---- rmdir deletes the clone and its store
mkdir "$C/r1" || fail "mkdir r1"
cp "$T/parent.raw" "$T/r1.model"
write_both 4096 200000 "$C/r1/r1-flat.vmdk" "$T/r1.model"
same_bytes "$C/r1/r1-flat.vmdk" "$T/r1.model" "r1 before rmdir"   # now in the page cache too
sync "$C/r1/r1-flat.vmdk"
store_is "r1 "
log_mark
rmdir "$C/r1" || fail "rmdir of a clone"
[ ! -e "$C/r1" ] || fail "clone folder still there after rmdir"
store_is ""
expect_log "rmdir" 'deleted clone r1'
[ -z "$(ls -A "$C")" ] || fail "clones/Ubuntu lists $(ls -A "$C")"
expect_err "rmdir twice" "No such file or directory" rmdir "$C/r1"

# ---- rm -r of a clone folder with files of its own
mkdir "$C/r2" || fail "mkdir r2"
head -c 8684 /dev/urandom >"$C/r2/r2.nvram"
mkdir "$C/r2/logs"
echo "vmx| Log for VMware Workstation" >"$C/r2/logs/vmware.log"
rm -r "$C/r2" || fail "rm -r of a clone folder"
[ ! -e "$C/r2" ] || fail "clone folder still there after rm -r"
store_is ""

# ---- a disk held open: rmdir is refused, the clone stays whole; close, retry
mkdir "$C/r3" || fail "mkdir r3"
cp "$T/parent.raw" "$T/r3.model"
write_both 777777 55555 "$C/r3/r3-flat.vmdk" "$T/r3.model"
exec 3<"$C/r3/r3-flat.vmdk"
expect_err "rmdir while the disk is open" "Device or resource busy" rmdir "$C/r3"
expect_log "rmdir while the disk is open" 'rmdir clones/Ubuntu/r3' 'open'
store_is "r3 "
cmp -s <(cat <&3) "$T/r3.model" || fail "the open disk reads wrong after the refused rmdir"
same_bytes "$C/r3/r3-flat.vmdk" "$T/r3.model" "r3 after the refused rmdir"
exec 3<&-
rmdir "$C/r3" || fail "rmdir once the disk is closed"
store_is ""

# Open read/write, as a running VM holds it.
mkdir "$C/r4" || fail "mkdir r4"
exec 3<>"$C/r4/r4-flat.vmdk"
expect_err "rmdir while the disk is open read/write" "Device or resource busy" rmdir "$C/r4"
exec 3<&-
rmdir "$C/r4" || fail "rmdir r4 once closed"
store_is ""

# ---- survives unmount and remount, with the files a hypervisor adds
mkdir "$C/keep" || fail "mkdir keep"
K=$C/keep
cp "$T/parent.raw" "$T/keep.model"
for off in 0 1048576 33554432 67043328; do
    write_both "$off" 65536 "$K/keep-flat.vmdk" "$T/keep.model"
done
head -c 8684 /dev/urandom >"$T/keep.nvram"
cp "$T/keep.nvram" "$K/keep.nvram"
mkdir "$K/logs"
printf 'vmx| Log for VMware Workstation pid=1234\nvmx| powered on\n' >"$T/vmware.log"
cp "$T/vmware.log" "$K/logs/vmware.log"
# The clone's .vmx is the user's: append to it, and edit it as sed -i does
# (a new file renamed over the old one).
echo 'annotation = "kept across remounts"' >>"$K/keep.vmx" || fail "append to the clone's .vmx"
sed -i 's/^memsize = .*/memsize = "4096"/' "$K/keep.vmx" || fail "sed -i on the clone's .vmx"
cp "$K/keep.vmx" "$T/keep.vmx"
grep -qx 'memsize = "4096"' "$T/keep.vmx" || fail "the .vmx edit did not take"
grep -qx 'annotation = "kept across remounts"' "$T/keep.vmx" || fail "the .vmx append did not take"
grep -qx 'displayName = "keep"' "$T/keep.vmx" || fail "displayName lost in the edit"
# Ordinary files, in the store beside the clone's delta.
same_bytes "$STORE/keep/keep.nvram" "$T/keep.nvram" "nvram in the store"
same_bytes "$STORE/keep/logs/vmware.log" "$T/vmware.log" "log in the store"
same_bytes "$STORE/keep/keep.vmx" "$T/keep.vmx" ".vmx in the store"
unmount_lib
mount_lib
[ "$(listing "$C")" = "keep " ] || fail "after remount clones/Ubuntu lists '$(listing "$C")'"
[ "$(listing "$K")" = "keep-flat.vmdk keep.nvram keep.vmdk keep.vmx logs " ] ||
    fail "after remount the clone folder holds '$(listing "$K")'"
same_bytes "$K/keep-flat.vmdk" "$T/keep.model" "disk after remount"
same_bytes "$K/keep.nvram" "$T/keep.nvram" "nvram after remount"
same_bytes "$K/logs/vmware.log" "$T/vmware.log" "log after remount"
same_bytes "$K/keep.vmx" "$T/keep.vmx" ".vmx after remount"
# Workstation rotates its logs by renaming them.
mv "$K/logs/vmware.log" "$K/logs/vmware-0.log" || fail "rename of a log in the clone folder"
same_bytes "$STORE/keep/logs/vmware-0.log" "$T/vmware.log" "renamed log in the store"
# rmdir of a folder holding files of the user's is ENOTEMPTY, as on any
# file system, and deletes nothing; rm -r deletes them, then the clone.
before=$(tree_state "$STORE/keep")
expect_err "rmdir of a clone holding files of its own" "Directory not empty" rmdir "$C/keep"
expect_log "rmdir of a clone holding files of its own" 'rmdir clones/Ubuntu/keep' 'not the clone'
same_tree "$before" "$STORE/keep" "a refused rmdir"
same_bytes "$K/keep-flat.vmdk" "$T/keep.model" "disk after a refused rmdir"
rm -r "$C/keep" || fail "rm -r of a clone holding files of its own"
[ ! -e "$STORE/keep" ] || fail "store folder left: $(ls -A "$STORE/keep")"
store_is ""

# ---- a source folder is not a clone
expect_err "rmdir of a source folder" "Operation not permitted" rmdir "$MNT/clones/Chain"
[ -d "$MNT/clones/Chain" ] || fail "clones/Chain gone"
expect_log "rmdir of a source folder" 'clones/Chain'

# ---- rm -r of a clone in use fails as a whole: the clone and its disk
# files stay there to be seen and opened, not half hidden
mkdir "$C/busy" || fail "mkdir busy"
exec 3<"$C/busy/busy-flat.vmdk"
expect_err "rm -r while the disk is open" "Device or resource busy" rm -r "$C/busy"
[ -d "$STORE/busy" ] || fail "rm -r of an open clone deleted its store"
for f in busy-flat.vmdk busy.vmdk; do
    [ -e "$C/busy/$f" ] || soft_fail "after a refused rm -r the clone's $f is gone from the mount: '$(listing "$C/busy")'"
done
if ! cmp -s "$C/busy/busy-flat.vmdk" "$T/parent.raw" 2>/dev/null; then
    soft_fail "after a refused rm -r busy-flat.vmdk cannot be read by name"
fi
exec 3<&-
rm -r "$C/busy" || fail "rm -r once the disk is closed"
store_is ""

# ---- a deleted name is free again, and the new clone reads its parent,
# not what the old one wrote; the sources stay listed once each
mkdir "$C/r1" || fail "mkdir r1 again"
same_bytes "$C/r1/r1-flat.vmdk" "$T/parent.raw" "a new clone under an old name"
dups=$(find "$MNT/clones" -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort | uniq -d)
[ -z "$dups" ] || soft_fail "clones/ lists the same name twice: $dups"

unmount_lib
finish_soft_fails
note "rmdir and rm -r delete clones, open clones are refused, clones and their files persist"
