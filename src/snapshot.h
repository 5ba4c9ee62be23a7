/* Taking a VMware snapshot of a powered-off VM from outside VMware, the way
 * Workstation does it for a linked clone of the current state: every disk's
 * current file becomes the snapshot's (read-only from then on), the VM goes
 * on in a new empty delta per disk, and the .vmsd lists the snapshot. */
#pragma once
#include <glib.h>
#include "library.h"

typedef struct VcfSnapshotUndo VcfSnapshotUndo;

/* Snapshots VM (which must be powered off) as DISPLAY_NAME. The VM's disks
 * before the call (vm->disks) are the snapshot's disks afterwards. Order:
 * the new deltas, durable; then the .vmx pointing at them (the commit
 * point); then the .vmsd. A crash before the .vmx leaves unused deltas; a
 * crash after it leaves a correct disk chain whose snapshot the .vmsd may
 * not list yet. Writes *UID_OUT, the snapshot's uid. If UNDO_OUT is given, *UNDO_OUT can put the VM back as it was
 * (vcf_snapshot_undo) as long as nothing has run in the new deltas. */
gboolean vcf_snapshot_take(const VcfVm *vm, const char *confine,
                           const char *display_name, const char *description,
                           char **uid_out, VcfSnapshotUndo **undo_out, GError **error);
/* Takes the snapshot back, in the reverse order of taking it: the old
 * .vmsd, the old .vmx (the commit point), then the new deltas go. */
gboolean vcf_snapshot_undo(VcfSnapshotUndo *undo, GError **error);
void vcf_snapshot_undo_free(VcfSnapshotUndo *undo);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfSnapshotUndo, vcf_snapshot_undo_free)

/* "Ubuntu-000003.vmdk": the first free delta name for disk FILE_NAME in DIR. */
char *vcf_snapshot_delta_name(const char *dir, const char *file_name);
