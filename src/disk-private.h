/* What disk.c (the composed disk) and disk-copy.c (filling it for a full
 * clone) share: the disk itself. Not for other files. */
#pragma once
#include <glib.h>
#include "disk.h"
#include "stack.h"

#define N_STRIPES 64

struct VcfDisk {
    /* The store, its parent chain and their layers: a freeze replaces them
     * under the writer lock. store is NULL when a failed freeze could not
     * open the disk again (broken says why): every access is then EIO. */
    VcfSparse *store;
    VcfParent *parent;
    VcfStack *below;        /* the parent chain's layers; NULL with no parent */
    char *broken;
    guint64 frozen_bytes;   /* space of the frozen layers in the store's folder */
    /* Set at open, never changed. */
    guint64 size;
    char *path;             /* the store's file */
    char *confine;          /* where every file of the chain must be; NULL: any */
    VcfLinkCache *cache;    /* a reference, or NULL: links checked before */
    guint n_chains;
    /* Reads and writes share it; sync and freeze take it alone. */
    GRWLock lock;
    /* Protects the store pointer for vcf_disk_describe, which must not wait
     * for a sync (the mount calls it under its own lock), and the copies
     * it keeps for while a freeze has the store closed. */
    GMutex swap_lock;
    guint32 cid_seen;
    VcfGeometry geometry_seen;
    /* Reads and writes of one grain take its stripe: a copy-on-write is
     * read-modify-write of the whole grain, and a reader must not see a
     * grain half rewritten in place (its checksum would not match). */
    GMutex stripes[N_STRIPES];
    /* Atomic: reads and writes so far, for a copier that gives way. */
    gint guest_ops;
    /* Atomic: TRUE once the store's file system said it shares no blocks
     * at all (vcf_sparse_share_grains): a copy copies. */
    gint no_sharing;
    /* Atomic: when the guest last wrote (µs since the epoch; at open, the
     * store's mtime): the disk's time, which a copy does not move. */
    gint64 written_at;
};

static inline GMutex *vcf_disk_stripe(VcfDisk *d, guint64 grain)
{
    return &d->stripes[grain % N_STRIPES];
}

/* The whole current contents of GRAIN into BUF (VCF_GRAIN_SIZE bytes);
 * bytes past the end of the disk are zero. Lock held, and the stripe. */
gboolean vcf_disk_read_grain_locked(VcfDisk *d, guint64 grain, guint8 *buf, GError **error);
/* EIO when a failed freeze left the disk closed. Lock held. */
gboolean vcf_disk_check_open(VcfDisk *d, GError **error);
