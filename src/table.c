#include "config.h"
#include "table.h"
#include "fileutil.h"
#include "vcf-error.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096u

struct VcfTable {
    int fd;
    guint64 offset;
    gsize size;
    guint8 *data;
    guint8 *dirty;   /* one byte per page: simple, and 1/4096 of the table */
    gsize n_pages;
    gboolean any_dirty;
    char *file_name;
    GArray *loaded;  /* gsize pairs: [start, end) of the table read from the file */
};

/* Reads the parts of the region that hold data; holes (a fresh store is all
 * holes: tables are preallocated that way) and whatever lies past the end
 * of the file stay zero without being read, so opening a new 64 GiB clone
 * costs no 12 MiB of reads. */
static gboolean load_data(VcfTable *t, GError **error)
{
    guint64 pos = t->offset, end = t->offset + t->size;
    while (pos < end) {
        off_t data = lseek(t->fd, pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            return TRUE;                       /* no data from here on */
        if (data < 0)
            data = pos;                        /* no SEEK_DATA here: read it all */
        if ((guint64)data >= end)
            return TRUE;
        off_t hole = lseek(t->fd, data, SEEK_HOLE);
        guint64 stop = hole < 0 ? end : MIN((guint64)hole, end);
        if (vcf_pread_all(t->fd, t->data + (data - t->offset), stop - data, data,
                          t->file_name, error) < 0)
            return FALSE;
        gsize range[2] = { (gsize)(data - t->offset), (gsize)(stop - t->offset) };
        g_array_append_vals(t->loaded, range, 2);
        pos = stop;
    }
    return TRUE;
}

VcfTable *vcf_table_new(int fd, guint64 offset, gsize size, gboolean load,
                        const char *file_name, GError **error)
{
    VcfTable *t = g_new0(VcfTable, 1);
    t->loaded = g_array_new(FALSE, FALSE, sizeof(gsize));
    t->fd = fd;
    t->offset = offset;
    t->size = size;
    /* Fresh anonymous pages are zero and cost nothing until touched: a
     * 64 GiB disk's tables (12 MiB) are mostly never touched. */
    void *data = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) {
        g_set_error(error, VCF_ERROR, ENOMEM, "%s: no memory for a table of %" G_GSIZE_FORMAT
                    " bytes", file_name, size);
        g_free(t);
        return NULL;
    }
    t->data = data;
    t->n_pages = (size + PAGE - 1) / PAGE;
    t->dirty = g_malloc0(t->n_pages ? t->n_pages : 1);
    t->file_name = g_strdup(file_name);
    if (load && !load_data(t, error)) {
        vcf_table_free(t);
        return NULL;
    }
    return t;
}

void vcf_table_free(VcfTable *t)
{
    if (t == NULL)
        return;
    if (t->data != NULL)
        munmap(t->data, t->size ? t->size : 1);
    g_free(t->dirty);
    g_free(t->file_name);
    g_array_unref(t->loaded);
    g_free(t);
}

guint8 *vcf_table_data(VcfTable *t) { return t->data; }
gsize vcf_table_size(const VcfTable *t) { return t->size; }

const gsize *vcf_table_loaded(const VcfTable *t, guint *n)
{
    *n = t->loaded->len / 2;
    return (const gsize *)(void *)t->loaded->data;
}
gboolean vcf_table_is_dirty(const VcfTable *t) { return t->any_dirty; }

void vcf_table_mark_dirty(VcfTable *t, gsize offset, gsize len)
{
    g_return_if_fail(offset + len <= t->size);
    if (len == 0)
        return;
    for (gsize p = offset / PAGE; p <= (offset + len - 1) / PAGE; p++)
        t->dirty[p] = 1;
    t->any_dirty = TRUE;
}

gboolean vcf_table_write_dirty(VcfTable *t, GError **error)
{
    if (!t->any_dirty)
        return TRUE;
    for (gsize p = 0; p < t->n_pages; p++) {
        if (!t->dirty[p])
            continue;
        /* Coalesce a run of dirty pages into one write. */
        gsize end = p;
        while (end + 1 < t->n_pages && t->dirty[end + 1])
            end++;
        gsize from = p * PAGE;
        gsize to = MIN((end + 1) * PAGE, t->size);
        if (!vcf_pwrite_all(t->fd, t->data + from, to - from, t->offset + from,
                            t->file_name, error))
            return FALSE;
        memset(t->dirty + p, 0, end - p + 1);
        p = end;
    }
    t->any_dirty = FALSE;
    return TRUE;
}
