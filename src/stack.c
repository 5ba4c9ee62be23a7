/* The stack of read-only layers below a store: see stack.h. */
#include "config.h"
#include "stack.h"
#include "layer.h"
#include "sparse.h"
#include "sparse-format.h"
#include "vcf-error.h"
#include "vmdk-chain.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* What a unit's memo byte says: 0 not known yet, 1 + k level k holds all
 * of it, MIXED parts of it sit at different levels, NONE no level holds it. */
#define MEMO_MIXED 254u
#define MEMO_NONE 255u
/* Levels beyond this many are left to one libvmdk level. */
#define MAX_OWN_LEVELS 252u

typedef struct {
    guint n;             /* extents */
    guint64 *starts;     /* each one's first byte in the disk */
    VcfLayer **layers;
} Level;

struct VcfStack {
    GHashTable *files;   /* path -> fd (GINT_TO_POINTER): each file opened once */
    guint64 size;
    guint depth;
    Level *levels;
    guint vmdk_levels;
    guint64 units;
    /* One byte a unit, written once by whichever reader resolves it first
     * (relaxed atomics: racing writers write the same value). */
    guint8 *memo;
    gsize memo_bytes;
};

static void level_clear(Level *l)
{
    for (guint i = 0; i < l->n; i++)
        vcf_layer_free(l->layers[i]);
    g_free(l->layers);
    g_free(l->starts);
}

/* PATH opened once for the whole stack, or -1. */
static int file_fd(VcfStack *s, const char *path)
{
    gpointer fd;
    if (g_hash_table_lookup_extended(s->files, path, NULL, &fd))
        return GPOINTER_TO_INT(fd);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f >= 0)
        g_hash_table_insert(s->files, g_strdup(path), GINT_TO_POINTER(f));
    return f;
}

static void close_fd(gpointer fd)
{
    close(GPOINTER_TO_INT(fd));
}

/* Our own readers for every extent of LINK, or FALSE (no error) when one
 * of them is a kind they do not serve. */
static gboolean own_level(VcfStack *s, Level *l, const VcfChainLink *link)
{
    guint n = link->extents->len;
    l->starts = g_new0(guint64, n);
    l->layers = g_new0(VcfLayer *, n);
    for (guint i = 0; i < n; i++) {
        const VcfChainExtent *e = &g_array_index(link->extents, VcfChainExtent, i);
        VcfLayer *layer = NULL;
        int fd = file_fd(s, e->path);
        if (fd < 0)
            ;   /* libvmdk will say why */
        else if (e->kind == VCF_EXTENT_FLAT || e->kind == VCF_EXTENT_VMFS_FLAT)
            layer = vcf_layer_flat_new(fd, e->path, e->file_offset, e->size);
        else if (e->kind == VCF_EXTENT_SPARSE)
            layer = vcf_layer_sparse_open(fd, e->path, e->size, NULL);
        if (layer == NULL) {
            level_clear(l);
            memset(l, 0, sizeof *l);
            return FALSE;
        }
        l->starts[i] = e->start;
        l->layers[i] = layer;
        l->n = i + 1;
    }
    return TRUE;
}

