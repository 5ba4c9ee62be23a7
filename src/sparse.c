#include "config.h"
#include "sparse.h"
#include "sparse-private.h"
#include "descriptor.h"
#include "sparse-format.h"
#include "fileutil.h"
#include "grain-sums.h"
#include "reflink.h"
#include "table.h"
#include "vcf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- small I/O helpers ---------------------------------------------- */

static int io_errno(int e) { return e == ENOSPC || e == EDQUOT ? ENOSPC : EIO; }

gboolean vcf_sparse_pwrite(VcfSparse *s, const void *buf, gsize len, guint64 off,
                           GError **error)
{
    return vcf_pwrite_all(s->fd, buf, len, off, s->path, error);
}

static gssize pread_full(VcfSparse *s, void *buf, gsize len, guint64 off,
                         GError **error)
{
    return vcf_pread_all(s->fd, buf, len, off, s->path, error);
}

gboolean vcf_sparse_sync_fd(VcfSparse *s, GError **error)
{
    if (fdatasync(s->fd) < 0) {
        int e = errno;
        g_set_error(error, VCF_ERROR, io_errno(e), "%s: fdatasync: %s",
                    s->path, g_strerror(e));
        return FALSE;
    }
    return TRUE;
}

gboolean vcf_sparse_write_header(VcfSparse *s, GError **error)
{
    VcfSparseHeader le;
    vcf_sparse_header_to_le(&s->header, &le);
    return vcf_sparse_pwrite(s, &le, sizeof le, 0, error);
}

/* ---- the embedded descriptor ------------------------------------------ */

/* Writes TEXT as the embedded descriptor, in place: it fits the sectors
 * the header gives it, so no block is allocated and nothing else moves. */
static gboolean write_descriptor(VcfSparse *s, char *text, GError **error)
{
    gsize room = s->header.desc_size * SECTOR;
    if (strlen(text) >= room) {
        g_set_error(error, VCF_ERROR, EIO, "%s: descriptor does not fit", s->path);
        g_free(text);
        return FALSE;
    }
    g_autofree char *block = g_malloc0(room);
    memcpy(block, text, strlen(text));
    if (!vcf_sparse_pwrite(s, block, room, s->header.desc_offset * SECTOR, error)) {
        g_free(text);
        return FALSE;
    }
    g_free(s->descriptor);
    s->descriptor = text;
    return TRUE;
}

/* Rewrites the CID= line in place: VMware and qemu give a disk a new CID
 * when its contents first change, so children made from the old contents
 * can tell. */
gboolean vcf_sparse_write_new_cid(VcfSparse *s, guint32 cid, GError **error)
{
    g_auto(GStrv) lines = g_strsplit(s->descriptor, "\n", -1);
    for (char **l = lines; *l != NULL; l++) {
        if (g_ascii_strncasecmp(*l, "CID=", 4) == 0) {
            g_free(*l);
            *l = g_strdup_printf("CID=%08x", cid);
            break;
        }
    }
    if (!write_descriptor(s, g_strjoinv("\n", lines), error))
        return FALSE;
    g_atomic_int_set((gint *)&s->cid, (gint)cid);
    return TRUE;
}

char *vcf_sparse_get_extent_name(const VcfSparse *s)
{
    g_auto(GStrv) lines = g_strsplit(s->descriptor, "\n", -1);
    for (char **l = lines; *l != NULL; l++) {
        const char *q = strchr(*l, '"');
        const char *end = q ? strrchr(*l, '"') : NULL;
        if (q != NULL && end > q && g_str_has_prefix(*l, "RW ") && strstr(*l, " SPARSE ") != NULL)
            return g_strndup(q + 1, end - q - 1);
    }
    return NULL;
}

