#!/bin/bash
# Renaming a clone, as a file manager's F2 or mv does: mv clones/VM/a
# clones/VM/b renames the folder, the store, the disk files and the .vmx,
# and sets displayName; the disk reads the same bytes, before and after a
# remount, and the store passes qemu-img check and reads the same offline.
# Refused, changing nothing: a rename to another source folder (EINVAL), a
# rename while a disk is open (EBUSY), a taken name (EEXIST), a bad name
# (EINVAL), RENAME_EXCHANGE (EINVAL). Another source folder is EINVAL, not
# EXDEV: on EXDEV mv and file managers fall back to mkdir there and a
# copy, and that mkdir would make a new clone. A move to the trash finds no trash
# folder to make at the mount's top, so nothing is left in the library.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

listing() { (cd "$1" && find . -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort | tr '\n' ' '); }
# renameat2(AT_FDCWD, FROM, AT_FDCWD, TO, FLAGS); prints the errno's text.
renameat2() {
    perl -e 'require "syscall.ph"; my $r = syscall(&SYS_renameat2, -100, $ARGV[0], -100, $ARGV[1], $ARGV[2] + 0);
             if ($r != 0) { print "$!\n"; exit 1 }' "$@" 2>/dev/null ||
    perl -e 'my $r = syscall(316, -100, $ARGV[0], -100, $ARGV[1], $ARGV[2] + 0);
             if ($r != 0) { print "$!\n"; exit 1 }' "$@"
}

make_library
raw_of "$LIB/TwoDisks/TwoDisks.vmdk" "$T/two0.raw"
raw_of "$LIB/TwoDisks/TwoDisks_1.vmdk" "$T/two1.raw"
mount_lib
C=$MNT/clones/TwoDisks
STORE=$LIB/.vmclonefs/clones

mkdir "$C/New Folder" || fail "mkdir as a file manager names it"
cp "$T/two0.raw" "$T/d0.model"
cp "$T/two1.raw" "$T/d1.model"
write_both 1048576 200000 "$C/New Folder/New Folder-flat.vmdk" "$T/d0.model"
write_both 4096 65536 "$C/New Folder/New Folder_1-flat.vmdk" "$T/d1.model"
echo "nvram" >"$C/New Folder/New Folder.nvram"
sync "$C/New Folder/New Folder-flat.vmdk"

# ---- refusals change nothing
before=$(tree_state "$STORE")
exec 3<"$C/New Folder/New Folder_1-flat.vmdk"
expect_err "rename while a disk is open" "Device or resource busy" mv "$C/New Folder" "$C/web1"
expect_log "rename while a disk is open" 'mv clones/TwoDisks/New Folder' 'open'
exec 3<&-
# mv shows EINVAL as "cannot move ... to a subdirectory of itself".
expect_err "rename to another source folder" "cannot move" \
    mv -T "$C/New Folder" "$MNT/clones/Ubuntu/web1"
[ ! -e "$MNT/clones/Ubuntu/web1" ] || fail "a refused move made a clone in the other source folder"
expect_log "rename to another source folder" 'stays in its source folder'
expect_err "rename to a bad name" "cannot move" mv "$C/New Folder" "$C/.hidden"
mkdir "$C/taken" || fail "mkdir taken"
before=$(tree_state "$STORE")
expect_err "rename to a taken name" "File exists" renameat2 "$C/New Folder" "$C/taken" 0
expect_err "RENAME_EXCHANGE of two clones" "Invalid argument" renameat2 "$C/New Folder" "$C/taken" 2
same_tree "$before" "$STORE" "refused renames"
[ "$(listing "$C")" = "New Folder taken " ] || fail "after refusals clones/TwoDisks shows '$(listing "$C")'"
same_bytes "$C/New Folder/New Folder-flat.vmdk" "$T/d0.model" "disk 0 after refusals"

# ---- RENAME_EXCHANGE of passed-through files is refused too, and their
# names still mean what they meant
echo one >"$MNT/Ubuntu/one.txt"
echo two >"$MNT/Ubuntu/two.txt"
expect_err "RENAME_EXCHANGE of two files" "Invalid argument" renameat2 "$MNT/Ubuntu/one.txt" "$MNT/Ubuntu/two.txt" 2
[ "$(cat "$MNT/Ubuntu/one.txt")" = one ] && [ "$(cat "$MNT/Ubuntu/two.txt")" = two ] ||
    fail "names changed meaning after a refused exchange"
renameat2 "$MNT/Ubuntu/one.txt" "$MNT/Ubuntu/three.txt" 1 || fail "RENAME_NOREPLACE of a file"
[ "$(cat "$MNT/Ubuntu/three.txt")" = one ] || fail "RENAME_NOREPLACE lost the file"
rm "$MNT/Ubuntu/three.txt" "$MNT/Ubuntu/two.txt"

