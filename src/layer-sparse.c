/* A hosted sparse extent (VMware's KDMV format, uncompressed: what
 * monolithicSparse and twoGbMaxExtentSparse disks are made of, and what our
 * stores are): the grain directory is read at open, each grain table on
 * its first use, and a read is one pread of exactly the bytes asked for
 * (grains that lie back to back in the file are read together).
 *
 * A frozen layer of ours (freeze.h) keeps its xxh3 sums beside it in
 * PATH.xxh; when they were made for this very file (the CID matches),
 * every grain read from it is read whole and checked, as the store's own
 * grains are: a damaged grain is EIO, never wrong bytes.
 *
 * Entries follow qemu's reading of the format, the oracle of our tests:
 * the directory at gdOffset, a table entry 0 is a grain this extent does
 * not hold, 1 is a zeroed grain when the header says zeroed grains are in
 * use, anything else the grain's first sector in the file. */
#include "config.h"
#include "layer.h"
#include "descriptor.h"
#include "fileutil.h"
#include "grain-sums.h"
#include "sparse.h"
#include "sparse-format.h"
#include "vcf-error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GD_AT_END G_GUINT64_CONSTANT(0xffffffffffffffff)

typedef struct {
    VcfLayer base;
    int fd;
    guint64 grain_bytes;
    guint32 gtes_per_gt;
    gboolean zero_grain;      /* an entry 1 reads as zeros */
    guint64 n_gts;
    guint32 *gd;              /* host order */
    /* Grain tables in host order, loaded on first use and published with a
     * compare-and-swap (no lock: a racing loader frees its copy). */
    guint32 **gts;
    /* Checksums, -1 if none: per grain table, its grains' sums (host
     * order), loaded on first use like the tables. */
    int sums_fd;
    guint64 **sums;
    guint64 file_size;        /* at open: grains past it are not mapped */
} SparseLayer;

static gboolean refuse(GError **error, const char *path, const char *why)
{
    g_set_error(error, VCF_ERROR, EINVAL, "%s: %s", path, why);
    return FALSE;
}

/* The table entry of GRAIN in *GTE. */
/* FRESH into the empty SLOT, or, when a racing loader got there first,
 * that one's copy (FRESH freed): the tables need no lock. */
static gpointer publish(gpointer *slot, gpointer fresh)
{
    if (g_atomic_pointer_compare_and_exchange(slot, NULL, fresh))
        return fresh;
    g_free(fresh);
    return g_atomic_pointer_get(slot);
}

static gboolean entry(SparseLayer *s, guint64 grain, guint32 *gte, GError **error)
{
    guint64 i = grain / s->gtes_per_gt;
    if (s->gd[i] == 0) {
        *gte = 0;
        return TRUE;
    }
    guint32 *gt = g_atomic_pointer_get(&s->gts[i]);
    if (gt == NULL) {
        gsize bytes = (gsize) s->gtes_per_gt * 4;
        guint32 *fresh = g_malloc(bytes);
        gssize n = vcf_pread_all(s->fd, fresh, bytes, (guint64) s->gd[i] * SECTOR,
                                 s->base.path, error);
        if (n != (gssize) bytes) {
            g_free(fresh);
            if (n >= 0)
                g_set_error(error, VCF_ERROR, EIO, "%s: grain table %" G_GUINT64_FORMAT
                            " at sector %u lies past the end of the file",
                            s->base.path, i, s->gd[i]);
            return FALSE;
        }
        for (guint32 j = 0; j < s->gtes_per_gt; j++)
            fresh[j] = GUINT32_FROM_LE(fresh[j]);
        gt = publish((gpointer *)&s->gts[i], fresh);
    }
    *gte = gt[grain % s->gtes_per_gt];
    return TRUE;
}

