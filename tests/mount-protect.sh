#!/bin/bash
# While a linked clone exists, the disks it reads are protected through the
# mount: not deleted (EBUSY), not written or truncated (EROFS or EBUSY), not
# renamed or replaced (EBUSY), and their VM folder is not renamed or removed;
# their bytes never change. The rest of the VM (its .vmx, its newest delta)
# stays writable. Protection holds across a remount and is lifted when the
# last clone that needs the disk is deleted.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

sha() { sha256sum <"$1" | cut -d' ' -f1; }
# truncate(2) by path, as opposed to coreutils' truncate, which opens the file.
truncate_path() { perl -e 'truncate($ARGV[0], $ARGV[1]) or die "truncate: $!\n"' "$1" "$2"; }

# Every way to change FILE (a path in the mount, VM folder DIR) is refused
# while clone WHO reads it; its bytes stay SHA.
assert_protected() {
    local f=$1 who=$2 sum=$3 dir name
    dir=$(dirname "$f")
    name=$(basename "$f")
    expect_err "rm $name" "Device or resource busy" rm -f "$f"
    expect_log "rm $name" "$name" "linked clone $who"
    expect_err "write into $name" "Read-only file system" \
        dd if=/dev/zero of="$f" bs=512 count=1 conv=notrunc status=none
    expect_log "write into $name" "$name" "linked clone $who"
    # shellcheck disable=SC2016  # $1 is sh's
    expect_err "O_TRUNC on $name" "Read-only file system" sh -c ': >"$1"' sh "$f"
    expect_err "coreutils truncate of $name" "Read-only file system" truncate -s 0 "$f"
    expect_err "truncate(2) of $name" "Device or resource busy" truncate_path "$f" 0
    expect_log "truncate(2) of $name" "$name" "linked clone $who"
    expect_err "rename of $name" "Device or resource busy" mv "$f" "$dir/$name.moved"
    expect_log "rename of $name" "$name" "linked clone $who"
    echo "replacement" >"$T/replacement"
    cp "$T/replacement" "$dir/replacement.tmp"
    expect_err "rename over $name" "Device or resource busy" mv -f "$dir/replacement.tmp" "$f"
    rm "$dir/replacement.tmp"
    [ -f "$f" ] || fail "$name is gone"
    [ ! -e "$dir/$name.moved" ] || fail "$name was moved"
    [ "$(sha "$f")" = "$sum" ] || fail "$name changed through the mount"
}

make_library
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/ubuntu.raw"
raw_of "$LIB/Chain/Chain-000002.vmdk" "$T/chain.raw"
sum_u=$(sha "$LIB/Ubuntu/Ubuntu.vmdk")
mount_lib
C=$MNT/clones
MNT_U=$MNT/Ubuntu

# ---- nothing depends on Ubuntu.vmdk yet: it can be renamed (and back)
mv "$MNT_U/Ubuntu.vmdk" "$MNT_U/Ubuntu.vmdk.moved" || fail "rename of an unprotected disk"
mv "$MNT_U/Ubuntu.vmdk.moved" "$MNT_U/Ubuntu.vmdk" || fail "rename back"

mkdir "$C/Ubuntu/p1" || fail "mkdir clones/Ubuntu/p1"
assert_protected "$MNT_U/Ubuntu.vmdk" p1 "$sum_u"
# The VM folder holds it: no rename, no rmdir.
expect_err "rename of the VM folder" "Device or resource busy" mv "$MNT_U" "$MNT/Ubuntu2"
expect_log "rename of the VM folder" 'Ubuntu' 'linked clone p1'
expect_err "rmdir of the VM folder" "Device or resource busy" rmdir "$MNT_U"
expect_log "rmdir of the VM folder" 'Ubuntu' 'linked clone p1'
if [ ! -d "$LIB/Ubuntu" ] || [ -e "$LIB/Ubuntu2" ]; then fail "the VM folder moved"; fi

