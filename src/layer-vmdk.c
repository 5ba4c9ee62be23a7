/* A libvmdk-read layer: a whole chain from some link down to its base,
 * for the formats we do not read ourselves (compressed grains, VMFS
 * sparse). libvmdk cannot say which grains it holds, so it holds all. */
#include "config.h"
#include "layer.h"
#include "parent.h"

typedef struct {
    VcfLayer base;
    VcfParent *parent;
} VmdkLayer;

static gboolean vmdk_read(VcfLayer *layer, void *buf, gsize len, guint64 offset,
                          GError **error)
{
    return vcf_parent_read(((VmdkLayer *) layer)->parent, buf, len, offset, error);
}

static void vmdk_free(VcfLayer *layer)
{
    vcf_parent_free(((VmdkLayer *) layer)->parent);
    g_free(layer->path);
    g_free(layer);
}

/* No map: libvmdk may decompress, so bytes never lie as they are. */
static const VcfLayerOps vmdk_ops = { "vmdk", vcf_layer_run_all, vmdk_read, vmdk_free, NULL };

VcfLayer *vcf_layer_vmdk_new(VcfParent *parent)
{
    VmdkLayer *v = g_new0(VmdkLayer, 1);
    v->base.ops = &vmdk_ops;
    v->base.size = vcf_parent_get_size(parent);
    v->base.path = g_strdup(vcf_parent_get_files(parent)[0]);
    v->parent = parent;
    return &v->base;
}