static gboolean vmdk_level(Level *l, const GPtrArray *links, guint from,
                           const char *confine, VcfLinkCache *cache, guint n_chains,
                           GError **error)
{
    const VcfChainLink *top = links->pdata[from];
    /* What libvmdk would read wrong is refused rather than served. */
    for (guint i = from; i < links->len; i++) {
        const VcfChainLink *link = links->pdata[i];
        for (guint j = 0; j < link->extents->len; j++) {
            const VcfChainExtent *e = &g_array_index(link->extents, VcfChainExtent, j);
            gboolean zeroed = FALSE;
            if (e->misread) {
                g_set_error(error, VCF_ERROR, EINVAL, "%s: an extent of %s starts where "
                            "libvmdk misreads it (a flat one inside its file, a sparse one "
                            "inside a grain), and only libvmdk reads this chain: not supported",
                            top->path, link->path);
                return FALSE;
            }
            if (e->kind == VCF_EXTENT_SPARSE
                && vcf_sparse_extent_has_zeroed_grains(e->path, &zeroed, NULL) && zeroed) {
                g_set_error(error, VCF_ERROR, EINVAL, "%s: %s has zeroed grains, which "
                            "libvmdk misreads, and only libvmdk reads this chain: not supported",
                            top->path, e->path);
                return FALSE;
            }
        }
    }
    VcfParent *p = vcf_parent_open(top->path, confine, cache, n_chains, error);
    if (p == NULL)
        return FALSE;
    l->n = 1;
    l->starts = g_new0(guint64, 1);
    l->layers = g_new0(VcfLayer *, 1);
    l->layers[0] = vcf_layer_vmdk_new(p);
    return TRUE;
}

VcfStack *vcf_stack_new(VcfParent *parent, GError **error)
{
    const GPtrArray *links = vcf_parent_get_links(parent);
    VcfStack *s = g_new0(VcfStack, 1);
    s->files = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, close_fd);
    s->size = vcf_parent_get_size(parent);
    s->levels = g_new0(Level, links->len);
    for (guint i = 0; i < links->len; i++) {
        if (i < MAX_OWN_LEVELS && own_level(s, &s->levels[i], links->pdata[i])) {
            s->depth = i + 1;
            continue;
        }
        if (!vmdk_level(&s->levels[i], links, i, vcf_parent_get_confine(parent),
                        vcf_parent_get_cache(parent),
                        vcf_parent_get_n_chains(parent), error)) {
            vcf_stack_free(s);
            return NULL;
        }
        s->depth = i + 1;
        s->vmdk_levels = 1;
        break;
    }
    s->units = (s->size + VCF_GRAIN_SIZE - 1) / VCF_GRAIN_SIZE;
    /* Mapped, not calloc'd: malloc may hand back used heap it must clear
     * (16 MiB for 1 TiB, at every open), while untouched mapped pages cost
     * neither time nor memory. */
    s->memo_bytes = MAX(s->units, 1);
    s->memo = mmap(NULL, s->memo_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (s->memo == MAP_FAILED) {
        s->memo = NULL;
        vcf_set_errno(error, errno, "mapping the layer map");
        vcf_stack_free(s);
        return NULL;
    }
    return s;
}

void vcf_stack_free(VcfStack *s)
{
    if (s == NULL)
        return;
    for (guint i = 0; i < s->depth; i++)
        level_clear(&s->levels[i]);
    g_free(s->levels);
    g_hash_table_unref(s->files);
    if (s->memo != NULL)
        munmap(s->memo, s->memo_bytes);
    g_free(s);
}

guint64 vcf_stack_get_size(const VcfStack *s) { return s->size; }
guint vcf_stack_get_depth(const VcfStack *s) { return s->depth; }
guint vcf_stack_get_vmdk_levels(const VcfStack *s) { return s->vmdk_levels; }

/* The extent of level L holding OFFSET, or -1 past its last one. */
static gint find_extent(const Level *l, guint64 offset)
{
    guint lo = 0, hi = l->n;
    while (hi - lo > 1) {
        guint mid = (lo + hi) / 2;
        if (l->starts[mid] <= offset)
            lo = mid;
        else
            hi = mid;
    }
    if (offset < l->starts[lo] || offset - l->starts[lo] >= l->layers[lo]->size)
        return -1;
    return (gint) lo;
}

static gboolean level_run(const Level *l, guint64 offset, guint64 max, gboolean *held,
                          guint64 *len, GError **error)
{
    gint e = find_extent(l, offset);
    if (e < 0) {
        *held = FALSE;
        *len = max;
        return TRUE;
    }
    VcfLayer *layer = l->layers[e];
    guint64 in = offset - l->starts[e];
    return layer->ops->run(layer, in, MIN(max, layer->size - in), held, len, error);
}

