#!/bin/bash
# A linked clone of a VM's current state needs the VM powered off, as
# VixVM_Clone does: a running VM (VMware's .lck folders) or a suspended one
# (checkpoint.vmState in the .vmx, or a .vmss file) is refused with EBUSY,
# the log says why (with VIX_E_VM_IS_RUNNING, 3007, for a suspended VM), and
# the VM's files stay as they were. Cloning a snapshot of a running or
# suspended VM works, and takes no new snapshot.
# shellcheck disable=SC2119,SC2154  # make check sets top_srcdir; lib's functions take no args here
# shellcheck source=tests/lib.sh
. "$top_srcdir/tests/lib.sh"

store_empty() {
    [ -z "$(ls -A "$LIB/.vmclonefs/clones")" ] ||
        fail "$1: the store holds $(ls -A "$LIB/.vmclonefs/clones")"
}

make_library
raw_of "$LIB/Ubuntu/Ubuntu.vmdk" "$T/ubuntu.raw"
raw_of "$LIB/Chain/Chain.vmdk" "$T/chain-base.raw"
raw_of "$LIB/Chain/Chain-000001.vmdk" "$T/chain-configured.raw"
mount_lib
C=$MNT/clones
U=$LIB/Ubuntu

# ---- powered on: Workstation holds NAME.vmx.lck and a .lck per disk
mkdir "$U/Ubuntu.vmx.lck" "$U/Ubuntu.vmdk.lck"
echo "lock" >"$U/Ubuntu.vmx.lck/M54321.lck"
before=$(tree_state "$U")
expect_err "powered on" "Device or resource busy" mkdir "$C/Ubuntu/on1"
expect_log "powered on" 'mkdir clones/Ubuntu/on1' 'powered on' 'Ubuntu.vmx.lck'
same_tree "$before" "$U" "refused clone of a running VM"
store_empty "refused clone of a running VM"
[ ! -e "$C/Ubuntu/on1" ] || fail "clones/Ubuntu/on1 exists after EBUSY"
# A disk lock alone (a VM starting or a tool holding the disk) counts too.
rm -r "$U/Ubuntu.vmx.lck"
before=$(tree_state "$U")
expect_err "disk locked" "Device or resource busy" mkdir "$C/Ubuntu/on2"
expect_log "disk locked" 'mkdir clones/Ubuntu/on2' 'Ubuntu.vmdk.lck'
same_tree "$before" "$U" "refused clone of a VM with a locked disk"
rmdir "$U/Ubuntu.vmdk.lck"

# ---- suspended: VMware refuses with VIX_E_VM_IS_RUNNING (3007)
set_vmstate "$U/Ubuntu.vmx" "Ubuntu-5f3a1c2e.vmss"
before=$(tree_state "$U")
expect_err "suspended (.vmx)" "Device or resource busy" mkdir "$C/Ubuntu/sus1"
expect_log "suspended (.vmx)" 'mkdir clones/Ubuntu/sus1' 'suspended' '3007' 'checkpoint.vmState'
same_tree "$before" "$U" "refused clone of a suspended VM"
store_empty "refused clone of a suspended VM"
# .vmx keys are case-insensitive for VMware.
sed -i 's/^checkpoint\.vmState = /CheckPoint.VMState = /' "$U/Ubuntu.vmx"
before=$(tree_state "$U")
expect_err "suspended (key in other case)" "Device or resource busy" mkdir "$C/Ubuntu/sus2"
expect_log "suspended (key in other case)" 'mkdir clones/Ubuntu/sus2' '3007'
same_tree "$before" "$U" "refused clone of a suspended VM (key in other case)"
sed -i 's/^CheckPoint\.VMState = /checkpoint.vmState = /' "$U/Ubuntu.vmx"
set_vmstate "$U/Ubuntu.vmx" ""
# The suspend file alone.
echo "memory" >"$U/Ubuntu-5f3a1c2e.vmss"
before=$(tree_state "$U")
expect_err "suspended (.vmss)" "Device or resource busy" mkdir "$C/Ubuntu/sus3"
expect_log "suspended (.vmss)" 'mkdir clones/Ubuntu/sus3' '3007' 'Ubuntu-5f3a1c2e.vmss'
same_tree "$before" "$U" "refused clone of a VM with a .vmss"
store_empty "refused clone of a VM with a .vmss"
rm "$U/Ubuntu-5f3a1c2e.vmss"
[ -z "$(ls -A "$C/Ubuntu")" ] || fail "clones/Ubuntu lists $(ls -A "$C/Ubuntu")"
[ -z "$(find "$C" -maxdepth 1 -name 'Ubuntu@*')" ] || fail "a snapshot was taken: $(ls "$C")"

