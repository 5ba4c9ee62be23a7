/* Full clones: the background copy that makes a clone independent of its
 * source, and its promotion to a standalone disk.
 *
 * A full clone is served as a linked one from the moment it exists. Its
 * copier walks each disk unit by unit (disk-copy.c): a unit the layers
 * below hold and the store lacks is copied in, unless it reads as zeros;
 * a unit the guest has written is left alone (where the file system shares
 * blocks, runs of units are cloned instead of copied). After each step (at most a
 * second or 32 MiB) the disk is synced and only then the cursor goes to
 * clone.ini, so a crash or an unmount resumes from the last durable point
 * and loses nothing. When every disk is copied, each is checked complete
 * and rewritten standalone (vcf_disk_promote), and clone.ini says "full".
 *
 * Out of space: the copier pauses with the reason and goes on when kicked
 * (vcf_copier_kick) and space is free. Any other failure (a copy that does
 * not read back as its source, a grain left out) makes it "broken": the
 * clone goes on as a linked clone, and the reason is kept.
 *
 * Copiers share a pool of worker threads (VcfCopyPool): each step is one
 * task, so several copies take turns, and each holds one grain buffer.
 * Threads: every function may be called from any thread. */
#pragma once
#include <glib.h>
#include "clone.h"
#include "library.h"

typedef struct VcfCopyPool VcfCopyPool;
typedef struct VcfCopier VcfCopier;

/* THREADS workers; RATE caps each copy's bytes per second (0: no cap). */
VcfCopyPool *vcf_copy_pool_new(guint threads, guint64 rate);
/* Every copier of the pool must be stopped first. */
void vcf_copy_pool_free(VcfCopyPool *pool);

/* Called from a worker when a copier's state changes for good: the copy
 * is done and the clone standalone ("full"), or it broke or paused. */
typedef void (*VcfCopierNotify)(VcfCopier *copier, gpointer user_data);

/* Starts (or resumes, from clone.ini's cursor) the copy of clone NAME,
 * open as CLONE, which must stay open until vcf_copier_stop. clone.ini
 * gets type "full" and state "copying" first. */
VcfCopier *vcf_copier_start(VcfCopyPool *pool, VcfLibrary *lib, const char *name,
                            VcfClone *clone, VcfCopierNotify notify, gpointer user_data,
                            GError **error);
/* Stops the copy (a step in progress ends first; the cursor stays at its
 * last durable point) and frees the copier. NULL is fine. */
void vcf_copier_stop(VcfCopier *copier);
/* Goes on with a paused copy: for when space may have been freed. */
void vcf_copier_kick(VcfCopier *copier);

typedef struct {
    char *state;       /* "copying", "paused", "full" or "broken" */
    guint64 done;      /* bytes of data to copy that the cursor has passed */
    guint64 total;     /* bytes of data to copy: units some layer below held */
    guint64 rate;      /* bytes per second over the last few seconds */
    char *error;       /* why paused or broken, or NULL */
} VcfCopyStatus;

void vcf_copier_get_status(VcfCopier *copier, VcfCopyStatus *status);
void vcf_copy_status_clear(VcfCopyStatus *status);
