#!/bin/bash
# Full clones: usable at once, copied in the background until they need
# nothing of their source, then standalone VMware disks. Every read is
# checked against a model (qemu-img convert of the source, plus the same
# writes): while copying, after a kill -9 and a remount in the middle (the
# copy goes on from its cursor, progress never back to 0), and after the
# promotion, through the mount and offline. The source VM is then deleted
# and the clone still reads right. A linked clone turns full with
# setfattr; the xattrs and their refusals are checked.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

make_library
C=$MNT/clones
STORE=$LIB/.vmclonefs/clones
wait_full() { wait_state "$1" full 30; }   # FOLDER

# A VM with 12 MiB of data in a 64 MiB disk, and 1 MiB written as zeros
# (allocated in the source, nothing to copy).
D=$LIB/Data
new_vm Data monolithicSparse 64M
head -c 4M /dev/urandom >"$T/r1"
head -c 8M /dev/urandom >"$T/r2"
qemu-io -f vmdk -c "write -P 0 16M 1M" "$D/Data.vmdk" >/dev/null
qemu-io -f vmdk -c "write -s $T/r1 1M 4M" -c "write -s $T/r2 40M 8M" "$D/Data.vmdk" >/dev/null
raw_of "$D/Data.vmdk" "$T/f1.raw"
size=$(stat -c %s "$T/f1.raw")

# ---- mkdir makes a full clone, usable at once
mount_lib -o clone_type=full,copy_rate=2
mkdir "$C/Data/f1"
F=$C/Data/f1/f1-flat.vmdk
[ "$(attr "$C/Data/f1" type)" = full ] || fail "type of f1 is not full"
state=$(attr "$C/Data/f1" state)
[ "$state" = copying ] || fail "f1 is $state, not copying, right after mkdir"
same_bytes "$F" "$T/f1.raw" "f1 while copying"
# Writes during the copy, some in the data the copier has yet to reach.
for off in 0 $((2 * 1048576 + 4096)) $((41 * 1048576)) $((47 * 1048576 + 100)) $((60 * 1048576)); do
    write_both "$off" 70000 "$F" "$T/f1.raw"
done
sync "$F"
same_bytes "$F" "$T/f1.raw" "f1 after writes while copying"
# The copy writes the store, not the disk: its times stay (tar would say
# "file changed as we read it").
t1=$(stat -c '%y %z' "$F" "$C/Data/f1")
sleep 1.5
[ "$(stat -c '%y %z' "$F" "$C/Data/f1")" = "$t1" ] ||
    fail "f1's times moved with the copy: $t1, then $(stat -c '%y %z' "$F" "$C/Data/f1")"
tar -cf "$T/during.tar" -C "$C/Data" f1 || fail "tar of f1 during its copy"
rm -f "$T/during.tar"
[ "$(attr "$C/Data/f1" state)" = copying ] || fail "f1's copy ended before its times were checked"
read -r done1 total <<<"$(attr "$C/Data/f1" progress)"
[ "$total" -ge $((12 * 1048576)) ] || fail "f1's total to copy is $total, under its 12 MiB of data"
for _ in $(seq 100); do
    read -r done1 total <<<"$(attr "$C/Data/f1" progress)"
    [ "$done1" -ge $((3 * 1048576)) ] && break
    sleep 0.1
done
[ "$done1" -gt 0 ] && [ "$done1" -lt "$total" ] || fail "progress $done1 of $total is not midway"
rate=$(attr "$C/Data/f1" rate)
[ "$rate" -gt 0 ] && [ "$rate" -le $((3 * 1048576)) ] || fail "rate $rate is not near the 2 MiB/s cap"
getfattr -d -m - "$C/Data/f1" >"$T/attrs"
for a in source snapshot type state progress rate error store_bytes; do
    grep -q "^user.vmclonefs.$a=" "$T/attrs" || fail "getfattr -d does not show $a"
done
grep -q '^user.vmclonefs.source="Data"' "$T/attrs" || fail "source of f1 is not Data"

