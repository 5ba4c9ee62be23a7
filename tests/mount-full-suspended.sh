#!/bin/bash
# Full clones of a suspended VM, which VixVM_Clone allows (a linked clone
# stays refused with VIX_E_VM_IS_RUNNING, 3007): the disks are copied as
# they are, no snapshot is taken, and no file of the VM changes. The clone
# reads as qemu-img convert of the VM's disk while copying and once full.
# What asks for the type: the source folder's user.vmclonefs.type, and
# vmclonefs-ctl clone --full / --linked, which leave it as it was. If the
# VM is resumed outside the mount while its clone copies (its disk is
# written), the copy stops, the clone is broken, and its disk answers EIO
# rather than mix old and new bytes.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

make_library
C=$MNT/clones
STORE=$LIB/.vmclonefs/clones
CTL() { "$VMCLONEFS_CTL" -m "$MNT" "$@"; }

# A VM with 8 MiB of data in a 64 MiB disk: at 2 MiB/s its copy takes a
# few seconds, time to look at it and to resume the VM under it.
S=$LIB/Susp
mkdir "$S"
sed 's/Ubuntu/Susp/g' "$LIB/Ubuntu/Ubuntu.vmx" >"$S/Susp.vmx"
qemu-img create -q -f vmdk -o subformat=monolithicSparse,adapter_type=lsilogic "$S/Susp.vmdk" 64M
head -c 8M /dev/urandom >"$T/r"
qemu-io -f vmdk -c "write -s $T/r 3M 8M" "$S/Susp.vmdk" >/dev/null
raw_of "$S/Susp.vmdk" "$T/s.raw"
set_vmstate "$S/Susp.vmx" "Susp-5f3a1c2e.vmss"
echo "memory" >"$S/Susp-5f3a1c2e.vmss"
# Names, modes, bytes, and each file's inode and mtime: nothing of Susp changes.
vm_state() { tree_state "$S"; stat -c '%n %i %Y' "$S"/* | LC_ALL=C sort; }
before=$(vm_state)
same_vm() { [ "$(vm_state)" = "$before" ] || fail "$1: Susp changed: $(diff <(echo "$before") <(vm_state) | head)"; }
mount_lib -o copy_rate=2

# ---- a linked clone stays refused, and says what works
expect_err "linked clone of a suspended VM" "Device or resource busy" mkdir "$C/Susp/l1"
expect_log "linked clone of a suspended VM" 'mkdir clones/Susp/l1' '3007' 'a full clone copies'
same_vm "refused linked clone of a suspended VM"

# ---- the source folder says what mkdir makes there, and can be told
[ "$(attr "$C/Susp" type)" = linked ] || fail "clones/Susp type is $(attr "$C/Susp" type)"
getfattr -d -m - "$C/Susp" 2>/dev/null | grep -q '^user.vmclonefs.type="linked"' ||
    fail "getfattr -d does not list the source's type"
expect_err "a bad source type" "Invalid argument" setfattr -n user.vmclonefs.type -v fast "$C/Susp"
expect_err "another source attribute" "Operation not permitted" \
    setfattr -n user.vmclonefs.state -v full "$C/Susp"
setfattr -n user.vmclonefs.type -v full "$C/Susp" || fail "setfattr type full on clones/Susp"
[ "$(attr "$C/Susp" type)" = full ] || fail "clones/Susp type did not become full"
[ "$(attr "$C/Ubuntu" type)" = linked ] || fail "setting clones/Susp's type changed clones/Ubuntu's"

# ---- a full clone, from the disks as they are
mkdir "$C/Susp/s1" || fail "full clone of a suspended VM: $(tail -n 3 "$LOG")"
F=$C/Susp/s1/s1-flat.vmdk
[ "$(attr "$C/Susp/s1" type)" = full ] || fail "s1 is not full"
[ "$(attr "$C/Susp/s1" state)" = copying ] || fail "s1 is $(attr "$C/Susp/s1" state) right after mkdir"
snap=$(attr "$C/Susp/s1" snapshot) || fail "s1 has no snapshot attribute"
[ -z "$snap" ] || fail "s1 has base snapshot $snap"
grep -qx 'checkpoint.vmState = ""' "$C/Susp/s1/s1.vmx" || fail "s1 inherited the suspended state"
same_bytes "$F" "$T/s.raw" "s1 while copying"
same_vm "a full clone of a suspended VM (no snapshot, nothing changed)"
# What it reads is protected through the mount meanwhile: no write, and
# no new mtime (which would break the copy).
expect_err "write into the suspended VM's disk" "Read-only file system" \
    dd if=/dev/zero of="$MNT/Susp/Susp.vmdk" bs=512 count=1 conv=notrunc status=none
expect_err "touch of the suspended VM's disk" "Read-only file system" touch "$MNT/Susp/Susp.vmdk"
expect_err "utimensat of the suspended VM's disk" "Device or resource busy" \
    perl -e 'utime(1e9, 1e9, $ARGV[0]) or die "$!\n"' "$MNT/Susp/Susp.vmdk"
# Nor is it a source until it is full: it sits on a suspended VM's disks.
expect_err "clone of s1 while it copies" "Device or resource busy" mkdir "$C/s1/x1"
# A crash right after: the copy goes on at the next mount, a full clone still.
crash_daemon
mount_lib -o copy_rate=2
[ "$(attr "$C/Susp/s1" type)" = full ] || fail "s1 is $(attr "$C/Susp/s1" type) after a crash"
case $(attr "$C/Susp/s1" state) in copying | full) ;; *) fail "s1 is $(attr "$C/Susp/s1" state) after a crash" ;; esac
same_bytes "$F" "$T/s.raw" "s1 after a crash"
[ "$(attr "$C/Susp" type)" = linked ] || fail "clones/Susp's type outlived the mount"
setfattr -n user.vmclonefs.type -v full "$C/Susp"
setfattr -x user.vmclonefs.type "$C/Susp" || fail "setfattr -x of clones/Susp's type"
[ "$(attr "$C/Susp" type)" = linked ] || fail "clones/Susp's type did not go back to the mount's"
setfattr -n user.vmclonefs.type -v full "$C/Susp"
wait_state "$C/Susp/s1" full 60
same_bytes "$F" "$T/s.raw" "s1 full"
qemu-img info --backing-chain "$STORE/s1/s1.vmdk" >"$T/info"
[ "$(grep -c '^image:' "$T/info")" = 1 ] || fail "s1's chain is not one image: $(cat "$T/info")"
qemu-img check -q "$STORE/s1/s1.vmdk" || fail "qemu-img check of the full s1"
raw_of "$STORE/s1/s1.vmdk" "$T/off.raw"
same_bytes "$T/off.raw" "$T/s.raw" "s1 read offline"
same_vm "Susp after its clone went full"

# ---- vmclonefs-ctl asks for the type of one clone, and puts the source's back
setfattr -n user.vmclonefs.type -v linked "$C/Susp"
CTL clone Susp k1 --full || fail "ctl clone --full of a suspended VM"
[ "$(attr "$C/Susp/k1" type)" = full ] || fail "ctl clone --full made $(attr "$C/Susp/k1" type)"
[ "$(attr "$C/Susp" type)" = linked ] || fail "ctl clone --full left clones/Susp $(attr "$C/Susp" type)"
CTL clone Susp k2 2>"$T/ctl.err" && fail "ctl clone (linked) of a suspended VM succeeded"
grep -q '3007' "$T/ctl.err" || fail "ctl clone's refusal does not say why: $(cat "$T/ctl.err")"
setfattr -n user.vmclonefs.type -v full "$C/Susp"
CTL clone Susp k3 --linked 2>"$T/ctl.err" && fail "ctl clone --linked of a suspended VM succeeded"
grep -q '3007' "$T/ctl.err" || fail "ctl clone --linked's refusal does not say why: $(cat "$T/ctl.err")"
rc=0; CTL clone Susp k4 --full --linked 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "ctl clone --full --linked exited $rc, not 2"
[ "$(attr "$C/Susp" type)" = full ] || fail "ctl clone --linked left clones/Susp $(attr "$C/Susp" type)"
if [ -e "$C/Susp/k2" ] || [ -e "$C/Susp/k3" ]; then fail "a refused ctl clone left a folder"; fi
same_vm "Susp after the ctl clones"
wait_state "$C/Susp/k1" full 60
CTL delete k1 || fail "ctl delete k1"

# ---- the VM resumes outside the mount while a clone copies
mkdir "$C/Susp/s2" || fail "second full clone of Susp"
F2=$C/Susp/s2/s2-flat.vmdk
[ "$(attr "$C/Susp/s2" state)" = copying ] || fail "s2 is $(attr "$C/Susp/s2" state) right after mkdir"
cmp -s -i 4194304 -n 1048576 "$F2" "$T/s.raw" || fail "s2 reads wrong before the VM resumes"
# Workstation resuming: the suspend file goes, and the guest writes.
set_vmstate "$S/Susp.vmx" ""
rm "$S/Susp-5f3a1c2e.vmss"
qemu-io -f vmdk -c "write -P 171 4M 1M" "$S/Susp.vmdk" >/dev/null
wait_state "$C/Susp/s2" broken 15
attr "$C/Susp/s2" error | grep -q 'changed outside vmclonefs' ||
    fail "s2's error does not say why: $(attr "$C/Susp/s2" error)"
expect_log "broken by a resume" 'clone s2' 'Susp.vmdk' 'changed outside vmclonefs'
cat "$F2" >/dev/null 2>"$T/cat.err" && fail "s2 read after its source changed under it"
grep -q 'Input/output error' "$T/cat.err" || fail "reading s2: $(cat "$T/cat.err")"
# For good: after a remount it is still broken, never served.
unmount_lib
mount_lib
[ "$(attr "$C/Susp/s2" state)" = broken ] || fail "s2 is $(attr "$C/Susp/s2" state) after a remount"
cat "$F2" >/dev/null 2>&1 && fail "s2 read after a remount"
# A broken clone can still go, and s1 (full) never needed Susp.
rmdir "$C/Susp/s2" || fail "rmdir of the broken s2"
same_bytes "$F" "$T/s.raw" "s1 after Susp resumed"

unmount_lib
finish_soft_fails
note "full clones of a suspended VM: copied as they are, no snapshot, a resume under the copy breaks it"
