/* A read-only disk layer: one extent of one link of a VMware chain, read
 * by the code that knows its kind. Each answers two questions: which
 * ranges do you hold, and read these bytes.
 *
 * Which reader serves what:
 *   layer-sparse.c  hosted sparse extents (monolithicSparse, the extents of
 *                   twoGbMaxExtentSparse, our own stores), uncompressed:
 *                   one pread of exactly the bytes asked for, from tables
 *                   loaded once
 *   layer-flat.c    flat extents (monolithicFlat, twoGbMaxExtentFlat,
 *                   vmfs): a byte range of a file, at any offset in it
 *   layer-vmdk.c    everything else (stream-optimized and other compressed
 *                   grains, VMFS sparse): libvmdk reads it, with every
 *                   link below it
 * libvmdk opens and checks every chain first (vmdk-chain.c) whichever
 * reader then serves it. Offsets here are the layer's own: 0 .. size.
 * Thread-safe: reads may run at once. */
#pragma once
#include <glib.h>

typedef struct VcfLayer VcfLayer;

typedef struct {
    const char *kind;   /* "sparse", "flat", "vmdk": for messages */
    /* Whether the layer holds the bytes at OFFSET (< size): *HELD, and how
     * many bytes from there (1 .. MAX) are held or not alike: *LEN. A
     * layer that holds a range as zeros holds it. */
    gboolean (*run)(VcfLayer *layer, guint64 offset, guint64 max, gboolean *held,
                    guint64 *len, GError **error);
    /* Reads LEN bytes at OFFSET, all of which the layer holds. EIO naming
     * the file and offset when they cannot be read. */
    gboolean (*read)(VcfLayer *layer, void *buf, gsize len, guint64 offset, GError **error);
    void (*free)(VcfLayer *layer);
    /* Where the LEN bytes at OFFSET (all held) lie as they are in one file,
     * for copying them file to file: *FD and *AT, or *FD -1 when they do not
     * (zeroed grains, grains apart, compressed data). NULL: never. */
    void (*map)(VcfLayer *layer, guint64 offset, gsize len, int *fd, guint64 *at);
} VcfLayerOps;

struct VcfLayer {
    const VcfLayerOps *ops;
    guint64 size;     /* bytes */
    char *path;       /* the file it reads, for messages */
    gboolean checked; /* reads are checked against sums: bytes must be read to be served */
};

/* The run of a layer that holds every byte of its range (flat, libvmdk). */
static inline gboolean vcf_layer_run_all(VcfLayer *layer, guint64 offset, guint64 max,
                                         gboolean *held, guint64 *len, GError **error)
{
    *held = TRUE;
    *len = MIN(max, layer->size - offset);
    return TRUE;
}

static inline void vcf_layer_free(VcfLayer *layer)
{
    if (layer != NULL)
        layer->ops->free(layer);
}

/* Layers read FD, the open file at PATH, which stays the caller's (a file
 * may hold many extents: it is opened once) and must outlive the layer. */

/* A hosted sparse extent covering SIZE bytes of its disk. NULL with EINVAL
 * when it is not one this reader serves (compressed, a foreign header);
 * the caller then leaves it to libvmdk. */
VcfLayer *vcf_layer_sparse_open(int fd, const char *path, guint64 size, GError **error);
/* SIZE bytes of the file from byte FILE_OFFSET. */
VcfLayer *vcf_layer_flat_new(int fd, const char *path, guint64 file_offset, guint64 size);

typedef struct VcfParent VcfParent;
/* All of PARENT's disk, read through libvmdk; takes PARENT. */
VcfLayer *vcf_layer_vmdk_new(VcfParent *parent);