# The rest of the VM is the VM's own: its .vmx, and its newest delta, which
# it goes on running in.
echo 'annotation = "still writable"' >>"$MNT_U/Ubuntu.vmx" || fail "append to the VM's .vmx"
tail -n 1 "$LIB/Ubuntu/Ubuntu.vmx" | grep -qx 'annotation = "still writable"' || fail "the .vmx append did not land"
qemu-io -c "write -P 0x5a 1M 64k" "$MNT_U/Ubuntu-000001.vmdk" >/dev/null ||
    fail "qemu-io write into the VM's current delta through the mount"
raw_of "$LIB/Ubuntu/Ubuntu-000001.vmdk" "$T/vm.raw"
cmp -s -n 65536 -i "$((1024 * 1024)):0" "$T/vm.raw" <(perl -e 'print "\x5a" x 65536') ||
    fail "the write into the VM's delta did not land"
# A new mtime would be a change the clone cannot tell from new bytes: refused.
expect_err "touch of a protected disk" "Read-only file system" touch "$MNT_U/Ubuntu.vmdk"
expect_err "utimensat of a protected disk" "Device or resource busy" \
    perl -e 'utime(1e9, 1e9, $ARGV[0]) or die "$!\n"' "$MNT_U/Ubuntu.vmdk"
expect_log "utimensat of a protected disk" 'Ubuntu.vmdk' 'another modification time'

# The file's bytes are the same, the clone still reads them.
[ "$(sha "$LIB/Ubuntu/Ubuntu.vmdk")" = "$sum_u" ] || fail "Ubuntu.vmdk changed"
same_bytes "$C/Ubuntu/p1/p1-flat.vmdk" "$T/ubuntu.raw" "the clone after the attempts"

# ---- a clone of a chain protects every link, and each extent of a split disk
mkdir "$C/Chain/p2" || fail "mkdir clones/Chain/p2"
for f in Chain.vmdk Chain-000001.vmdk Chain-000002.vmdk; do
    assert_protected "$MNT/Chain/$f" p2 "$(sha "$LIB/Chain/$f")"
done
# The new delta the VM runs in is not part of the clone.
[ "$(sed -n 's/^scsi0:0\.fileName = "\(.*\)"$/\1/p' "$LIB/Chain/Chain.vmx")" = Chain-000003.vmdk ] ||
    fail "Chain not moved to a new delta"
mv "$MNT/Chain/Chain-000003.vmdk" "$MNT/Chain/Chain-000003.vmdk.x" || fail "rename of the VM's own delta"
mv "$MNT/Chain/Chain-000003.vmdk.x" "$MNT/Chain/Chain-000003.vmdk" || fail "rename back"
mkdir "$C/Split/p3" || fail "mkdir clones/Split/p3"
for f in Split.vmdk Split-s001.vmdk Split-s002.vmdk; do
    assert_protected "$MNT/Split/$f" p3 "$(sha "$LIB/Split/$f")"
done

# ---- after a remount the protection is back before anyone asks
unmount_lib
mount_lib
expect_err "rm after remount" "Device or resource busy" rm -f "$MNT_U/Ubuntu.vmdk"
expect_err "write after remount" "Read-only file system" \
    dd if=/dev/zero of="$MNT/Chain/Chain.vmdk" bs=512 count=1 conv=notrunc status=none
expect_err "rename of the VM folder after remount" "Device or resource busy" mv "$MNT/Chain" "$MNT/Chain2"
same_bytes "$C/Chain/p2/p2-flat.vmdk" "$T/chain.raw" "the chain clone after the attempts"

