/* Facts of disk-chain links, kept while their files are unchanged: see
 * link-cache.h. */
#include "config.h"
#include "link-cache.h"
#include "fileutil.h"
#include "vmdk-files.h"

#include <string.h>
#include <sys/vfs.h>

/* statfs f_type of the file systems whose stat a link may be kept by (see
 * link-cache.h): ext2/3/4, XFS, btrfs, tmpfs, ZFS, F2FS. */
static const unsigned long trusted_fs[] = {
    0xEF53, 0x58465342, 0x9123683E, 0x01021994, 0x2FC12FC2, 0xF2F52010,
};

/* Entries kept at most; past it the table starts again empty (a library
 * rarely has that many disk files, and a miss only costs one open). */
#define MAX_ENTRIES 4096

struct VcfLinkCache {
    gint refs;               /* atomic */
    gint64 settle_us;        /* files changed more recently are not kept */
    GMutex lock;             /* guards table and the counts, never held across I/O */
    GHashTable *table;       /* resolved disk path -> Entry */
    guint64 stored;
    guint64 hits;
};

typedef struct {
    char *confine;           /* the folder the facts were found inside */
    VcfLinkFacts *facts;
} Entry;

static void entry_free(gpointer p)
{
    Entry *e = p;
    g_free(e->confine);
    vcf_link_facts_unref(e->facts);
    g_free(e);
}

/* ---- facts ------------------------------------------------------------- */

static void facts_clear(gpointer p)
{
    VcfLinkFacts *f = p;
    vcf_chain_link_free(f->desc);
    g_free(f->parent_name);
    if (f->extent_names != NULL)
        g_ptr_array_unref(f->extent_names);
    if (f->stats != NULL)
        g_array_unref(f->stats);
}

VcfLinkFacts *vcf_link_facts_new(void)
{
    VcfLinkFacts *f = g_atomic_rc_box_new0(VcfLinkFacts);
    f->extent_names = g_ptr_array_new_with_free_func(g_free);
    f->stats = g_array_new(FALSE, TRUE, sizeof(struct stat));
    return f;
}

VcfLinkFacts *vcf_link_facts_ref(VcfLinkFacts *facts)
{
    return g_atomic_rc_box_acquire(facts);
}

void vcf_link_facts_unref(VcfLinkFacts *facts)
{
    if (facts != NULL)
        g_atomic_rc_box_release_full(facts, facts_clear);
}

/* PATH is still the file the Ith of STATS showed: its data by
 * vcf_stat_same_data, and its mode and ctime too, which a chmod or a write
 * whose mtime was set back move. */
static gboolean unchanged(const char *path, const GArray *stats, guint i)
{
    const struct stat *was = &g_array_index(stats, struct stat, i);
    struct stat now;
    return stat(path, &now) == 0 && vcf_stat_same_data(&now, was)
        && now.st_mode == was->st_mode
        && now.st_ctim.tv_sec == was->st_ctim.tv_sec
        && now.st_ctim.tv_nsec == was->st_ctim.tv_nsec;
}

/* Every file of F as it was, and every extent name leading to the file it
 * led to. */
static gboolean still_same(const VcfLinkFacts *f, const char *confine_real)
{
    const GArray *ext = f->desc->extents;
    if (f->stats->len != ext->len + 1 || f->extent_names->len != ext->len
        || !unchanged(f->desc->path, f->stats, 0))
        return FALSE;
    for (guint i = 0; i < ext->len; i++) {
        const VcfChainExtent *e = &g_array_index(ext, VcfChainExtent, i);
        const char *name = f->extent_names->pdata[i];
        if (name != NULL) {
            g_autofree char *real = vcf_resolve_disk_file(name, confine_real, NULL, NULL);
            if (real == NULL || strcmp(real, e->path) != 0)
                return FALSE;
        }
        if (!unchanged(e->path, f->stats, i + 1))
            return FALSE;
    }
    return TRUE;
}

/* ---- the cache --------------------------------------------------------- */

