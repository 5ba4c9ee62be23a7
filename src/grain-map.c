#include "config.h"
#include "grain-map.h"
#include "sparse.h"
#include "sparse-format.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

struct VcfGrainMap {
    guint64 units;
    guint8 *bits;   /* one bit a unit */
};

typedef struct {
    VcfGrainMap *map;
    guint64 grain_bytes;   /* of the file being read */
} Fill;

static void set_unit(VcfGrainMap *m, guint64 u)
{
    if (u < m->units)
        m->bits[u / 8] |= (guint8)(1u << (u % 8));
}

static gboolean fill_grain(guint64 grain, gpointer data)
{
    Fill *f = data;
    /* A file's grains may be smaller or larger than our units. */
    guint64 first = grain * f->grain_bytes / VCF_GRAIN_SIZE;
    guint64 last = ((grain + 1) * f->grain_bytes - 1) / VCF_GRAIN_SIZE;
    for (guint64 u = first; u <= last; u++)
        set_unit(f->map, u);
    return TRUE;
}

static gboolean is_hosted_sparse(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FALSE;
    char magic[4] = { 0 };
    gboolean yes = pread(fd, magic, 4, 0) == 4 && memcmp(magic, "KDMV", 4) == 0;
    close(fd);
    return yes;
}

VcfGrainMap *vcf_grain_map_of_parent(const VcfParent *parent, GError **error)
{
    guint64 size = vcf_parent_get_size(parent);
    g_autofree VcfGrainMap *m = g_new0(VcfGrainMap, 1);
    m->units = (size + VCF_GRAIN_SIZE - 1) / VCF_GRAIN_SIZE;
    m->bits = g_malloc0((m->units + 7) / 8);
    for (const char *const *f = vcf_parent_get_files(parent); *f != NULL; f++) {
        guint64 capacity = 0, grain_sectors = 0;
        Fill fill = { .map = m };
        /* A descriptor with extents of its own (split, flat, VMFS) would
         * need its layout: unknown for now. */
        if (!is_hosted_sparse(*f)) {
            g_free(m->bits);
            return NULL;
        }
        /* The size first, from the header, then the tables: grain_bytes
         * must be known before fill_grain runs. */
        if (!vcf_sparse_extent_each_grain(*f, NULL, NULL, &capacity, &grain_sectors, NULL)
            || capacity != size) {
            g_free(m->bits);
            return NULL;
        }
        fill.grain_bytes = grain_sectors * 512;
        if (!vcf_sparse_extent_each_grain(*f, fill_grain, &fill, NULL, NULL, error)) {
            g_free(m->bits);
            return NULL;
        }
    }
    return g_steal_pointer(&m);
}

void vcf_grain_map_free(VcfGrainMap *m)
{
    if (m == NULL)
        return;
    g_free(m->bits);
    g_free(m);
}

gboolean vcf_grain_map_holds(const VcfGrainMap *m, guint64 unit)
{
    return unit < m->units && (m->bits[unit / 8] >> (unit % 8)) & 1;
}