# ---- two clones on one disk: it stays protected until the last one goes
mkdir "$C/Ubuntu@vmclonefs: p1/p4" || fail "a second clone on Ubuntu.vmdk"
rmdir "$C/Ubuntu/p1" || fail "rmdir p1"
expect_err "rm while p4 remains" "Device or resource busy" rm -f "$MNT_U/Ubuntu.vmdk"
expect_log "rm while p4 remains" 'Ubuntu.vmdk' 'linked clone p4'
rmdir "$C/Ubuntu@vmclonefs: p1/p4" || fail "rmdir p4"
[ "$(sha "$LIB/Ubuntu/Ubuntu.vmdk")" = "$sum_u" ] || fail "Ubuntu.vmdk changed while protected"

# ---- no clone left: the disk is an ordinary file again
dd if=/dev/null of="$MNT_U/Ubuntu.vmdk" conv=notrunc status=none || fail "open for writing once unprotected"
mv "$MNT_U/Ubuntu.vmdk" "$MNT_U/Ubuntu.vmdk.moved" || fail "rename once unprotected"
mv "$MNT_U/Ubuntu.vmdk.moved" "$MNT_U/Ubuntu.vmdk" || fail "rename back"
mv "$MNT_U" "$MNT/Ubuntu2" || fail "rename of the VM folder once unprotected"
mv "$MNT/Ubuntu2" "$MNT_U" || fail "rename the VM folder back"
rm "$MNT_U/Ubuntu.vmdk" || fail "rm once unprotected"
[ ! -e "$LIB/Ubuntu/Ubuntu.vmdk" ] || fail "Ubuntu.vmdk still in the library"
# The others are still held.
expect_err "Chain still protected" "Device or resource busy" rm -f "$MNT/Chain/Chain.vmdk"
rmdir "$C/Chain/p2" "$C/Split/p3" || fail "rmdir p2 p3"
mv "$MNT/Split/Split-s002.vmdk" "$MNT/Split/Split-s002.vmdk.x" || fail "rename of an extent once unprotected"

# ---- a handle opened for writing before the clone existed: either mkdir
# is refused while the disk is open for writing, or that handle can no
# longer write; the parent never changes under its clone.
D1=$MNT/TwoDisks/TwoDisks_1.vmdk
raw_of "$LIB/TwoDisks/TwoDisks_1.vmdk" "$T/two1.raw"
sum_d1=$(sha "$LIB/TwoDisks/TwoDisks_1.vmdk")
size_d1=$(stat -c %s "$D1")
exec 4<>"$D1"
made=0
if mkdir "$C/TwoDisks/p5" 2>"$T/err"; then
    made=1
    # Over the end of the file: the grains of the disk's last MiB (0x53).
    if perl -e 'open(my $fh, "+<&=", 4) or die "fd 4: $!\n"; sysseek($fh, $ARGV[0], 0) or die;
                syswrite($fh, "JUNK" x 16) or die "write: $!\n"' $((size_d1 - 4096)) 2>"$T/err"; then
        soft_fail "a handle opened for writing before clone p5 existed wrote into its parent"
    fi
else
    grep -q "Device or resource busy" "$T/err" || fail "mkdir while the parent is open for writing: $(cat "$T/err")"
fi
exec 4>&-
[ "$(sha "$LIB/TwoDisks/TwoDisks_1.vmdk")" = "$sum_d1" ] || soft_fail "TwoDisks_1.vmdk changed under clone p5"
if [ "$made" = 1 ] && ! cmp -s "$C/TwoDisks/p5/p5_1-flat.vmdk" "$T/two1.raw"; then
    soft_fail "clone p5 does not read its parent's bytes: $(cmp "$C/TwoDisks/p5/p5_1-flat.vmdk" "$T/two1.raw" 2>&1)"
fi