# A clone of a clone that is copying: a freeze would undo the copy's work.
expect_err "clone of a copying clone" "Device or resource busy" mkdir "$C/f1/x"
attr "$C/f1" error | grep -q "is being copied" || fail "clones/f1's error: $(attr "$C/f1" error)"

# ---- kill -9 in the middle: the copy goes on from its cursor
sleep 1.5   # a step or so more, durable
crash_daemon
read -r _ unit _ <"$STORE/f1/.vcf-copy-cursor" || fail "no copy cursor after a crash"
[ "$unit" -gt 0 ] || fail "the copy cursor is at $unit after a crash"
qemu-img check -q "$STORE/f1/f1.vmdk" || fail "qemu-img check after the crash"
log_mark
mount_lib -o copy_rate=4
read -r done2 total2 <<<"$(attr "$C/Data/f1" progress)"
[ "$done2" -gt 0 ] || fail "progress went back to 0 after the remount"
[ "$total2" = "$total" ] || fail "total to copy changed from $total to $total2 across the remount"
expect_log "resumed copy" "clone f1: the full copy goes on"
same_bytes "$F" "$T/f1.raw" "f1 after the crash, copying again"
wait_full "$C/Data/f1"
read -r done3 total3 <<<"$(attr "$C/Data/f1" progress)"
[ "$done3" = "$total3" ] || fail "f1 is full at progress $done3 of $total3"
same_bytes "$F" "$T/f1.raw" "f1 full"

# ---- a standalone VMware disk, with nothing of the zeros copied
qemu-img info --backing-chain "$STORE/f1/f1.vmdk" >"$T/info"
grep -q "backing file" "$T/info" && fail "f1's store still has a backing file: $(cat "$T/info")"
[ "$(grep -c '^image:' "$T/info")" = 1 ] || fail "f1's chain is not one image"
qemu-img check -q "$STORE/f1/f1.vmdk" || fail "qemu-img check of the full f1"
vmdkinfo "$STORE/f1/f1.vmdk" >"$T/vmdkinfo" 2>&1 || fail "vmdkinfo f1: $(tail -3 "$T/vmdkinfo")"
grep -q "Parent content identifier:.*0xffffffff" "$T/vmdkinfo" ||
    fail "vmdkinfo: f1 still has a parent CID: $(cat "$T/vmdkinfo")"
raw_of "$STORE/f1/f1.vmdk" "$T/off.raw"
same_bytes "$T/off.raw" "$T/f1.raw" "f1 read offline"
qemu-img map --output=json "$STORE/f1/f1.vmdk" |
    awk -v a=$((16 * 1048576)) -v b=$((17 * 1048576)) -F'[:,]' \
        '/"data": true/ { s = $4 + 0; l = $6 + 0; if (s < b && s + l > a) bad = 1 } END { exit bad }' ||
    fail "the zeros the source held were copied into f1's store"

# ---- the source can go: rm -r of the VM through the mount
rm -r "$MNT/Data" || fail "rm -r of Data after f1 went full"
[ ! -e "$LIB/Data" ] || fail "Data is still there"
ls "$C" >"$T/sources"
grep -qx Data "$T/sources" || fail "clones/Data is not listed for f1 once Data is gone"
same_bytes "$F" "$T/f1.raw" "f1 with its source deleted"
unmount_lib
mount_lib
same_bytes "$F" "$T/f1.raw" "f1 remounted, its source deleted"
[ "$(attr "$C/Data/f1" progress)" = "$total3 $total3" ] ||
    fail "f1's progress after a remount: $(attr "$C/Data/f1" progress), not $total3 $total3"
# rsync -X checks each value's length against the size it was told.
mkdir "$T/rs"
rsync -aX "$C/Data/f1" "$T/rs/" || fail "rsync -aX of a clone folder"
cmp -s "$T/rs/f1/f1-flat.vmdk" "$T/f1.raw" || fail "rsync -aX copied f1's disk wrong"
[ "$(getfattr --only-values -n user.vmclonefs.type "$T/rs/f1")" = full ] || fail "rsync -aX lost f1's xattrs"
rm -rf "$T/rs"