/* The recorded sum of GRAIN in *SUM. */
static gboolean sum_of(SparseLayer *s, guint64 grain, guint64 *sum, GError **error)
{
    guint64 i = grain / s->gtes_per_gt;
    guint64 *chunk = g_atomic_pointer_get(&s->sums[i]);
    if (chunk == NULL) {
        gsize bytes = (gsize) s->gtes_per_gt * 8;
        guint64 *fresh = g_malloc0(bytes);
        gssize n = vcf_pread_all(s->sums_fd, fresh, bytes, VCF_GRAIN_SUMS_AT(i * s->gtes_per_gt),
                                 s->base.path, error);
        if (n < 0) {
            g_free(fresh);
            return FALSE;
        }
        for (guint32 j = 0; j < s->gtes_per_gt; j++)
            fresh[j] = GUINT64_FROM_LE(fresh[j]);
        chunk = publish((gpointer *)&s->sums[i], fresh);
    }
    *sum = chunk[grain % s->gtes_per_gt];
    return TRUE;
}

/* Grain G, stored at sector GTE, read whole and checked; OUT gets LEN
 * bytes of it from byte IN. */
static gboolean read_checked(SparseLayer *s, guint64 g, guint32 gte, guint64 in, guint8 *out,
                             gsize len, GError **error)
{
    gboolean whole = in == 0 && len == s->grain_bytes;
    g_autofree guint8 *tmp = whole ? NULL : g_malloc(s->grain_bytes);
    guint8 *grain = whole ? out : tmp;
    guint64 at = (guint64) gte * SECTOR, want;
    gssize r = vcf_pread_all(s->fd, grain, s->grain_bytes, at, s->base.path, error);
    if (r < 0 || !sum_of(s, g, &want, error))
        return FALSE;
    /* A grain shared with the file it was cloned from and never read while
     * the layer was a store has no sum: it reads as it is. */
    if ((gsize) r < s->grain_bytes
        || (want != VCF_GRAIN_SUM_UNREAD && vcf_grain_sum(grain, s->grain_bytes) != want)) {
        g_set_error(error, VCF_ERROR, EIO, "%s: checksum mismatch in grain %" G_GUINT64_FORMAT
                    " (disk offset %" G_GUINT64_FORMAT "): this frozen layer is damaged",
                    s->base.path, g, g * s->grain_bytes);
        return FALSE;
    }
    if (!whole)
        memcpy(out, tmp + in, len);
    return TRUE;
}

static gboolean sparse_run(VcfLayer *layer, guint64 offset, guint64 max, gboolean *held,
                           guint64 *len, GError **error)
{
    SparseLayer *s = (SparseLayer *) layer;
    max = MIN(max, layer->size - offset);
    guint64 g = offset / s->grain_bytes;
    guint32 gte;
    if (!entry(s, g, &gte, error))
        return FALSE;
    *held = gte != 0;
    guint64 n = (g + 1) * s->grain_bytes - offset;
    while (n < max) {
        if (!entry(s, ++g, &gte, error))
            return FALSE;
        if ((gte != 0) != *held)
            break;
        n += s->grain_bytes;
    }
    *len = MIN(n, max);
    return TRUE;
}

