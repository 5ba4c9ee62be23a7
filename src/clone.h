/* The clone engine: making, opening and deleting linked clones.
 *
 * A clone lives in LIBRARY/.vmclonefs/clones/NAME/: NAME.vmx, one sparse
 * delta per disk (NAME.vmdk, NAME_1.vmdk, ...) with its .xxh checksums, and
 * clone.ini (source, base snapshot, type, state). It appears in a new
 * folder only once complete: everything is made in a hidden temporary
 * folder that is renamed into place. */
#pragma once
#include <glib.h>
#include "disk.h"
#include "job.h"
#include "library.h"
#include "clone-store.h"

/* A clone opened for serving: one composed disk per stem. */
typedef struct VcfClone VcfClone;

/* Makes linked clone NAME of SOURCE: "VM" (its current state; takes a
 * snapshot of VM, which must be powered off), "VM@SNAPSHOT" (that
 * snapshot's display name) or "CLONE" (its current state: its disks are
 * frozen, see vcf_clone_freeze). Errors: EINVAL (bad name), EEXIST, ENOENT
 * (unknown VM, clone or snapshot), EBUSY (source running or suspended), EIO. */
gboolean vcf_clone_create(VcfLibrary *lib, const char *source, const char *name,
                          GError **error);
/* The same as a job, VixVM_Clone's shape: returns at once; CALLBACK (may
 * be NULL) runs when the clone exists or has failed; vcf_job_wait gives the
 * result. LIB must outlive the job. OPEN_SOURCE: when SOURCE is a clone
 * that is open, that clone (frozen through its open disks, which must not
 * be closed before the job ends); NULL otherwise. OPENED, if not NULL,
 * gets the new clone opened for serving (as vcf_clone_open with
 * N_CHAINS would, over the chains the job opened anyway), or NULL if it
 * does not open; read it once the job has ended. FULL: a full clone,
 * whose clone.ini says so (type full, state copying) from the start, for
 * a copier to take up (copier.h); it may be of a suspended VM. */
VcfJob *vcf_clone_create_job(VcfLibrary *lib, const char *source, const char *name,
                             VcfClone *open_source, gboolean full, guint n_chains,
                             VcfClone **opened,
                             VcfJobCallback callback, gpointer user_data);
VcfClone *vcf_clone_open(VcfLibrary *lib, const char *name, guint n_chains,
                         GError **error);
gboolean vcf_clone_close(VcfClone *clone, GError **error);
/* Frees a clone writing nothing: for one whose store is being deleted
 * (so that deleting works on a full disk). */
void vcf_clone_abandon(VcfClone *clone);
guint vcf_clone_n_disks(const VcfClone *clone);
VcfDisk *vcf_clone_get_disk(VcfClone *clone, guint i);
/* Files the clone's parents read (realpaths), for protecting them: a new
 * array of char*, the caller's. */
GPtrArray *vcf_clone_parent_files(VcfClone *clone);
/* Reads again which files the disks' parents read, after their layers
 * changed (a freeze, or a full copy's promotion). */
void vcf_clone_update_parent_files(VcfClone *clone);
/* Freezes every disk of the clone (vcf_disk_freeze) while it stays open:
 * *LAYERS gets, per disk, the file a clone of it sits on (char*). */
gboolean vcf_clone_freeze(VcfClone *clone, GPtrArray **layers, GError **error);
