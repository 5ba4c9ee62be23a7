#include "config.h"
#include "table.h"
#include "fileutil.h"
#include "vcf-error.h"

#include <errno.h>
#include <string.h>
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
};

VcfTable *vcf_table_new(int fd, guint64 offset, gsize size, gboolean load,
                        const char *file_name, GError **error)
{
    VcfTable *t = g_new0(VcfTable, 1);
    t->fd = fd;
    t->offset = offset;
    t->size = size;
    t->data = g_malloc0(size ? size : 1);
    t->n_pages = (size + PAGE - 1) / PAGE;
    t->dirty = g_malloc0(t->n_pages ? t->n_pages : 1);
    t->file_name = g_strdup(file_name);
    if (load && vcf_pread_all(fd, t->data, size, offset, file_name, error) < 0) {
        vcf_table_free(t);    /* past the end of the file the table stays zero */
        return NULL;
    }
    return t;
}

void vcf_table_free(VcfTable *t)
{
    if (t == NULL)
        return;
    g_free(t->data);
    g_free(t->dirty);
    g_free(t->file_name);
    g_free(t);
}

guint8 *vcf_table_data(VcfTable *t) { return t->data; }
gsize vcf_table_size(const VcfTable *t) { return t->size; }
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
