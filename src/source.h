/* What a clone is made from, resolved once: a VM's current state (frozen
 * by a snapshot vmclonefs takes, or reuses while the VM has not changed),
 * one of its snapshots, or another clone (whose current delta is frozen as
 * a read-only layer, freeze.h). */
#pragma once
#include <glib.h>
#include "clone.h"
#include "library.h"
#include "snapshot.h"

typedef struct {
    VcfVm *vm;             /* the config the clone copies: the VM's, or the source clone's */
    GPtrArray *disks;      /* VcfVmDisk: what each new disk sits on, in the clone's order */
    char *vm_name;         /* the VM folder the chain starts in */
    char *snapshot;        /* display name of the VM snapshot at the chain's bottom;
                            * NULL for a suspended VM's current disks (full clones) */
    char *uid;             /* its uid; NULL if not recorded */
    char *parent_clone;    /* the source clone, or NULL for a VM */
    VcfSnapshotUndo *undo; /* set when resolving took the snapshot */
} VcfSource;

/* Resolves SOURCE for new clone NAME: "VM", "VM@SNAPSHOT" (its display
 * name) or "CLONE". A VM's current state must be powered off, or for a
 * FULL clone suspended (its disks are then taken as they are); a clone
 * too, and its disks are frozen (vcf_disk_freeze): OPEN is the clone when
 * it is open already, else it is opened for the freeze. Errors: ENOENT
 * (unknown source or snapshot), EBUSY (powered on, suspended for a linked
 * clone, or a clone of a suspended VM not full yet), EINVAL
 * (a source with no disk, or several snapshots of that name), EIO. */
gboolean vcf_source_resolve(VcfLibrary *lib, const char *source, const char *name,
                            VcfClone *open, gboolean full, VcfSource *out, GError **error);
void vcf_source_clear(VcfSource *source);