gboolean vcf_sparse_set_extent_name(VcfSparse *s, const char *name, GError **error)
{
    g_return_val_if_fail(s->writable, FALSE);
    if (strchr(name, '"') != NULL || strchr(name, '\n') != NULL) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: extent name %s cannot be quoted", s->path, name);
        return FALSE;
    }
    g_auto(GStrv) lines = g_strsplit(s->descriptor, "\n", -1);
    gboolean found = FALSE;
    for (char **l = lines; *l != NULL && !found; l++) {
        /* RW 2097152 SPARSE "NAME.vmdk" */
        const char *q = strchr(*l, '"');
        if (q == NULL || !g_str_has_prefix(*l, "RW ") || strstr(*l, " SPARSE ") == NULL)
            continue;
        char *line = g_strdup_printf("%.*s\"%s\"", (int)(q - *l), *l, name);
        g_free(*l);
        *l = line;
        found = TRUE;
    }
    if (!found) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: descriptor has no sparse extent line", s->path);
        return FALSE;
    }
    return write_descriptor(s, g_strjoinv("\n", lines), error) && vcf_sparse_sync_fd(s, error);
}

/* ---- open / close --------------------------------------------- */

VcfSparse *vcf_sparse_alloc(const char *path, int fd, gboolean writable)
{
    VcfSparse *s = g_new0(VcfSparse, 1);
    s->path = g_strdup(path);
    s->fd = fd;
    s->writable = writable;
    s->server_copy = writable && fd >= 0 && vcf_copies_server_side(fd);
    g_mutex_init(&s->meta);
    return s;
}

void vcf_sparse_free(VcfSparse *s)
{
    if (s == NULL)
        return;
    vcf_table_free(s->gt);
    vcf_grain_sums_free(s->sums);
    if (s->fd >= 0)
        close(s->fd);
    g_free(s->descriptor);
    g_free(s->parent_hint);
    g_free(s->path);
    g_mutex_clear(&s->meta);
    g_free(s);
}

guint32 vcf_sparse_random_cid(void)
{
    guint32 c;
    do
        c = g_random_int();
    while (c == VCF_CID_NONE || c == 0);
    return c;
}

static gboolean bad(GError **error, const char *path, const char *why)
{
    g_set_error(error, VCF_ERROR, EINVAL, "%s: not a usable sparse VMDK delta: %s", path, why);
    return FALSE;
}

static gboolean load_header(VcfSparse *s, guint64 file_size, GError **error)
{
    VcfSparseHeader le;
    if (file_size < SECTOR || pread_full(s, &le, sizeof le, 0, error) != (gssize)sizeof le)
        return bad(error, s->path, "file shorter than a header");
    vcf_sparse_header_to_le(&le, &s->header);
    VcfSparseHeader *h = &s->header;
    guint64 file_sectors = file_size / SECTOR;
    if (h->magic != VMDK_MAGIC)
        return bad(error, s->path, "no KDMV signature");
    if (h->version < 1 || h->version > 3)
        return bad(error, s->path, "unknown version");
    if (h->flags & (FLAG_COMPRESSED | FLAG_MARKERS))
        return bad(error, s->path, "compressed (stream-optimized) extents are read-only images");
    if (h->grain_size != GRAIN_SECTORS)
        return bad(error, s->path, "grain size is not 64 KiB");
    if (h->gtes_per_gt != GTES_PER_GT)
        return bad(error, s->path, "grain tables do not hold 512 entries");
    if (h->capacity == 0 || h->capacity > MAX_CAPACITY / SECTOR)
        return bad(error, s->path, "capacity out of range");
    if (h->desc_size == 0 || h->desc_size > MAX_DESC_SECTORS
        || h->desc_offset == 0 || h->desc_offset > file_sectors
        || h->desc_size > file_sectors - h->desc_offset)   /* no wrap-around */
        return bad(error, s->path, "no embedded descriptor");
    if (h->overhead > file_sectors || h->gd_offset == 0 || h->gd_offset >= h->overhead)
        return bad(error, s->path, "grain directory out of range");
    s->capacity = h->capacity * SECTOR;
    s->n_grains = (s->capacity + VCF_GRAIN_SIZE - 1) / VCF_GRAIN_SIZE;
    return TRUE;
}