/* Reads bytes level L holds, across its extents. */
static gboolean level_read(const Level *l, guint8 *buf, gsize len, guint64 offset,
                           GError **error)
{
    while (len > 0) {
        gint e = find_extent(l, offset);
        if (e < 0) {
            g_set_error(error, VCF_ERROR, EIO, "disk offset %" G_GUINT64_FORMAT
                        " lies past the extents of its layer", offset);
            return FALSE;
        }
        VcfLayer *layer = l->layers[e];
        guint64 in = offset - l->starts[e];
        gsize n = (gsize) MIN((guint64) len, layer->size - in);
        if (!layer->ops->read(layer, buf, n, in, error))
            return FALSE;
        buf += n, offset += n, len -= n;
    }
    return TRUE;
}

/* Reads from level K down, asking each level in turn: for units whose
 * bytes sit at more than one level. */
static gboolean read_walk(VcfStack *s, guint k, guint8 *buf, gsize len, guint64 offset,
                          GError **error)
{
    if (k == s->depth) {
        memset(buf, 0, len);
        return TRUE;
    }
    while (len > 0) {
        gboolean held;
        guint64 n;
        if (!level_run(&s->levels[k], offset, len, &held, &n, error))
            return FALSE;
        if (held ? !level_read(&s->levels[k], buf, (gsize) n, offset, error)
                 : !read_walk(s, k + 1, buf, (gsize) n, offset, error))
            return FALSE;
        buf += n, offset += n, len -= (gsize) n;
    }
    return TRUE;
}

static gboolean resolve(VcfStack *s, guint64 unit, guint8 *out, GError **error)
{
    guint64 start = unit * VCF_GRAIN_SIZE;
    guint64 len = MIN((guint64) VCF_GRAIN_SIZE, s->size - start);
    for (guint k = 0; k < s->depth; k++) {
        gboolean any = FALSE, all = TRUE;
        for (guint64 at = start; at < start + len;) {
            gboolean held;
            guint64 n;
            if (!level_run(&s->levels[k], at, start + len - at, &held, &n, error))
                return FALSE;
            any |= held, all &= held;
            at += n;
        }
        if (all) {
            *out = (guint8) (1 + k);
            return TRUE;
        }
        if (any) {
            *out = MEMO_MIXED;
            return TRUE;
        }
    }
    *out = MEMO_NONE;
    return TRUE;
}

static gboolean memo(VcfStack *s, guint64 unit, guint8 *out, GError **error)
{
    guint8 m = __atomic_load_n(&s->memo[unit], __ATOMIC_RELAXED);
    if (m == 0) {
        if (!resolve(s, unit, &m, error))
            return FALSE;
        __atomic_store_n(&s->memo[unit], m, __ATOMIC_RELAXED);
    }
    *out = m;
    return TRUE;
}

gboolean vcf_stack_read(VcfStack *s, void *buf, gsize len, guint64 offset, GError **error)
{
    guint8 *out = buf;
    gsize inside = offset < s->size ? (gsize) MIN((guint64) len, s->size - offset) : 0;
    memset(out + inside, 0, len - inside);
    len = inside;
    while (len > 0) {
        guint64 unit = offset / VCF_GRAIN_SIZE;
        guint8 m;
        if (!memo(s, unit, &m, error))
            return FALSE;
        gsize n = (gsize) MIN((guint64) len, (unit + 1) * VCF_GRAIN_SIZE - offset);
        /* Units after it that the same level holds whole: one read. */
        while (m != MEMO_MIXED && n < len) {
            guint8 next;
            if (!memo(s, unit + 1, &next, error))
                return FALSE;
            if (next != m)
                break;
            unit++;
            n += (gsize) MIN((guint64) (len - n), VCF_GRAIN_SIZE);
        }
        gboolean ok;
        if (m == MEMO_NONE) {
            memset(out, 0, n);
            ok = TRUE;
        } else if (m == MEMO_MIXED) {
            ok = read_walk(s, 0, out, n, offset, error);
        } else {
            ok = level_read(&s->levels[m - 1], out, n, offset, error);
        }
        if (!ok)
            return FALSE;
        out += n, offset += n, len -= n;
    }
    return TRUE;
}