# ---- the rename: everything follows the new name
log_mark
mv "$C/New Folder" "$C/web1" || fail "mv of a clone within its source folder"
expect_log "rename" 'renamed clone New Folder to web1'
W=$C/web1
[ "$(listing "$C")" = "taken web1 " ] || fail "after mv clones/TwoDisks shows '$(listing "$C")'"
[ "$(listing "$W")" = "New Folder.nvram web1-flat.vmdk web1.vmdk web1.vmx web1_1-flat.vmdk web1_1.vmdk " ] ||
    fail "the renamed folder shows '$(listing "$W")'"
[ ! -e "$STORE/New Folder" ] || fail "the old store folder is still there"
[ "$(cd "$STORE/web1" && ls | LC_ALL=C sort | tr '\n' ' ')" = "New Folder.nvram clone.ini web1.vmdk web1.vmdk.xxh web1.vmx web1_1.vmdk web1_1.vmdk.xxh " ] ||
    fail "the store holds '$(ls "$STORE/web1" | tr '\n' ' ')'"
grep -qx 'displayName = "web1"' "$W/web1.vmx" || fail "displayName did not follow"
grep -q '^scsi0:0.fileName = "web1.vmdk"$' "$W/web1.vmx" || fail "disk 0 name in the .vmx: $(grep -i filename "$W/web1.vmx")"
grep -q '^sata0:1.fileName = "web1_1.vmdk"$' "$W/web1.vmx" || fail "disk 1 name in the .vmx"
grep -q '"web1-flat.vmdk"' "$W/web1.vmdk" || fail "the flat descriptor names the old flat file"
same_bytes "$W/web1-flat.vmdk" "$T/d0.model" "disk 0 after the rename"
same_bytes "$W/web1_1-flat.vmdk" "$T/d1.model" "disk 1 after the rename"
cp "$T/d0.model" "$T/d0b.model"
write_both 7777777 4096 "$W/web1-flat.vmdk" "$T/d0.model"
same_bytes "$W/web1-flat.vmdk" "$T/d0.model" "a write after the rename"
# The old names are gone, in the kernel's cache too.
sleep 1.2
[ ! -e "$C/New Folder" ] || fail "the old name is still there"

# ---- after a remount, and offline
unmount_lib
for d in web1 web1_1; do
    qemu-img check -q "$STORE/web1/$d.vmdk" || fail "qemu-img check of the renamed $d.vmdk"
done
raw_of "$STORE/web1/web1.vmdk" "$T/offline0.raw"
same_bytes "$T/offline0.raw" "$T/d0.model" "renamed store read offline by qemu-img"
if command -v vmdkinfo >/dev/null; then
    vmdkinfo "$STORE/web1/web1.vmdk" >"$T/vmdkinfo.txt" 2>&1 || fail "vmdkinfo of the renamed store: $(tail -3 "$T/vmdkinfo.txt")"
fi
mount_lib
same_bytes "$W/web1-flat.vmdk" "$T/d0.model" "disk 0 after remount"
same_bytes "$W/web1_1-flat.vmdk" "$T/d1.model" "disk 1 after remount"

# ---- a disk name the kernel still caches from before a rename never
# reaches a new clone of the old name
mkdir "$C/a" || fail "mkdir a"
stat "$C/a/a-flat.vmdk" >/dev/null
mv "$C/a" "$C/b" || fail "mv a b"
mkdir "$C/a" || fail "mkdir a again"
perl -e 'open(my $fh, "+<", $ARGV[0]) or exit 1; sysseek($fh, 65536, 0); syswrite($fh, "Q" x 65536)' \
    "$C/b/a-flat.vmdk" 2>/dev/null && fail "a write through b's old disk name succeeded"
same_bytes "$C/a/a-flat.vmdk" "$T/two0.raw" "the new clone a after a write to b's old name"
same_bytes "$C/b/b-flat.vmdk" "$T/two0.raw" "clone b after a write to its old name"
rmdir "$C/a" "$C/b" || fail "rmdir a b"

# ---- a rename, and back, and a delete
mv "$W" "$C/web2" || fail "second rename"
mv "$C/web2" "$C/web1" || fail "rename back"
same_bytes "$W/web1-flat.vmdk" "$T/d0.model" "disk 0 after two renames"

# ---- the trash: no trash folder is made at the mount's top
expect_err "a trash folder at the mount's top" "Operation not permitted" mkdir "$MNT/.Trash-0"
expect_log "a trash folder at the mount's top" '.Trash-0' 'delete instead'
expect_err "the shared trash folder" "Operation not permitted" mkdir "$MNT/.Trash"
if command -v gio >/dev/null; then
    gio trash "$W" >/dev/null 2>&1 && fail "gio trash of a clone folder succeeded"
    [ -d "$W" ] || fail "gio trash took the clone folder away"
fi
[ ! -e "$LIB/.Trash-0" ] && [ ! -e "$LIB/.Trash" ] || fail "a trash folder appeared in the library"
rm -r "$W" "$C/taken" || fail "rm -r of the renamed clone"
[ -z "$(ls -A "$STORE")" ] || fail "the store holds $(ls -A "$STORE")"
unmount_lib
finish_soft_fails
note "a clone renames with its folder, store, disks and displayName; refusals change nothing"