static gboolean load_descriptor(VcfSparse *s, GError **error)
{
    gsize len = s->header.desc_size * SECTOR;
    g_autofree char *text = g_malloc0(len + 1);
    if (pread_full(s, text, len, s->header.desc_offset * SECTOR, error) != (gssize)len)
        return bad(error, s->path, "descriptor truncated");
    if (!g_utf8_validate(text, -1, NULL))
        return bad(error, s->path, "descriptor is not UTF-8 text");
    if (!vcf_sparse_parse_cid(text, "CID", &s->cid))
        return bad(error, s->path, "descriptor has no valid CID");
    if (!vcf_sparse_parse_cid(text, "parentCID", &s->parent_cid))
        s->parent_cid = VCF_CID_NONE;
    s->parent_hint = vcf_descriptor_get(text, "parentFileNameHint");
    g_autofree char *type = vcf_descriptor_get(text, "createType");
    if (type == NULL || g_ascii_strcasecmp(type, "monolithicSparse") != 0)
        return bad(error, s->path, "createType is not monolithicSparse");
    s->descriptor = g_steal_pointer(&text);
    vcf_geometry_from_descriptor(&s->geometry, s->descriptor, s->capacity, "lsilogic");
    return TRUE;
}

/* Checks the grain directory points at our back-to-back tables, and every
 * table entry at a whole grain inside the file. */
static gboolean load_tables(VcfSparse *s, guint64 file_size, GError **error)
{
    VcfSparseHeader *h = &s->header;
    guint64 n_gts = (s->n_grains + GTES_PER_GT - 1) / GTES_PER_GT;
    g_autofree guint32 *dir = g_new(guint32, n_gts);
    if (pread_full(s, dir, n_gts * 4, h->gd_offset * SECTOR, error) != (gssize)(n_gts * 4))
        return bad(error, s->path, "grain directory truncated");
    guint64 gt = GUINT32_FROM_LE(dir[0]);
    for (guint64 i = 0; i < n_gts; i++)
        if (GUINT32_FROM_LE(dir[i]) != gt + i * GT_SECTORS)
            return bad(error, s->path, "grain tables are not laid out back to back");
    if (gt <= h->gd_offset || gt + n_gts * GT_SECTORS > h->overhead)
        return bad(error, s->path, "grain tables overlap the header or the grains");
    s->gt_start = gt * SECTOR;
    s->gt = vcf_table_new(s->fd, s->gt_start, s->n_grains * 4, TRUE, s->path, error);
    if (s->gt == NULL)
        return FALSE;
    const guint32 *e = (const guint32 *)vcf_table_data(s->gt);
    guint64 end = h->overhead;
    guint64 file_sectors = file_size / SECTOR;
    /* Only what was read can be non-zero: a 1 TiB store's 64 MiB of
     * tables are mostly holes, never touched. */
    guint n_loaded;
    const gsize *loaded = vcf_table_loaded(s->gt, &n_loaded);
    for (guint r = 0; r < n_loaded; r++) {
        guint64 last = MIN(s->n_grains, (loaded[2 * r + 1] + 3) / 4);
        for (guint64 g = loaded[2 * r] / 4; g < last; g++) {
            guint64 sec = GUINT32_FROM_LE(e[g]);
            if (sec == 0 || (sec == 1 && (h->flags & FLAG_ZERO_GRAIN)))
                continue;
            if (sec < h->overhead || sec + GRAIN_SECTORS > file_sectors) {
                g_set_error(error, VCF_ERROR, EINVAL,
                            "%s: grain %" G_GUINT64_FORMAT " points at sector %" G_GUINT64_FORMAT
                            ", outside the file's grain area", s->path, g, sec);
                return FALSE;
            }
            end = MAX(end, sec + GRAIN_SECTORS);
        }
    }
    /* Append after everything referenced and after whatever a crash left
     * at the end of the file (unreferenced but harmless). */
    guint64 used = (file_size + SECTOR - 1) / SECTOR;   /* a partial last sector too */
    s->next_sector = MAX(end, (used + GRAIN_SECTORS - 1) / GRAIN_SECTORS * GRAIN_SECTORS);
    s->fresh_from = s->next_sector;
    return TRUE;
}

/* After an unclean shutdown a grain rewritten in place may hold data newer
 * than its checksum: the data is what the guest last wrote, so the sums are
 * re-derived from it. */