static gboolean sparse_read(VcfLayer *layer, void *buf, gsize len, guint64 offset,
                            GError **error)
{
    SparseLayer *s = (SparseLayer *) layer;
    guint8 *out = buf;
    guint64 grain_sectors = s->grain_bytes / SECTOR;
    while (len > 0) {
        guint64 g = offset / s->grain_bytes;
        guint64 in = offset % s->grain_bytes;
        guint32 gte;
        if (!entry(s, g, &gte, error))
            return FALSE;
        gsize n = (gsize) MIN((guint64) len, s->grain_bytes - in);
        if (gte == 0) {
            g_set_error(error, VCF_ERROR, EIO, "%s: disk offset %" G_GUINT64_FORMAT
                        " read from a grain the extent does not hold", layer->path, offset);
            return FALSE;
        }
        if (gte == 1 && s->zero_grain) {
            memset(out, 0, n);
        } else if (s->sums_fd >= 0) {
            if (!read_checked(s, g, gte, in, out, n, error))
                return FALSE;
        } else {
            /* Following grains stored right after this one: one pread. */
            guint32 next = gte;
            while (n < len) {
                guint32 e;
                if (!entry(s, g + 1, &e, error))
                    return FALSE;
                if ((guint64) e != (guint64) next + grain_sectors || (e == 1 && s->zero_grain))
                    break;
                next = e, g++;
                n += (gsize) MIN((guint64) (len - n), s->grain_bytes);
            }
            guint64 at = (guint64) gte * SECTOR + in;
            gssize r = vcf_pread_all(s->fd, out, n, at, layer->path, error);
            if (r < 0)
                return FALSE;
            if ((gsize) r < n) {
                g_set_error(error, VCF_ERROR, EIO, "%s: grain at byte %" G_GUINT64_FORMAT
                            " (disk offset %" G_GUINT64_FORMAT ") lies past the end of the file",
                            layer->path, at + (guint64) r, offset + (guint64) r);
                return FALSE;
            }
        }
        out += n, offset += n, len -= n;
    }
    return TRUE;
}

static void sparse_free(VcfLayer *layer)
{
    SparseLayer *s = (SparseLayer *) layer;
    for (guint64 i = 0; s->gts != NULL && i < s->n_gts; i++)
        g_free(s->gts[i]);
    g_free(s->gts);
    for (guint64 i = 0; s->sums != NULL && i < s->n_gts; i++)
        g_free(s->sums[i]);
    g_free(s->sums);
    if (s->sums_fd >= 0)
        close(s->sums_fd);
    g_free(s->gd);
    g_free(layer->path);
    g_free(s);
}

static void sparse_map(VcfLayer *layer, guint64 offset, gsize len, int *fd, guint64 *at)
{
    SparseLayer *s = (SparseLayer *) layer;
    guint64 g = offset / s->grain_bytes, in = offset % s->grain_bytes;
    guint32 gte;
    *fd = -1;
    /* One grain's bytes, stored, whose sums (if any) the caller checked by
     * reading them. */
    if (in + len > s->grain_bytes || !entry(s, g, &gte, NULL) || gte == 0
        || (gte == 1 && s->zero_grain))
        return;
    if ((guint64) gte * SECTOR + in + len > s->file_size)
        return;   /* cut: EIO when read, never a short reply */
    *fd = s->fd;
    *at = (guint64) gte * SECTOR + in;
}

static const VcfLayerOps sparse_ops = { "sparse", sparse_run, sparse_read, sparse_free,
                                        sparse_map };

static int cmp_u32(const void *a, const void *b)
{
    guint32 x = *(const guint32 *) a, y = *(const guint32 *) b;
    return x < y ? -1 : x > y;
}

/* The layer's own sums, if it is one of our frozen layers and they were
 * made for it; none is no error (VMware's deltas have none). */
static void open_sums(SparseLayer *s, guint64 grains)
{
    if (s->grain_bytes != VCF_GRAIN_SIZE)
        return;
    g_autofree char *sums = g_strconcat(s->base.path, ".xxh", NULL);
    if (!g_file_test(sums, G_FILE_TEST_IS_REGULAR))
        return;
    g_autofree char *text = vcf_descriptor_load(s->base.path, NULL);
    guint32 cid, made_for;
    if (text == NULL || !vcf_sparse_parse_cid(text, "CID", &cid))
        return;
    int fd = vcf_grain_sums_open_read_only(sums, grains, &made_for, NULL);
    if (fd < 0)
        return;
    if (made_for != cid) {   /* written since by someone else: stale */
        close(fd);
        return;
    }
    s->sums_fd = fd;
    s->sums = g_new0(guint64 *, s->n_gts);
    s->base.checked = TRUE;
}