# ---- the same through a hard link made outside the mount: the handle is
# open on another name of the file a clone then reads
rmdir "$C/TwoDisks/p5" 2>/dev/null || true
ln "$LIB/TwoDisks/TwoDisks.vmdk" "$LIB/TwoDisks/alias.bin"
sum_d0=$(sha "$LIB/TwoDisks/TwoDisks.vmdk")
size_d0=$(stat -c %s "$LIB/TwoDisks/TwoDisks.vmdk")
exec 4<>"$MNT/TwoDisks/alias.bin"
mkdir "$C/TwoDisks@vmclonefs: p5/p6" 2>/dev/null || mkdir "$C/TwoDisks/p6" || fail "mkdir p6"
if perl -e 'open(my $fh, "+<&=", 4) or die "fd 4: $!\n"; sysseek($fh, $ARGV[0], 0) or die;
            syswrite($fh, "JUNK" x 16) or die "write: $!\n"' $((size_d0 - 4096)) 2>"$T/err"; then
    if [ "$(sha "$LIB/TwoDisks/TwoDisks.vmdk")" != "$sum_d0" ]; then
        soft_fail "a write through a hard link reached a disk clone p6 reads"
    fi
else
    grep -q "Read-only file system" "$T/err" || fail "write through the link: $(cat "$T/err")"
fi
exec 4>&-
[ "$(sha "$LIB/TwoDisks/TwoDisks.vmdk")" = "$sum_d0" ] || soft_fail "TwoDisks.vmdk changed under clone p6"

# ---- by its other name the protected disk is the same file: no open for
# writing, no O_TRUNC, no truncate (a hard link made before or after)
ln "$LIB/TwoDisks/TwoDisks.vmdk" "$LIB/TwoDisks/alias2.bin"
sleep 1.1    # past the kernel's cache of the names looked up above
for a in alias.bin alias2.bin; do
    expect_err "open of hard link $a for writing" "Read-only file system" \
        perl -e 'open(my $fh, "+<", $ARGV[0]) or die "$!\n"' "$MNT/TwoDisks/$a"
    expect_log "open of hard link $a for writing" "$a" 'linked clone'
    expect_err "O_TRUNC through hard link $a" "Read-only file system" sh -c ": >'$MNT/TwoDisks/$a'"
    expect_err "truncate(2) of hard link $a" "Device or resource busy" \
        perl -e 'truncate($ARGV[0], 0) or die "$!\n"' "$MNT/TwoDisks/$a"
done
[ "$(sha "$LIB/TwoDisks/TwoDisks.vmdk")" = "$sum_d0" ] || soft_fail "TwoDisks.vmdk changed through a hard link"
[ "$(stat -c %s "$LIB/TwoDisks/TwoDisks.vmdk")" = "$size_d0" ] || soft_fail "TwoDisks.vmdk was truncated"

# ---- a parent changed outside the mount (a snapshot consolidated, a VM
# run on it in VMware): the clone says it is broken and answers EIO, never
# old and new bytes mixed
mkdir "$C/Chain@Configured/w1" || fail "mkdir w1"
W=$C/Chain@Configured/w1/w1-flat.vmdk
raw_of "$LIB/Chain/Chain-000001.vmdk" "$T/configured.raw"
same_bytes "$W" "$T/configured.raw" "w1 before its parent changes"
[ "$(attr "$C/Chain@Configured/w1" state)" = linked ] || fail "w1 is $(attr "$C/Chain@Configured/w1" state)"
qemu-io -f vmdk -c "write -P 90 0 64k" "$LIB/Chain/Chain-000001.vmdk" >/dev/null
wait_state "$C/Chain@Configured/w1" broken 15
attr "$C/Chain@Configured/w1" error | grep -q 'Chain-000001.vmdk.*changed outside vmclonefs' ||
    fail "w1's error does not name the changed file: $(attr "$C/Chain@Configured/w1" error)"