static gboolean recover_sums(VcfSparse *s, GError **error)
{
    g_autofree guint8 *buf = g_malloc(VCF_GRAIN_SIZE);
    const guint32 *e = (const guint32 *)vcf_table_data(s->gt);
    for (guint64 g = 0; g < s->n_grains; g++) {
        if (vcf_sparse_grain_state(s, g) != VCF_GRAIN_DATA)
            continue;
        guint64 off = (guint64)GUINT32_FROM_LE(e[g]) * SECTOR;
        gssize n = pread_full(s, buf, VCF_GRAIN_SIZE, off, error);
        if (n < 0)
            return FALSE;
        if (n != VCF_GRAIN_SIZE)
            return bad(error, s->path, "a grain lies past the end of the file");
        vcf_grain_sums_set(s->sums, g, vcf_grain_sum(buf, VCF_GRAIN_SIZE));
        s->recovered++;
    }
    vcf_grain_sums_set_cid(s->sums, s->cid);
    return TRUE;
}

VcfSparse *vcf_sparse_open(const char *path, gboolean writable, GError **error)
{
    int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
        g_autofree char *what = g_strdup_printf("opening %s", path);
        vcf_set_errno(error, errno, what);
        return NULL;
    }
    g_autoptr(VcfSparse) s = vcf_sparse_alloc(path, fd, writable);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        vcf_set_errno(error, errno, path);
        return NULL;
    }
    if (!load_header(s, st.st_size, error) || !load_descriptor(s, error)
        || !load_tables(s, st.st_size, error))
        return NULL;
    g_autofree char *sums_path = g_strconcat(path, ".xxh", NULL);
    s->sums = vcf_grain_sums_open(sums_path, s->n_grains, error);
    if (s->sums == NULL)
        return NULL;
    /* A CID the sums do not know means someone (VMware, qemu, a crashed
     * session of ours) wrote the store without making the sums durable. */
    if (s->header.unclean_shutdown || vcf_grain_sums_get_cid(s->sums) != s->cid) {
        if (!recover_sums(s, error))
            return NULL;
        if (writable && !vcf_grain_sums_sync(s->sums, error))
            return NULL;
        if (writable && s->header.unclean_shutdown) {
            s->header.unclean_shutdown = 0;
            if (!vcf_sparse_write_header(s, error) || !vcf_sparse_sync_fd(s, error))
                return NULL;
        }
    }
    return g_steal_pointer(&s);
}

gboolean vcf_sparse_close(VcfSparse *s, GError **error)
{
    gboolean ok = TRUE;
    if (s->writable) {
        ok = vcf_sparse_sync(s, error);
        if (ok && s->session_started) {
            s->header.unclean_shutdown = 0;
            ok = vcf_sparse_write_header(s, error) && vcf_sparse_sync_fd(s, error);
        }
    }
    vcf_sparse_free(s);
    return ok;
}

/* ---- grains -------------------------------------------------------------- */

const char *vcf_sparse_get_path(const VcfSparse *s) { return s->path; }
guint64 vcf_sparse_get_capacity(const VcfSparse *s) { return s->capacity; }
guint32 vcf_sparse_get_cid(const VcfSparse *s)
{
    return (guint32)g_atomic_int_get((gint *)&s->cid);
}
guint32 vcf_sparse_get_parent_cid(const VcfSparse *s) { return s->parent_cid; }
const char *vcf_sparse_get_parent_hint(const VcfSparse *s) { return s->parent_hint; }
guint64 vcf_sparse_get_recovered_grains(const VcfSparse *s) { return s->recovered; }

guint32 vcf_sparse_gte(const VcfSparse *s, guint64 grain)
{
    /* The table is page-aligned, so every entry is an aligned 32-bit word. */
    gint *entry = (gint *)(void *)(vcf_table_data(s->gt) + grain * 4);
    return GUINT32_FROM_LE((guint32)g_atomic_int_get(entry));
}

void vcf_sparse_set_gte(VcfSparse *s, guint64 grain, guint32 sector)
{
    gint *entry = (gint *)(void *)(vcf_table_data(s->gt) + grain * 4);
    g_atomic_int_set(entry, (gint)GUINT32_TO_LE(sector));
    vcf_table_mark_dirty(s->gt, grain * 4, 4);
}