# ---- a linked clone made full, and a clone of a clone
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/l1.raw"
mkdir "$C/Ubuntu/l1"
[ "$(attr "$C/Ubuntu/l1" type)" = linked ] || fail "a plain mkdir is not linked"
[ "$(attr "$C/Ubuntu/l1" state)" = linked ] || fail "state of a linked clone is not linked"
write_both 100000 300000 "$C/Ubuntu/l1/l1-flat.vmdk" "$T/l1.raw"
mkdir "$C/l1/c2"
cp "$T/l1.raw" "$T/c2.raw"
write_both 5000000 70000 "$C/l1/c2/c2-flat.vmdk" "$T/c2.raw"
expect_err "rmdir of l1" "Device or resource busy" rmdir "$C/Ubuntu/l1"
expect_err "setfattr type bogus" "Invalid argument" setfattr -n user.vmclonefs.type -v bogus "$C/l1/c2"
expect_err "setfattr state" "Operation not permitted" setfattr -n user.vmclonefs.state -v full "$C/l1/c2"
setfattr -n user.vmclonefs.type -v full "$C/l1/c2"
wait_full "$C/l1/c2"
expect_err "setfattr type linked of a full clone" "Invalid argument" \
    setfattr -n user.vmclonefs.type -v linked "$C/l1/c2"
same_bytes "$C/l1/c2/c2-flat.vmdk" "$T/c2.raw" "c2 full"
# c2 needs nothing of l1 now: l1 can go.
rmdir "$C/Ubuntu/l1" || fail "rmdir l1 once its clone c2 is full"
same_bytes "$C/l1/c2/c2-flat.vmdk" "$T/c2.raw" "c2 with l1 gone"
raw_of "$STORE/c2/c2.vmdk" "$T/off2.raw"
same_bytes "$T/off2.raw" "$T/c2.raw" "c2 offline"

# A full clone's frozen layers that a clone of it reads keep its source:
# m1 <- m2 <- m3, then m2 full: m1 stays while m3 reads m2's old layer.
mkdir "$C/Ubuntu/m1"
scribble() { head -c 100000 /dev/urandom | dd of="$1" bs=100000 seek="$2" oflag=seek_bytes conv=notrunc status=none; }
scribble "$C/Ubuntu/m1/m1-flat.vmdk" 0
mkdir "$C/m1/m2"
scribble "$C/m1/m2/m2-flat.vmdk" 200000
mkdir "$C/m2/m3"
raw_of "$LIB/.vmclonefs/clones/m3/m3.vmdk" "$T/m3.raw"
setfattr -n user.vmclonefs.type -v full "$C/m1/m2"
wait_full "$C/m1/m2"
expect_err "rmdir m1 while m3 reads m2's frozen layer on m1" "Device or resource busy" \
    rmdir "$C/Ubuntu/m1"
same_bytes "$C/m2/m3/m3-flat.vmdk" "$T/m3.raw" "m3 with m2 full"
rmdir "$C/m2/m3" || fail "rmdir m3"
rmdir "$C/Ubuntu/m1" || fail "rmdir m1 once m2 is full and nothing reads its old layers"
rmdir "$C/m1/m2" || fail "rmdir m2"

# ---- the status file: read-only, not listed, not taken by tar
grep -q '^state: *full$' "$C/l1/c2/.vmclonefs-status" || fail "c2's status file: $(cat "$C/l1/c2/.vmclonefs-status")"
ls -a "$C/l1/c2" | grep -q vmclonefs-status && fail "the status file is listed"
expect_err "rm of the status file" "Operation not permitted" rm "$C/l1/c2/.vmclonefs-status"
expect_err "writing the status file" "Permission denied" sh -c "echo x >'$C/l1/c2/.vmclonefs-status'"
tar -cf "$T/c2.tar" -C "$C/l1" c2
tar -tf "$T/c2.tar" | grep -q status && fail "tar took the status file"