gboolean vcf_stack_holds(VcfStack *s, guint64 unit, gboolean *held, GError **error)
{
    guint8 m = MEMO_NONE;
    if (unit < s->units && !memo(s, unit, &m, error))
        return FALSE;
    *held = m != MEMO_NONE;
    return TRUE;
}

gboolean vcf_stack_map_unit(VcfStack *s, guint64 unit, gboolean unchecked, int *fd,
                            guint64 *at, GError **error)
{
    *fd = -1;
    guint8 m;
    guint64 start = unit * VCF_GRAIN_SIZE;
    if (start + VCF_GRAIN_SIZE > s->size || !memo(s, unit, &m, error))
        return start + VCF_GRAIN_SIZE > s->size;
    if (m == MEMO_MIXED || m == MEMO_NONE)
        return TRUE;
    const Level *l = &s->levels[m - 1];
    gint e = find_extent(l, start);
    if (e < 0)
        return TRUE;
    VcfLayer *layer = l->layers[e];
    guint64 in = start - l->starts[e];
    if (layer->ops->map != NULL && in + VCF_GRAIN_SIZE <= layer->size
        && !(unchecked && layer->checked))
        layer->ops->map(layer, in, VCF_GRAIN_SIZE, fd, at);
    return TRUE;
}


/* Adds a piece to RUNS, merged with the last when it goes on from there. */
static gboolean add_run(VcfRun *runs, guint max, guint *n, int fd, guint64 at, gsize len)
{
    VcfRun *last = *n > 0 ? &runs[*n - 1] : NULL;
    if (last != NULL && last->fd == fd && (fd < 0 || last->at + last->len == at)) {
        last->len += len;
        return TRUE;
    }
    if (*n == max)
        return FALSE;
    runs[(*n)++] = (VcfRun) { fd, at, len };
    return TRUE;
}

/* Where PIECE bytes at OFFSET of unit M's level lie in one file: *FD -1 if
 * not as they are (or checked by sums). */
static void map_piece(VcfStack *s, guint8 m, guint64 offset, gsize piece, int *fd,
                      guint64 *at)
{
    *fd = -1;
    const Level *l = &s->levels[m - 1];
    gint e = find_extent(l, offset);
    if (e < 0)
        return;
    VcfLayer *layer = l->layers[e];
    guint64 in = offset - l->starts[e];
    if (!layer->checked && layer->ops->map != NULL && in + piece <= layer->size)
        layer->ops->map(layer, in, piece, fd, at);
}

gboolean vcf_stack_map_range(VcfStack *s, guint64 offset, gsize len, VcfRun *runs,
                             guint max, guint *n_runs, GError **error)
{
    guint n = 0;
    *n_runs = 0;
    while (len > 0) {
        guint64 unit = offset / VCF_GRAIN_SIZE;
        gsize piece = (gsize) MIN((guint64) len, (unit + 1) * VCF_GRAIN_SIZE - offset);
        guint8 m = MEMO_NONE;
        if (offset < s->size) {
            piece = (gsize) MIN((guint64) piece, s->size - offset);
            if (!memo(s, unit, &m, error))
                return FALSE;
        }
        int fd = -1;
        guint64 at = 0;
        if (m == MEMO_MIXED)
            return TRUE;
        if (m != MEMO_NONE) {
            map_piece(s, m, offset, piece, &fd, &at);
            if (fd < 0)
                return TRUE;
        }
        if (!add_run(runs, max, &n, fd, at, piece))
            return TRUE;
        offset += piece, len -= piece;
    }
    *n_runs = n;
    return TRUE;
}