VcfGrainState vcf_sparse_grain_state(const VcfSparse *s, guint64 grain)
{
    g_return_val_if_fail(grain < s->n_grains, VCF_GRAIN_ABSENT);
    guint32 sec = vcf_sparse_gte(s, grain);
    if (sec == 0)
        return VCF_GRAIN_ABSENT;
    if (sec == 1 && (s->header.flags & FLAG_ZERO_GRAIN))
        return VCF_GRAIN_ZERO;
    return VCF_GRAIN_DATA;
}

guint64 vcf_sparse_count_grains(const VcfSparse *s)
{
    guint64 n = 0;
    for (guint64 g = 0; g < s->n_grains; g++)
        n += vcf_sparse_grain_state(s, g) == VCF_GRAIN_DATA;
    return n;
}

gboolean vcf_sparse_is_empty(const VcfSparse *s)
{
    for (guint64 g = 0; g < s->n_grains; g++)
        if (vcf_sparse_gte(s, g) != 0)
            return FALSE;
    return TRUE;
}

gboolean vcf_sparse_read_grain(VcfSparse *s, guint64 grain, void *buf,
                               GError **error)
{
    guint64 off = (guint64)vcf_sparse_gte(s, grain) * SECTOR;
    gssize n = pread_full(s, buf, VCF_GRAIN_SIZE, off, error);
    if (n < 0)
        return FALSE;
    if (n != VCF_GRAIN_SIZE) {
        g_set_error(error, VCF_ERROR, EIO,
                    "%s: grain %" G_GUINT64_FORMAT " (disk offset %" G_GUINT64_FORMAT
                    ") at byte %" G_GUINT64_FORMAT " lies past the end of the file (truncated store)",
                    s->path, grain, grain * VCF_GRAIN_SIZE, off);
        return FALSE;
    }
    guint64 sum = vcf_grain_sum(buf, VCF_GRAIN_SIZE), want = vcf_grain_sums_get(s->sums, grain);
    if (want == VCF_GRAIN_SUM_UNREAD) {
        /* Shared with its source and never read: what it holds now is its
         * sum from here on (made durable at the next sync). */
        g_mutex_lock(&s->meta);
        if (s->writable && vcf_grain_sums_get(s->sums, grain) == VCF_GRAIN_SUM_UNREAD) {
            vcf_grain_sums_set(s->sums, grain, sum);
            s->data_unsynced = TRUE;
        }
        g_mutex_unlock(&s->meta);
        return TRUE;
    }
    if (sum != want) {
        g_set_error(error, VCF_ERROR, EIO,
                    "%s: checksum mismatch in grain %" G_GUINT64_FORMAT " (disk offset %"
                    G_GUINT64_FORMAT ") stored at byte %" G_GUINT64_FORMAT,
                    s->path, grain, grain * VCF_GRAIN_SIZE, off);
        return FALSE;
    }
    return TRUE;
}

void vcf_sparse_start_writeback(VcfSparse *s)
{
    if (s->writable)
        (void) sync_file_range(s->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

gboolean vcf_sparse_flush_data(VcfSparse *s, GError **error)
{
    return !s->writable || vcf_sparse_sync_fd(s, error);
}

gboolean vcf_sparse_sync(VcfSparse *s, GError **error)
{
    if (!s->writable || (!s->data_unsynced && !vcf_table_is_dirty(s->gt)))
        return TRUE;
    /* Data and sums first, then the entries that point at the data. */
    if (!vcf_sparse_sync_fd(s, error))
        return FALSE;
    vcf_grain_sums_set_cid(s->sums, s->cid);
    if (!vcf_grain_sums_sync(s->sums, error))
        return FALSE;
    if (!vcf_table_write_dirty(s->gt, error) || !vcf_sparse_sync_fd(s, error))
        return FALSE;
    s->data_unsynced = FALSE;
    return TRUE;
}

void vcf_sparse_get_geometry(const VcfSparse *s, VcfGeometry *g)
{
    *g = s->geometry;
}
