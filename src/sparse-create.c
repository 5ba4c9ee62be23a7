/* Making a new store or an empty delta: header, embedded descriptor,
 * grain directory, and holes for the tables (sparse.h). */
#include "config.h"
#include "sparse.h"
#include "sparse-private.h"
#include "descriptor.h"
#include "fileutil.h"
#include "grain-sums.h"
#include "sparse-format.h"
#include "table.h"
#include "vcf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* Writes a new, empty extent: header, descriptor, grain directory, and
 * holes for the tables. Durable on return; no checksum file. */
static VcfSparse *write_new(const char *path, const VcfSparseParams *p,
                            GError **error)
{
    guint64 capacity = (p->capacity + SECTOR - 1) / SECTOR * SECTOR;
    if (capacity == 0 || capacity > MAX_CAPACITY) {
        g_set_error(error, VCF_ERROR, EINVAL,
                    "%s: a sparse VMDK holds 1 byte to 2 TiB, not %" G_GUINT64_FORMAT " bytes",
                    path, p->capacity);
        return NULL;
    }
    /* The hint goes between quotes on a line of its own. */
    for (const char *c = p->parent_hint; c != NULL && *c; c++) {
        if (*c == '"' || (guchar)*c < 0x20 || *c == 0x7f) {
            g_set_error(error, VCF_ERROR, EINVAL, "%s: parent path %s holds a quote or a "
                        "control character, which a VMDK descriptor cannot name", path,
                        p->parent_hint);
            return NULL;
        }
    }
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        g_autofree char *what = g_strdup_printf("creating %s", path);
        vcf_set_errno(error, errno, what);
        return NULL;
    }
    g_autoptr(VcfSparse) s = vcf_sparse_alloc(path, fd, TRUE);
    g_autofree guint32 *dir = NULL;
    g_autofree char *desc_block = NULL;
    s->capacity = capacity;
    s->n_grains = (capacity + VCF_GRAIN_SIZE - 1) / VCF_GRAIN_SIZE;
    guint64 n_gts = (s->n_grains + GTES_PER_GT - 1) / GTES_PER_GT;
    guint64 gd_sectors = (n_gts * 4 + SECTOR - 1) / SECTOR;
    guint64 gd = DESC_SECTOR + DESC_SECTORS;
    guint64 gt = gd + gd_sectors;
    guint64 overhead = (gt + n_gts * GT_SECTORS + GRAIN_SECTORS - 1) / GRAIN_SECTORS * GRAIN_SECTORS;

    s->cid = vcf_sparse_random_cid();
    s->parent_cid = p->parent_cid;
    s->parent_hint = g_strdup(p->parent_hint);
    g_autofree char *base = p->extent_name ? g_strdup(p->extent_name) : g_path_get_basename(path);
    s->descriptor = vcf_sparse_descriptor_text(s->cid, p->parent_cid, p->parent_hint,
                                    capacity / SECTOR, base, p->geometry);
    vcf_geometry_from_descriptor(&s->geometry, s->descriptor, capacity, "lsilogic");
    s->header = (VcfSparseHeader){
        .magic = VMDK_MAGIC, .version = 1, .flags = FLAG_NL_DETECT,
        .capacity = capacity / SECTOR, .grain_size = GRAIN_SECTORS,
        .desc_offset = DESC_SECTOR, .desc_size = DESC_SECTORS,
        .gtes_per_gt = GTES_PER_GT, .rgd_offset = 0, .gd_offset = gd,
        .overhead = overhead, .unclean_shutdown = 0,
        .nl_single = '\n', .nl_non = ' ', .nl_double1 = '\r', .nl_double2 = '\n',
    };
    s->gt_start = gt * SECTOR;
    s->next_sector = overhead;
    s->fresh_from = overhead;
    if (strlen(s->descriptor) >= DESC_SECTORS * SECTOR) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: parent name too long for the descriptor", path);
        goto fail;
    }

    /* Grain directory: every table preallocated, back to back, as VMware
     * lays them out; the tables themselves are holes (zeros) until used. */
    dir = g_new0(guint32, gd_sectors * SECTOR / 4);
    for (guint64 i = 0; i < n_gts; i++)
        dir[i] = GUINT32_TO_LE((guint32)(gt + i * GT_SECTORS));
    desc_block = g_malloc0(DESC_SECTORS * SECTOR);
    memcpy(desc_block, s->descriptor, strlen(s->descriptor));
    if (!vcf_sparse_write_header(s, error)
        || !vcf_pwrite_all(s->fd, desc_block, DESC_SECTORS * SECTOR, DESC_SECTOR * SECTOR, path, error)
        || !vcf_pwrite_all(s->fd, dir, gd_sectors * SECTOR, gd * SECTOR, path, error))
        goto fail;
    if (ftruncate(fd, overhead * SECTOR) < 0) {
        vcf_set_errno(error, errno, path);
        goto fail;
    }
    s->gt = vcf_table_new(fd, s->gt_start, s->n_grains * 4, FALSE, path, error);
    if (s->gt == NULL || !vcf_sparse_sync_fd(s, error))
        goto fail;
    return g_steal_pointer(&s);
fail:
    unlink(path);
    return NULL;
}

VcfSparse *vcf_sparse_create(const char *path, const VcfSparseParams *p,
                             GError **error)
{
    g_autoptr(VcfSparse) s = write_new(path, p, error);
    if (s == NULL)
        return NULL;
    g_autofree char *sums_path = g_strconcat(path, ".xxh", NULL);
    s->sums = vcf_grain_sums_create(sums_path, s->n_grains, s->cid, error);
    if (s->sums == NULL) {
        unlink(path);
        return NULL;
    }
    return g_steal_pointer(&s);
}

gboolean vcf_sparse_create_extent(const char *path, const VcfSparseParams *p,
                                  GError **error)
{
    VcfSparse *s = write_new(path, p, error);
    vcf_sparse_free(s);
    return s != NULL;
}