expect_log "a parent changed" 'clone w1 is broken' 'Chain-000001.vmdk'
cat "$W" >/dev/null 2>"$T/cat.err" && fail "w1 read after its parent changed under it"
grep -q 'Input/output error' "$T/cat.err" || fail "reading w1: $(cat "$T/cat.err")"
rmdir "$C/Chain@Configured/w1" || fail "rmdir of the broken w1"
# One that keeps the file's size, mode and CID (dd into a grain): the watch
# on the files below open clones finds it within moments, not at the
# syncer's next pass (every 5 s), and the next read is EIO, not new bytes.
mkdir "$C/Chain@Configured/w3" || fail "mkdir w3"
W3=$C/Chain@Configured/w3/w3-flat.vmdk
raw_of "$LIB/Chain/Chain-000001.vmdk" "$T/configured3.raw"
same_bytes "$W3" "$T/configured3.raw" "w3 before its parent changes"
off=$(host_offset "$LIB/Chain/Chain-000001.vmdk" 0)
[ -n "$off" ] || fail "no data at offset 0 of Chain-000001.vmdk"
size0=$(stat -c %s "$LIB/Chain/Chain-000001.vmdk")
head -c 512 /dev/urandom | dd of="$LIB/Chain/Chain-000001.vmdk" bs=512 seek=$((off / 512)) \
    conv=notrunc status=none
[ "$(stat -c %s "$LIB/Chain/Chain-000001.vmdk")" = "$size0" ] || fail "dd changed the size"
wait_state "$C/Chain@Configured/w3" broken 2
cat "$W3" >/dev/null 2>"$T/cat.err" && fail "w3 read after its parent changed under it"
grep -q 'Input/output error' "$T/cat.err" || fail "reading w3: $(cat "$T/cat.err")"
rmdir "$C/Chain@Configured/w3" || fail "rmdir of the broken w3"
# Changed while the library was not mounted: the CID check refuses it at
# open, and its state says so.
mkdir "$C/Chain@Configured/w2" || fail "mkdir w2"
unmount_lib
qemu-io -f vmdk -c "write -P 91 64k 64k" "$LIB/Chain/Chain-000001.vmdk" >/dev/null
mount_lib
cat "$C/Chain@Configured/w2/w2-flat.vmdk" >/dev/null 2>&1 && fail "w2 read after its parent changed offline"
[ "$(attr "$C/Chain@Configured/w2" state)" = broken ] ||
    fail "w2 is $(attr "$C/Chain@Configured/w2" state) once it failed to open"
attr "$C/Chain@Configured/w2" error | grep -q 'Chain-000001.vmdk.*changed' ||
    fail "w2's error does not say why: $(attr "$C/Chain@Configured/w2" error)"
rmdir "$C/Chain@Configured/w2" || fail "rmdir of the broken w2"
# A parent gone while the library was not mounted: broken, and its disk
# answers EIO (not the ENOENT of the file below it); once the file is
# back as it was, the clone opens again.
mkdir "$C/TwoDisks/w4" || fail "mkdir w4"
W4=$(ls -d "$C"/TwoDisks*/w4)
unmount_lib
mv "$LIB/TwoDisks/TwoDisks_1.vmdk" "$T/"
mount_lib
cat "$W4/w4_1-flat.vmdk" >/dev/null 2>"$T/cat.err" && fail "w4 read with its parent gone"
grep -q 'Input/output error' "$T/cat.err" || fail "reading w4 with its parent gone: $(cat "$T/cat.err")"
[ "$(attr "$W4" state)" = broken ] || fail "w4 is $(attr "$W4" state) with its parent gone"
attr "$W4" error | grep -q 'TwoDisks_1.vmdk' ||
    fail "w4's error does not name the missing file: $(attr "$W4" error)"
unmount_lib
mv "$T/TwoDisks_1.vmdk" "$LIB/TwoDisks/"
mount_lib
cat "$W4/w4_1-flat.vmdk" >/dev/null || fail "w4 does not read once its parent is back"
[ "$(attr "$W4" state)" = linked ] || fail "w4 is $(attr "$W4" state) once its parent is back"
rmdir "$W4" || fail "rmdir w4"

unmount_lib
finish_soft_fails
note "parent disks are protected while clones need them, and only then"
