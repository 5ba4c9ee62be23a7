/* The snapshots vmclonefs takes as bases of linked clones of a VM's
 * current state: taking one (with a record that can take it back), using
 * one again while the VM has not changed, and taking it back when its last
 * clone goes.
 *
 * A record per snapshot, LIBRARY/.vmclonefs/snapshots/UID-HASH.ini, holds
 * the VM's .vmx and .vmsd as they were before the snapshot, their hashes
 * after it, and the new deltas. It is written before the .vmx commit, so a
 * crash at any point leaves either no snapshot, or a snapshot the next
 * mount can take back once no clone uses it. Taking back restores the two
 * files byte for byte when nobody edited them since, and undoes just our
 * change (the disk names, the .vmsd group) when somebody did. */
#pragma once
#include <glib.h>
#include "library.h"
#include "snapshot.h"

/* Snapshots VM's current state for clone NAME, or reuses the vmclonefs
 * snapshot VM is still on when no disk of it has been written since
 * (*REUSED). Sets the snapshot's disks, display name and uid. With UNDO,
 * *UNDO can take a new snapshot back while nothing ran on it. */
gboolean vcf_base_take(VcfLibrary *lib, const VcfVm *vm, const char *name,
                       GPtrArray **disks, char **display_name, char **uid,
                       gboolean *reused, VcfSnapshotUndo **undo, GError **error);
/* Takes back a snapshot just taken (vcf_base_take's *UNDO), record included. */
gboolean vcf_base_undo(VcfLibrary *lib, VcfSnapshotUndo *undo, const char *vm_name,
                       const char *uid, GError **error);

/* Takes snapshot UID of VM back if vmclonefs took it, no clone with disks
 * is based on it, the VM is powered off and has not written since. TRUE
 * when taken back; FALSE with *WHY (and no error) when it stays. */
gboolean vcf_base_release(VcfLibrary *lib, const char *vm_name, const char *uid,
                          char **why, GError **error);
/* vcf_base_release for every recorded snapshot; *TAKEN_BACK gets the
 * display names taken back, *PROBLEMS a sentence per error. */
void vcf_base_release_unused(VcfLibrary *lib, GPtrArray *taken_back, GPtrArray *problems);
