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
/* Called once the new deltas are durable, just before the .vmx commit,
 * with the uid the snapshot will get; FALSE (with ERROR) stops the take. */
typedef gboolean (*VcfSnapshotHook)(const VcfSnapshotUndo *undo, const char *uid,
                                    gpointer data, GError **error);
gboolean vcf_snapshot_take(const VcfVm *vm, const char *confine, VcfLinkCache *cache,
                           const char *display_name, const char *description,
                           VcfSnapshotHook before_commit, gpointer hook_data,
                           char **uid_out, VcfSnapshotUndo **undo_out, GError **error);
/* What the take changed: the .vmx and .vmsd as they were before (the
 * .vmsd's NULL when there was none) and the new delta files. */
const char *vcf_snapshot_undo_vmx_path(const VcfSnapshotUndo *undo);
const char *vcf_snapshot_undo_vmsd_path(const VcfSnapshotUndo *undo);
GBytes *vcf_snapshot_undo_vmx(const VcfSnapshotUndo *undo);
GBytes *vcf_snapshot_undo_vmsd(const VcfSnapshotUndo *undo);
GPtrArray *vcf_snapshot_undo_deltas(const VcfSnapshotUndo *undo);
/* Takes the snapshot back, in the reverse order of taking it: the old
 * .vmsd, the old .vmx (the commit point), then the new deltas go. */
gboolean vcf_snapshot_undo(VcfSnapshotUndo *undo, GError **error);
void vcf_snapshot_undo_free(VcfSnapshotUndo *undo);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfSnapshotUndo, vcf_snapshot_undo_free)

/* "Ubuntu-000003.vmdk": the first free delta name for disk FILE_NAME in DIR. */
char *vcf_snapshot_delta_name(const char *dir, const char *file_name);
