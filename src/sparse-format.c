#include "config.h"
#include "sparse-format.h"
#include "fileutil.h"
#include "vcf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void vcf_sparse_header_to_le(const VcfSparseHeader *in, VcfSparseHeader *out)
{
    *out = *in;
    out->magic = GUINT32_TO_LE(in->magic);
    out->version = GUINT32_TO_LE(in->version);
    out->flags = GUINT32_TO_LE(in->flags);
    out->capacity = GUINT64_TO_LE(in->capacity);
    out->grain_size = GUINT64_TO_LE(in->grain_size);
    out->desc_offset = GUINT64_TO_LE(in->desc_offset);
    out->desc_size = GUINT64_TO_LE(in->desc_size);
    out->gtes_per_gt = GUINT32_TO_LE(in->gtes_per_gt);
    out->rgd_offset = GUINT64_TO_LE(in->rgd_offset);
    out->gd_offset = GUINT64_TO_LE(in->gd_offset);
    out->overhead = GUINT64_TO_LE(in->overhead);
    out->compress_algorithm = GUINT16_TO_LE(in->compress_algorithm);
}


char *vcf_sparse_descriptor_text(guint32 cid, guint32 parent_cid,
                             const char *parent_hint, guint64 sectors,
                             const char *extent_name, const VcfGeometry *geometry)
{
    GString *d = g_string_new("# Disk DescriptorFile\n");
    VcfGeometry g;
    if (geometry != NULL)
        g = *geometry;
    else
        vcf_geometry_default(&g, sectors * SECTOR, "lsilogic");
    g_autofree char *ddb = vcf_geometry_ddb_lines(&g);
    g_string_append_printf(d, "version=1\nencoding=\"UTF-8\"\nCID=%08x\n"
                           "parentCID=%08x\ncreateType=\"monolithicSparse\"\n",
                           cid, parent_cid);
    if (parent_hint != NULL)
        g_string_append_printf(d, "parentFileNameHint=\"%s\"\n", parent_hint);
    g_string_append_printf(d, "\n# Extent description\nRW %" G_GUINT64_FORMAT
                           " SPARSE \"%s\"\n\n# The Disk Data Base\n#DDB\n\n"
                           "ddb.virtualHWVersion = \"4\"\n%s",
                           sectors, extent_name, ddb);
    return g_string_free(d, FALSE);
}

gboolean vcf_sparse_parse_cid(const char *text, const char *key, guint32 *out)
{
    g_autofree char *v = vcf_descriptor_get(text, key);
    if (v == NULL || *v == '\0' || strlen(v) > 8)
        return FALSE;
    char *end;
    guint64 n = g_ascii_strtoull(v, &end, 16);
    if (*end != '\0')
        return FALSE;
    *out = (guint32)n;
    return TRUE;
}

static gboolean not_sparse(GError **error, const char *path, const char *why)
{
    g_set_error(error, VCF_ERROR, EINVAL, "%s: not a hosted sparse extent: %s", path, why);
    return FALSE;
}