VcfLinkCache *vcf_link_cache_new(gint64 settle_us)
{
    VcfLinkCache *c = g_new0(VcfLinkCache, 1);
    c->settle_us = settle_us;
    c->refs = 1;
    g_mutex_init(&c->lock);
    c->table = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entry_free);
    return c;
}

VcfLinkCache *vcf_link_cache_ref(VcfLinkCache *cache)
{
    g_atomic_int_inc(&cache->refs);
    return cache;
}

void vcf_link_cache_unref(VcfLinkCache *cache)
{
    if (cache == NULL || !g_atomic_int_dec_and_test(&cache->refs))
        return;
    g_hash_table_unref(cache->table);
    g_mutex_clear(&cache->lock);
    g_free(cache);
}

VcfLinkFacts *vcf_link_cache_lookup(VcfLinkCache *cache, const char *disk,
                                    const char *confine_real)
{
    if (cache == NULL)
        return NULL;
    VcfLinkFacts *f = NULL;
    g_mutex_lock(&cache->lock);
    Entry *e = g_hash_table_lookup(cache->table, disk);
    if (e != NULL && strcmp(e->confine, confine_real) == 0)
        f = vcf_link_facts_ref(e->facts);
    g_mutex_unlock(&cache->lock);
    if (f == NULL)
        return NULL;
    /* Outside the lock: stat and realpath are I/O. */
    if (!still_same(f, confine_real)) {
        vcf_link_facts_unref(f);
        return NULL;
    }
    g_mutex_lock(&cache->lock);
    cache->hits++;
    g_mutex_unlock(&cache->lock);
    return f;
}

/* Whether PATH is on a file system whose stat tells its changes. */
static gboolean trusted_file(const char *path)
{
    struct statfs fs;
    if (statfs(path, &fs) != 0)
        return FALSE;
    for (gsize i = 0; i < G_N_ELEMENTS(trusted_fs); i++)
        if ((unsigned long)fs.f_type == trusted_fs[i])
            return TRUE;
    return FALSE;
}

void vcf_link_cache_store(VcfLinkCache *cache, const char *confine_real,
                          VcfLinkFacts *facts)
{
    if (cache == NULL)
        return;
    /* A file's times move in clock ticks (4 ms with HZ=250): one changed
     * again within the tick of our stat would look unchanged. Only files
     * that had been still for a while when they were stat'ed are trusted
     * by their stat. */
    for (guint i = 0; i < facts->stats->len; i++) {
        const struct stat *st = &g_array_index(facts->stats, struct stat, i);
        gint64 m = (gint64)st->st_mtim.tv_sec * G_USEC_PER_SEC + st->st_mtim.tv_nsec / 1000;
        gint64 c = (gint64)st->st_ctim.tv_sec * G_USEC_PER_SEC + st->st_ctim.tv_nsec / 1000;
        if (MAX(m, c) > facts->stat_at - cache->settle_us)
            return;
    }
    if (!trusted_file(facts->desc->path))
        return;
    for (guint i = 0; i < facts->desc->extents->len; i++)
        if (!trusted_file(g_array_index(facts->desc->extents, VcfChainExtent, i).path))
            return;
    Entry *e = g_new0(Entry, 1);
    e->confine = g_strdup(confine_real);
    e->facts = vcf_link_facts_ref(facts);
    g_mutex_lock(&cache->lock);
    if (g_hash_table_size(cache->table) >= MAX_ENTRIES)
        g_hash_table_remove_all(cache->table);
    g_hash_table_replace(cache->table, g_strdup(facts->desc->path), e);
    cache->stored++;
    g_mutex_unlock(&cache->lock);
}

void vcf_link_cache_counts(VcfLinkCache *cache, guint64 *stored, guint64 *hits)
{
    *stored = *hits = 0;
    if (cache == NULL)
        return;
    g_mutex_lock(&cache->lock);
    *stored = cache->stored;
    *hits = cache->hits;
    g_mutex_unlock(&cache->lock);
}