# ---- powered off again: the refusals left nothing in the way
mkdir "$C/Ubuntu/base" || fail "mkdir once the VM is off"
same_bytes "$C/Ubuntu/base/base-flat.vmdk" "$T/ubuntu.raw" "clone made after the refusals"
[ "$(grep -c '^snapshot[0-9]*\.displayName = ' "$U/Ubuntu.vmsd")" = 1 ] ||
    fail "expected exactly one snapshot: $(grep displayName "$U/Ubuntu.vmsd")"

# ---- a snapshot of a running VM can be cloned; nothing of the VM changes
mkdir "$U/Ubuntu.vmx.lck"
before=$(tree_state "$U")
log_mark
mkdir "$C/Ubuntu@vmclonefs: base/snap1" || fail "clone of a snapshot of a running VM: $(tail -n 3 "$LOG")"
same_bytes "$C/Ubuntu@vmclonefs: base/snap1/snap1-flat.vmdk" "$T/ubuntu.raw" "clone of a running VM's snapshot"
same_tree "$before" "$U" "clone of a snapshot of a running VM"
expect_err "running, current state, again" "Device or resource busy" mkdir "$C/Ubuntu/on3"
rmdir "$U/Ubuntu.vmx.lck"

L=$LIB/Chain
mkdir "$L/Chain.vmx.lck" "$L/Chain-000002.vmdk.lck"
before=$(tree_state "$L")
mkdir "$C/Chain@Configured/run1" || fail "clone of Chain@Configured while Chain runs"
mkdir "$C/Chain@Base install/run2" || fail "clone of Chain@Base install while Chain runs"
same_bytes "$C/Chain@Configured/run1/run1-flat.vmdk" "$T/chain-configured.raw" "Chain@Configured of a running VM"
same_bytes "$C/Chain@Base install/run2/run2-flat.vmdk" "$T/chain-base.raw" "Chain@Base install of a running VM"
expect_err "running Chain, current state" "Device or resource busy" mkdir "$C/Chain/run3"
expect_log "running Chain, current state" 'mkdir clones/Chain/run3' 'powered on'
same_tree "$before" "$L" "clones of a running VM's snapshots"
rm -r "$L/Chain.vmx.lck" "$L/Chain-000002.vmdk.lck"

# ---- and of a suspended one
set_vmstate "$L/Chain.vmx" "Chain-0b1c.vmss"
echo "memory" >"$L/Chain-0b1c.vmss"
before=$(tree_state "$L")
mkdir "$C/Chain@Configured/sus4" || fail "clone of Chain@Configured while Chain is suspended"
same_bytes "$C/Chain@Configured/sus4/sus4-flat.vmdk" "$T/chain-configured.raw" "Chain@Configured of a suspended VM"
expect_err "suspended Chain, current state" "Device or resource busy" mkdir "$C/Chain/sus5"
expect_log "suspended Chain, current state" 'mkdir clones/Chain/sus5' '3007'
same_tree "$before" "$L" "clone of a suspended VM's snapshot"
# A clone is never suspended, whatever its source was.
grep -qx 'checkpoint.vmState = ""' "$C/Chain@Configured/sus4/sus4.vmx" ||
    fail "the clone inherited the suspended state: $(grep -i vmstate "$C/Chain@Configured/sus4/sus4.vmx")"

unmount_lib
finish_soft_fails
note "power state: running and suspended VMs refused with EBUSY, their snapshots clone"
