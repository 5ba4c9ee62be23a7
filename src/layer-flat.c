/* A flat extent: a byte range of a file, read with one pread of exactly the
 * bytes asked for. Its offset in the file may be anything (libvmdk 20200926
 * takes a descriptor's sector offset as bytes; we do not). */
#include "config.h"
#include "layer.h"
#include "fileutil.h"
#include "vcf-error.h"

#include <errno.h>
#include <sys/stat.h>

typedef struct {
    VcfLayer base;
    int fd;
    guint64 file_offset;
    guint64 file_size;   /* at open: what lies past it is not served from the file */
} FlatLayer;

static gboolean flat_read(VcfLayer *layer, void *buf, gsize len, guint64 offset,
                          GError **error)
{
    FlatLayer *f = (FlatLayer *) layer;
    gssize n = vcf_pread_all(f->fd, buf, len, f->file_offset + offset, layer->path, error);
    if (n < 0)
        return FALSE;
    if ((gsize) n < len) {
        /* The file is shorter than its descriptor says: cut, so refuse the
         * bytes rather than make them up. */
        g_set_error(error, VCF_ERROR, EIO, "%s: flat extent ends at byte %" G_GUINT64_FORMAT
                    ", before disk offset %" G_GUINT64_FORMAT " that it must hold",
                    layer->path, f->file_offset + offset + (guint64) n, offset + (guint64) n);
        return FALSE;
    }
    return TRUE;
}

static void flat_free(VcfLayer *layer)
{
    g_free(layer->path);
    g_free(layer);
}

static void flat_map(VcfLayer *layer, guint64 offset, gsize len, int *fd, guint64 *at)
{
    FlatLayer *f = (FlatLayer *) layer;
    *fd = -1;
    /* A cut file is EIO when read (flat_read), never a short reply. */
    if (f->file_offset + offset + len > f->file_size)
        return;
    *fd = f->fd;
    *at = f->file_offset + offset;
}

static const VcfLayerOps flat_ops = { "flat", vcf_layer_run_all, flat_read, flat_free, flat_map };

VcfLayer *vcf_layer_flat_new(int fd, const char *path, guint64 file_offset, guint64 size)
{
    FlatLayer *f = g_new0(FlatLayer, 1);
    f->base.ops = &flat_ops;
    f->base.size = size;
    f->base.path = g_strdup(path);
    f->fd = fd;
    f->file_offset = file_offset;
    struct stat st;
    f->file_size = fstat(fd, &st) == 0 ? (guint64) st.st_size : 0;
    return &f->base;
}