static gboolean load(SparseLayer *s, GError **error)
{
    const char *path = s->base.path;
    VcfSparseHeader le, h;
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        vcf_set_errno(error, errno, path);
        return FALSE;
    }
    s->file_size = (guint64) st.st_size;
    gssize n = vcf_pread_all(s->fd, &le, sizeof le, 0, path, error);
    if (n < 0)
        return FALSE;
    if (n != (gssize) sizeof le)
        return refuse(error, path, "shorter than a sparse header");
    vcf_sparse_header_to_le(&le, &h);
    if (h.magic != VMDK_MAGIC || h.version < 1 || h.version > 3)
        return refuse(error, path, "not a hosted sparse extent of version 1 to 3");
    if (h.flags & (FLAG_COMPRESSED | FLAG_MARKERS))
        return refuse(error, path, "compressed grains");
    if (h.grain_size == 0 || h.grain_size > 2048 || h.gtes_per_gt == 0
        || h.gtes_per_gt > 4096 || h.capacity > MAX_CAPACITY / SECTOR
        || h.capacity * SECTOR < s->base.size)
        return refuse(error, path, "unexpected grain size, table size or capacity");
    s->grain_bytes = h.grain_size * SECTOR;
    s->gtes_per_gt = h.gtes_per_gt;
    s->zero_grain = (h.flags & FLAG_ZERO_GRAIN) != 0;
    guint64 grains = (s->base.size + s->grain_bytes - 1) / s->grain_bytes;
    s->n_gts = MAX((grains + s->gtes_per_gt - 1) / s->gtes_per_gt, 1);
    if (h.gd_offset == 0 || h.gd_offset == GD_AT_END
        || h.gd_offset > (guint64) st.st_size / SECTOR
        || h.gd_offset * SECTOR + s->n_gts * 4 > (guint64) st.st_size)
        return refuse(error, path, "grain directory out of the file");
    s->gd = g_new(guint32, s->n_gts);
    n = vcf_pread_all(s->fd, s->gd, s->n_gts * 4, h.gd_offset * SECTOR, path, error);
    if (n != (gssize) (s->n_gts * 4))
        return n < 0 ? FALSE : refuse(error, path, "grain directory cut short");
    for (guint64 i = 0; i < s->n_gts; i++)
        s->gd[i] = GUINT32_FROM_LE(s->gd[i]);
    /* Tables lie inside the file and apart, as every writer lays them out:
     * so their copies in memory never outgrow the file (a directory naming
     * one table a million times would). Others are left to libvmdk. */
    g_autofree guint32 *sorted = g_memdup2(s->gd, s->n_gts * 4);
    qsort(sorted, s->n_gts, 4, cmp_u32);
    guint64 gt_sectors = ((guint64) s->gtes_per_gt * 4 + SECTOR - 1) / SECTOR;
    for (guint64 i = 0; i < s->n_gts; i++) {
        if (sorted[i] == 0)
            continue;
        if (((guint64) sorted[i] + gt_sectors) * SECTOR > (guint64) st.st_size)
            return refuse(error, path, "a grain table lies past the end of the file");
        if (i + 1 < s->n_gts && (guint64) sorted[i] + gt_sectors > sorted[i + 1])
            return refuse(error, path, "grain tables overlap");
    }
    s->gts = g_new0(guint32 *, s->n_gts);
    open_sums(s, grains);
    return TRUE;
}

VcfLayer *vcf_layer_sparse_open(int fd, const char *path, guint64 size, GError **error)
{
    SparseLayer *s = g_new0(SparseLayer, 1);
    s->base.ops = &sparse_ops;
    s->base.size = size;
    s->base.path = g_strdup(path);
    s->fd = fd;
    s->sums_fd = -1;
    if (!load(s, error)) {
        sparse_free(&s->base);
        return NULL;
    }
    return &s->base;
}