gboolean vcf_sparse_extent_each_grain(const char *path, VcfGrainFunc func, gpointer data,
                                      guint64 *capacity, guint64 *grain_sectors,
                                      GError **error)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vcf_set_errno(error, errno, path);
        return FALSE;
    }
    gboolean ok = FALSE;
    VcfSparseHeader le, h;
    struct stat st;
    g_autofree guint32 *dir = NULL;
    g_autofree guint32 *gt = NULL;
    if (fstat(fd, &st) < 0 || vcf_pread_all(fd, &le, sizeof le, 0, path, error) != (gssize)sizeof le) {
        g_clear_error(error);
        not_sparse(error, path, "shorter than a header");
        goto out;
    }
    vcf_sparse_header_to_le(&le, &h);
    if (h.magic != VMDK_MAGIC || h.gtes_per_gt == 0 || h.gtes_per_gt > 4096
        || h.grain_size == 0 || h.grain_size > 2048 || h.capacity == 0
        || h.capacity > MAX_CAPACITY / SECTOR || (h.flags & (FLAG_COMPRESSED | FLAG_MARKERS))) {
        not_sparse(error, path, "unexpected header");
        goto out;
    }
    if (capacity != NULL)
        *capacity = h.capacity * SECTOR;
    if (grain_sectors != NULL)
        *grain_sectors = h.grain_size;
    if (func == NULL) {   /* the header was all the caller wanted */
        ok = TRUE;
        goto out;
    }
    /* The primary directory, as qemu-img and our layer reader read it
     * (VMware keeps the redundant one the same). */
    guint64 gd = h.gd_offset;
    guint64 grains = (h.capacity + h.grain_size - 1) / h.grain_size;
    guint64 n_gts = (grains + h.gtes_per_gt - 1) / h.gtes_per_gt;
    gsize gt_bytes = h.gtes_per_gt * 4u;
    if (gd == 0 || gd > (guint64)st.st_size / SECTOR) {
        not_sparse(error, path, "grain directory out of range");
        goto out;
    }
    dir = g_new(guint32, n_gts);
    gt = g_malloc(gt_bytes);
    if (vcf_pread_all(fd, dir, n_gts * 4, gd * SECTOR, path, error) != (gssize)(n_gts * 4)) {
        g_clear_error(error);
        not_sparse(error, path, "grain directory truncated");
        goto out;
    }
    gboolean more = TRUE;
    /* Tables in a hole of the file are empty: not read (a fresh 1 TiB
     * delta has 64 MiB of them). [hole_from, data_at) holds no data. */
    guint64 hole_from = 0, data_at = 0;
    for (guint64 i = 0; i < n_gts && more; i++) {
        guint64 sec = GUINT32_FROM_LE(dir[i]);
        if (sec == 0)
            continue;
        guint64 at = sec * SECTOR;
        if (at < hole_from || at + gt_bytes > data_at) {
            off_t d = lseek(fd, (off_t)at, SEEK_DATA);
            hole_from = at;
            data_at = d >= 0 ? (guint64)d : errno == ENXIO ? G_MAXUINT64 : at;
        }
        if (at + gt_bytes <= data_at)
            continue;
        gssize n = vcf_pread_all(fd, gt, gt_bytes, sec * SECTOR, path, error);
        if (n < 0)
            goto out;
        /* Past the end of the file reads as an empty table, as holes do.
         * A zeroed grain (entry 1) counts as held: it hides what is below. */
        for (gsize j = 0; j < (gsize)n / 4 && more; j++) {
            guint64 g = i * h.gtes_per_gt + j;
            if (gt[j] != 0 && g < grains)
                more = func(g, GUINT32_FROM_LE(gt[j]), data);
        }
    }
    ok = TRUE;
out:
    close(fd);
    return ok;
}

static gboolean stop_at_first(guint64 grain, guint32 gte, gpointer data)
{
    *(gboolean *)data = TRUE;
    return FALSE;
}

gboolean vcf_sparse_extent_has_data(const char *path, gboolean *has_data, GError **error)
{
    *has_data = FALSE;
    return vcf_sparse_extent_each_grain(path, stop_at_first, has_data, NULL, NULL, error);
}

static gboolean stop_at_zeroed(guint64 grain, guint32 gte, gpointer data)
{
    if (gte != 1)
        return TRUE;
    *(gboolean *)data = TRUE;
    return FALSE;
}

gboolean vcf_sparse_extent_has_zeroed_grains(const char *path, gboolean *any, GError **error)
{
    *any = FALSE;
    VcfSparseHeader le, h;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vcf_set_errno(error, errno, path);
        return FALSE;
    }
    gssize n = vcf_pread_all(fd, &le, sizeof le, 0, path, error);
    close(fd);
    if (n < 0)
        return FALSE;
    vcf_sparse_header_to_le(&le, &h);
    if (n == (gssize)sizeof le && h.magic == VMDK_MAGIC && !(h.flags & FLAG_ZERO_GRAIN))
        return TRUE;   /* entries 1 are sector numbers there, for every reader */
    return vcf_sparse_extent_each_grain(path, stop_at_zeroed, any, NULL, NULL, error);
}