# ---- vmclonefs-ctl: list, clone --full, status --watch, delete, why
CTL() { "$VMCLONEFS_CTL" -m "$MNT" "$@"; }
CTL list -H >"$T/list"
grep -qP '^f1\tData\tfull\tfull\t100.0%\t[0-9]+$' "$T/list" || fail "ctl list -H: $(cat "$T/list")"
CTL list --json | python3 -c 'import json,sys; d={c["name"]: c for c in json.load(sys.stdin)}; assert d["c2"]["type"] == "full" and d["c2"]["source"] == "l1", d' ||
    fail "ctl list --json"
CTL list | head -1 | grep -q '^NAME *SOURCE *TYPE *STATE *PROGRESS *USED$' || fail "ctl list has no header"
CTL clone Ubuntu k1 --full || fail "ctl clone --full"
[ "$(attr "$C/Ubuntu/k1" type)" = full ] || fail "ctl clone --full made a $(attr "$C/Ubuntu/k1" type) clone"
CTL status k1 --watch >"$T/watch" || fail "ctl status --watch: $(cat "$T/watch")"
tail -1 "$T/watch" | grep -q '^k1 full 100.0%' || fail "ctl status --watch ended with: $(tail -1 "$T/watch")"
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/k1.raw"
same_bytes "$C/Ubuntu/k1/k1-flat.vmdk" "$T/k1.raw" "k1 full"
CTL clone Ubuntu k2 && CTL clone k2 k3 || fail "ctl clone k2, k3"
CTL delete k2 2>"$T/ctl.err" && fail "ctl delete k2 with k3 made from it succeeded"
grep -q "clone k2 is the source of linked clone k3.*(Device or resource busy)" "$T/ctl.err" ||
    fail "ctl delete k2: $(cat "$T/ctl.err")"
CTL why Ubuntu | grep -q "k3" || fail "ctl why Ubuntu: $(CTL why Ubuntu)"
CTL clone Ubuntu k1 2>"$T/ctl.err" && fail "ctl clone of a taken name succeeded"
grep -q "File exists" "$T/ctl.err" || fail "ctl clone k1 again: $(cat "$T/ctl.err")"
CTL promote k3 && CTL status k3 --watch >/dev/null || fail "ctl promote k3"
CTL delete k2 || fail "ctl delete k2 once k3 is full"
CTL delete k3 && CTL delete k1 || fail "ctl delete k3, k1"
CTL status k1 2>/dev/null && fail "ctl status of a deleted clone"

# ---- the library's own files pass their xattrs through
setfattr -n user.note -v hello "$MNT/Ubuntu/Ubuntu.vmx" || fail "setfattr on a library file"
[ "$(getfattr --only-values -n user.note "$LIB/Ubuntu/Ubuntu.vmx")" = hello ] || fail "the xattr did not reach the file"
getfattr -d "$MNT/Ubuntu/Ubuntu.vmx" | grep -q '^user.note="hello"' || fail "getfattr -d of a library file"
setfattr -x user.note "$MNT/Ubuntu/Ubuntu.vmx" || fail "setfattr -x on a library file"
getfattr -n user.note "$LIB/Ubuntu/Ubuntu.vmx" 2>/dev/null && fail "user.note is still there"

# ---- refusals: a full clone of a powered-on VM; the source's error
mkdir "$LIB/Chain/Chain.vmx.lck"
unmount_lib
mount_lib -o clone_type=full
expect_err "full clone of a running VM" "Device or resource busy" mkdir "$C/Chain@Base install/x"
attr "$C/Chain@Base install" error | grep -q "powered on" || fail "the source's error xattr does not say why"
rmdir "$LIB/Chain/Chain.vmx.lck"
# rmdir during a copy stops it and deletes the clone.
mkdir "$C/Ubuntu/gone"
rmdir "$C/Ubuntu/gone" || fail "rmdir of a clone while it copies"
[ ! -e "$STORE/gone" ] || fail "the store of gone is still there"
unmount_lib
finish_soft_fails
