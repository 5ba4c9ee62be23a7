#include "config.h"
#include "grain-sums.h"
#include "fileutil.h"
#include "table.h"
#include "vcf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define SUMS_MAGIC "VCFXXH3\n"
#define SUMS_VERSION 1u
#define SUMS_HEADER 4096u

/* On-disk header, little-endian. */
typedef struct {
    char magic[8];
    guint32 version;
    guint32 grain_size;
    guint64 n_grains;
    guint32 cid;
    guint32 reserved;
} SumsHeader;

struct VcfGrainSums {
    char *path;
    int fd;
    guint64 n_grains;
    guint32 cid;
    gboolean cid_dirty;
    VcfTable *table;
};

guint64 vcf_grain_sum(const void *data, gsize len)
{
    return XXH3_64bits(data, len);
}

static gboolean write_header(VcfGrainSums *s, GError **error)
{
    guint8 block[SUMS_HEADER] = { 0 };
    SumsHeader h = { .version = GUINT32_TO_LE(SUMS_VERSION),
                     .grain_size = GUINT32_TO_LE(65536),
                     .n_grains = GUINT64_TO_LE(s->n_grains),
                     .cid = GUINT32_TO_LE(s->cid) };
    memcpy(h.magic, SUMS_MAGIC, 8);
    memcpy(block, &h, sizeof h);
    if (!vcf_pwrite_all(s->fd, block, sizeof block, 0, s->path, error))
        return FALSE;
    s->cid_dirty = FALSE;
    return TRUE;
}

static VcfGrainSums *sums_new(const char *path, int fd, guint64 n_grains)
{
    VcfGrainSums *s = g_new0(VcfGrainSums, 1);
    s->path = g_strdup(path);
    s->fd = fd;
    s->n_grains = n_grains;
    return s;
}

VcfGrainSums *vcf_grain_sums_create(const char *path, guint64 n_grains,
                                    guint32 cid, GError **error)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        g_autofree char *what = g_strdup_printf("creating %s", path);
        vcf_set_errno(error, errno, what);
        return NULL;
    }
    g_autoptr(VcfGrainSums) s = sums_new(path, fd, n_grains);
    s->cid = cid;
    s->table = vcf_table_new(fd, SUMS_HEADER, n_grains * 8, FALSE, path, error);
    if (s->table == NULL || !write_header(s, error))
        goto fail;
    if (ftruncate(fd, SUMS_HEADER + n_grains * 8) < 0 || fdatasync(fd) < 0) {
        g_autofree char *what = g_strdup_printf("sizing %s", path);
        vcf_set_errno(error, errno, what);
        goto fail;
    }
    return g_steal_pointer(&s);
fail:
    /* Not left behind: a retry creates it with O_EXCL. */
    unlink(path);
    return NULL;
}

static gboolean read_header(int fd, const char *path, guint64 n_grains, guint32 *cid,
                            GError **error)
{
    SumsHeader h;
    if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h
        || memcmp(h.magic, SUMS_MAGIC, 8) != 0
        || GUINT32_FROM_LE(h.version) != SUMS_VERSION
        || GUINT32_FROM_LE(h.grain_size) != 65536
        || GUINT64_FROM_LE(h.n_grains) != n_grains) {
        g_set_error(error, VCF_ERROR, EINVAL,
                    "%s: not a checksum file for this disk (bad header)", path);
        return FALSE;
    }
    *cid = GUINT32_FROM_LE(h.cid);
    return TRUE;
}

int vcf_grain_sums_open_read_only(const char *path, guint64 n_grains, guint32 *cid,
                                  GError **error)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vcf_set_errno(error, errno, path);
        return -1;
    }
    if (!read_header(fd, path, n_grains, cid, error)) {
        close(fd);
        return -1;
    }
    return fd;
}

VcfGrainSums *vcf_grain_sums_open(const char *path, guint64 n_grains,
                                  GError **error)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        g_autofree char *what = g_strdup_printf("opening %s", path);
        vcf_set_errno(error, errno, what);
        return NULL;
    }
    g_autoptr(VcfGrainSums) s = sums_new(path, fd, n_grains);
    if (!read_header(fd, path, n_grains, &s->cid, error))
        return NULL;
    s->table = vcf_table_new(fd, SUMS_HEADER, n_grains * 8, TRUE, path, error);
    if (s->table == NULL)
        return NULL;
    return g_steal_pointer(&s);
}

void vcf_grain_sums_free(VcfGrainSums *s)
{
    if (s == NULL)
        return;
    vcf_table_free(s->table);
    if (s->fd >= 0)
        close(s->fd);
    g_free(s->path);
    g_free(s);
}

guint32 vcf_grain_sums_get_cid(const VcfGrainSums *s) { return s->cid; }

void vcf_grain_sums_set_cid(VcfGrainSums *s, guint32 cid)
{
    if (s->cid != cid) {
        s->cid = cid;
        s->cid_dirty = TRUE;
    }
}

guint64 vcf_grain_sums_get(const VcfGrainSums *s, guint64 grain)
{
    guint64 v;
    memcpy(&v, vcf_table_data(s->table) + grain * 8, 8);
    return GUINT64_FROM_LE(v);
}

void vcf_grain_sums_set(VcfGrainSums *s, guint64 grain, guint64 sum)
{
    guint64 v = GUINT64_TO_LE(sum);
    memcpy(vcf_table_data(s->table) + grain * 8, &v, 8);
    vcf_table_mark_dirty(s->table, grain * 8, 8);
}

gboolean vcf_grain_sums_sync(VcfGrainSums *s, GError **error)
{
    if (!vcf_table_is_dirty(s->table) && !s->cid_dirty)
        return TRUE;
    if (!vcf_table_write_dirty(s->table, error))
        return FALSE;
    if (s->cid_dirty && !write_header(s, error))
        return FALSE;
    if (fdatasync(s->fd) < 0) {
        g_autofree char *what = g_strdup_printf("syncing %s", s->path);
        vcf_set_errno(error, errno, what);
        return FALSE;
    }
    return TRUE;
}
