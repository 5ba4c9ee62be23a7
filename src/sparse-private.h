/* What sparse.c (the store's I/O) and sparse-create.c (making one) share:
 * the store itself and a few helpers. Not for other files. */
#pragma once
#include <glib.h>
#include "descriptor.h"
#include "grain-sums.h"
#include "sparse.h"
#include "sparse-format.h"
#include "table.h"

struct VcfSparse {
    char *path;
    int fd;
    gboolean writable;
    gboolean server_copy;       /* copy_file_range copies on the server (reflink.h) */
    VcfSparseHeader header;        /* host byte order */
    guint64 capacity;           /* bytes */
    guint64 n_grains;
    guint64 gt_start;           /* byte offset of the first grain table */
    VcfTable *gt;               /* every GT entry, grain order */
    VcfGrainSums *sums;
    guint64 next_sector;        /* where the next new grain goes */
    guint64 fresh_from;         /* sectors from here on were never handed out: they
                                 * lie past the end the file had at open, zeros */
    char *descriptor;           /* the embedded descriptor text (meta once open) */
    VcfGeometry geometry;       /* from the descriptor; never changes */
    guint32 cid;                /* atomic: renewed by the first write of a session */
    guint32 parent_cid;
    char *parent_hint;
    /* Writers of different grains run at once; this guards what they
     * share: next_sector, the tables' entries and dirty pages, the session
     * state. GT entries are also read without it, atomically. */
    GMutex meta;
    gboolean session_started;   /* CID renewed and unclean flag set */
    gboolean data_unsynced;
    guint64 recovered;
};

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfSparse, vcf_sparse_free)

/* A store for FD (taken) at PATH, nothing loaded yet. */
VcfSparse *vcf_sparse_alloc(const char *path, int fd, gboolean writable);
/* A CID for new contents: neither 0 nor ffffffff. */
guint32 vcf_sparse_random_cid(void);
/* The header (host order in S) to sector 0, and fdatasync: errors name
 * the file, ENOSPC for a full disk, EIO otherwise. */
gboolean vcf_sparse_write_header(VcfSparse *s, GError **error);
gboolean vcf_sparse_sync_fd(VcfSparse *s, GError **error);
/* LEN bytes of BUF at OFF: errors as vcf_pwrite_all. */
gboolean vcf_sparse_pwrite(VcfSparse *s, const void *buf, gsize len, guint64 off,
                           GError **error);
/* A new CID in the embedded descriptor, written (not synced). */
gboolean vcf_sparse_write_new_cid(VcfSparse *s, guint32 cid, GError **error);
/* GRAIN's table entry (a sector, 0 or 1), read and set atomically; setting
 * marks the table page dirty. meta held to set. */
guint32 vcf_sparse_gte(const VcfSparse *s, guint64 grain);
void vcf_sparse_set_gte(VcfSparse *s, guint64 grain, guint32 sector);
