#include "config.h"
#include "parent.h"
#include "descriptor-utf8.h"
#include "fileutil.h"
#include "vcf-error.h"
#include "link-cache.h"
#include "vmdk-chain.h"
#include "vmdk-files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvmdk.h>

/* libvmdk returns ssize_t: keep each request well below SSIZE_MAX. */
#define MAX_READ_CHUNK ((gsize) 1 << 30)

struct VcfParent {
    char *top_path;  /* realpath of the top link, for messages */
    guint64 size;
    guint32 cid;
    guint n_chains;  /* at most this many chains ... */
    gint n_open;     /* atomic: ... of which the first n_open are open (none
                      * until the first read: opening checked the chain) */
    gint may_add;    /* atomic: FALSE once adding a chain failed */
    VcfVmdkChain *chains;
    gint next_chain; /* atomic: where the next reader starts looking */
    char **files;
    char *confine;   /* realpath of the folder every file must be in */
    GMutex open_lock;  /* held while a chain is being added; guards open_error */
    VcfLinkCache *cache;     /* a reference, or NULL */
    GError *open_error;      /* why chain 0 cannot be opened; open_lock */
    GPtrArray *chain_files;  /* what chain 0 found, to compare later ones with */
    GPtrArray *links;        /* VcfChainLink: chain 0 described */
    gboolean misread;        /* libvmdk would serve wrong bytes (see vcf_parent_read) */
    struct stat *seen;       /* each of files as opened: vcf_parent_check_unchanged */
};

/* ---- public ------------------------------------------------------------ */

VcfParent *vcf_parent_open(const char *path, const char *confine_dir, VcfLinkCache *cache,
                           guint n_chains, GError **error)
{
    g_return_val_if_fail(path != NULL && confine_dir != NULL, NULL);
    if (n_chains == 0)
        n_chains = 1;

    char *c = realpath(confine_dir, NULL);
    if (c == NULL) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e, "%s: %s", confine_dir, g_strerror(e));
        return NULL;
    }
    g_autofree char *confine_real = g_strdup(c);
    free(c);
    g_autofree char *top = vcf_resolve_disk_file(path, confine_real, NULL, error);
    if (top == NULL)
        return NULL;

    g_autoptr(VcfParent) parent = g_new0(VcfParent, 1);
    parent->top_path = g_strdup(top);
    parent->confine = g_strdup(confine_real);
    parent->chains = g_new0(VcfVmdkChain, n_chains);
    for (guint i = 0; i < n_chains; i++)
        g_mutex_init(&parent->chains[i].lock);
    parent->n_chains = n_chains;
    g_mutex_init(&parent->open_lock);

    parent->cache = cache != NULL ? vcf_link_cache_ref(cache) : NULL;

    /* Checked now, through libvmdk or what it found before; read through
     * libvmdk only on a first read (take_chain), which most parents never
     * get: our own layers read the formats we know. */
    parent->chain_files = g_ptr_array_new_with_free_func(g_free);
    GPtrArray *files = parent->chain_files;
    g_autoptr(GArray) stats = g_array_new(FALSE, TRUE, sizeof(struct stat));
    parent->links = g_ptr_array_new_with_free_func((GDestroyNotify) vcf_chain_link_free);
    if (!vcf_vmdk_chain_open(NULL, top, confine_real, cache, files, stats, parent->links,
                             &parent->size, &parent->cid, error))
        return NULL;
    for (guint i = 0; i < parent->links->len; i++) {
        const VcfChainLink *l = parent->links->pdata[i];
        for (guint j = 0; j < l->extents->len; j++)
            if (g_array_index(l->extents, VcfChainExtent, j).misread)
                parent->misread = TRUE;
    }
    parent->may_add = TRUE;
    /* Links may share a file (an extent named by several descriptors):
     * list each once, in first-seen order. */
    g_autoptr(GHashTable) listed = g_hash_table_new(g_str_hash, g_str_equal);
    GPtrArray *unique = g_ptr_array_new();
    /* As they were when libvmdk checked them, for
     * vcf_parent_check_unchanged: a change since is a change. */
    parent->seen = g_new0(struct stat, files->len + 1);
    for (guint i = 0; i < files->len; i++) {
        if (g_hash_table_add(listed, files->pdata[i])) {
            parent->seen[unique->len] = g_array_index(stats, struct stat, i);
            g_ptr_array_add(unique, g_strdup(files->pdata[i]));
        }
    }
    g_ptr_array_add(unique, NULL);
    parent->files = (char **) g_ptr_array_free(unique, FALSE);
    return g_steal_pointer(&parent);
}

void vcf_parent_free(VcfParent *parent)
{
    if (parent == NULL)
        return;
    for (guint i = 0; i < parent->n_chains; i++) {
        vcf_vmdk_chain_clear(&parent->chains[i]);
        g_mutex_clear(&parent->chains[i].lock);
    }
    g_mutex_clear(&parent->open_lock);
    vcf_link_cache_unref(parent->cache);
    g_clear_error(&parent->open_error);
    if (parent->chain_files != NULL)
        g_ptr_array_unref(parent->chain_files);
    if (parent->links != NULL)
        g_ptr_array_unref(parent->links);
    g_free(parent->confine);
    g_free(parent->chains);
    g_strfreev(parent->files);
    g_free(parent->seen);
    g_free(parent->top_path);
    g_free(parent);
}

guint64 vcf_parent_get_size(const VcfParent *parent)
{
    return parent->size;
}

guint32 vcf_parent_get_cid(const VcfParent *parent)
{
    return parent->cid;
}

gboolean vcf_parent_check_unchanged(const VcfParent *parent, GError **error)
{
    for (guint i = 0; parent->files[i] != NULL; i++) {
        struct stat now;
        const char *f = parent->files[i];
        if (stat(f, &now) < 0) {
            int e = errno;
            g_set_error(error, VCF_ERROR, EIO, "%s, a file of the parent disk, is gone (%s): "
                        "it was removed or renamed since the clone was opened", f,
                        g_strerror(e));
            return FALSE;
        }
        const struct stat *was = &parent->seen[i];
        if (now.st_dev != was->st_dev || now.st_ino != was->st_ino) {
            g_set_error(error, VCF_ERROR, EIO, "%s, a file of the parent disk, was replaced by "
                        "another file outside vmclonefs since the clone was opened: the "
                        "clone's bytes cannot be trusted", f);
            return FALSE;
        }
        if (!vcf_stat_same_data(&now, was)) {
            g_autoptr(GDateTime) t = g_date_time_new_from_unix_local(now.st_mtim.tv_sec);
            g_autofree char *when = t ? g_date_time_format(t, "%F %T") : g_strdup("?");
            g_set_error(error, VCF_ERROR, EIO, "%s, a file of the parent disk, changed outside "
                        "vmclonefs (modified %s, %jd bytes): its VM was run or edited since "
                        "the clone was opened, and the clone's bytes cannot be trusted", f,
                        when, (intmax_t)now.st_size);
            return FALSE;
        }
    }
    return TRUE;
}

const char *const *vcf_parent_get_files(const VcfParent *parent)
{
    return (const char *const *) parent->files;
}

const GPtrArray *vcf_parent_get_links(const VcfParent *parent)
{
    return parent->links;
}

const char *vcf_parent_get_confine(const VcfParent *parent)
{
    return parent->confine;
}

VcfLinkCache *vcf_parent_get_cache(const VcfParent *parent)
{
    return parent->cache;
}

guint vcf_parent_get_n_chains(const VcfParent *parent)
{
    return parent->n_chains;
}

/* Opens chain K (locked by the caller); it must find the files, size and
 * CID that opening found, and each file still the one checked then (stat'ed
 * once libvmdk holds it open), else a file changed under us and would be
 * read unchecked: *CHANGED is set then. */
static gboolean add_chain(VcfParent *parent, guint k, gboolean *changed, GError **error)
{
    g_autoptr(GPtrArray) again = g_ptr_array_new_with_free_func(g_free);
    guint64 size = 0;
    guint32 cid = 0;
    *changed = FALSE;
    GError *local = NULL;
    if (!vcf_vmdk_chain_open(&parent->chains[k], parent->top_path, parent->confine, NULL,
                             again, NULL, NULL, &size, &cid, &local)) {
        /* Said as the change it comes from, if it does. */
        *changed = !vcf_parent_check_unchanged(parent, error);
        if (*changed)
            g_error_free(local);
        else
            g_propagate_error(error, local);
        return FALSE;
    }
    gboolean same = size == parent->size && cid == parent->cid
                    && again->len == parent->chain_files->len;
    for (guint j = 0; same && j < again->len; j++)
        same = strcmp(again->pdata[j], parent->chain_files->pdata[j]) == 0;
    if (!same)
        g_set_error(error, VCF_ERROR, EIO, "%s: its chain changed since it was opened: "
                    "the clone's bytes cannot be trusted", parent->top_path);
    else
        same = vcf_parent_check_unchanged(parent, error);
    if (!same) {
        vcf_vmdk_chain_clear(&parent->chains[k]);
        *changed = TRUE;
    }
    return same;
}

/* A free chain if there is one; else a new one if fewer than n_chains are
 * open; else waits for one. Starting the search at a counter spreads
 * readers over chains instead of piling on chain 0. The first reader opens
 * chain 0 and the others wait for it; NULL if it cannot be opened, for
 * good once its files changed (a failure for want of memory or file
 * handles is tried again at the next read). */
static VcfVmdkChain *take_chain(VcfParent *parent, GError **error)
{
    guint start = (guint) g_atomic_int_add(&parent->next_chain, 1);
    for (;;) {
        guint n = (guint) g_atomic_int_get(&parent->n_open);
        for (guint i = 0; i < n; i++) {
            VcfVmdkChain *chain = &parent->chains[(start + i) % n];
            if (g_mutex_trylock(&chain->lock))
                return chain;
        }
        if (n < parent->n_chains && g_atomic_int_get(&parent->may_add)) {
            if (n == 0)
                g_mutex_lock(&parent->open_lock);
            else if (!g_mutex_trylock(&parent->open_lock))
                goto wait;
            guint k = (guint) g_atomic_int_get(&parent->n_open);
            if (k != n || !g_atomic_int_get(&parent->may_add)) {
                /* Another reader opened one (or gave up) meanwhile. */
                g_mutex_unlock(&parent->open_lock);
                continue;
            }
            VcfVmdkChain *chain = &parent->chains[k];
            GError *local = NULL;
            gboolean changed;
            g_mutex_lock(&chain->lock);
            if (add_chain(parent, k, &changed, &local)) {
                g_atomic_int_set(&parent->n_open, (gint) k + 1);
                g_mutex_unlock(&parent->open_lock);
                return chain;
            }
            g_mutex_unlock(&chain->lock);
            if (k > 0 || changed) {
                /* Make do with those we have; with none, fail for good. */
                g_atomic_int_set(&parent->may_add, FALSE);
                if (k == 0)
                    parent->open_error = g_error_copy(local);
            }
            g_mutex_unlock(&parent->open_lock);
            if (k == 0) {
                g_propagate_error(error, local);
                return NULL;
            }
            g_error_free(local);
            continue;
        }
    wait:
        if (n == 0) {
            g_mutex_lock(&parent->open_lock);
            if (parent->open_error != NULL)
                g_propagate_error(error, g_error_copy(parent->open_error));
            else
                g_set_error(error, VCF_ERROR, EIO, "%s: libvmdk could not open the chain",
                            parent->top_path);
            g_mutex_unlock(&parent->open_lock);
            return NULL;
        }
        VcfVmdkChain *chain = &parent->chains[start % n];
        g_mutex_lock(&chain->lock);
        return chain;
    }
}

gboolean vcf_parent_read(VcfParent *parent, void *buf, gsize len,
                         guint64 offset, GError **error)
{
    guint8 *out = buf;
    if (len == 0)
        return TRUE;
    /* Past the end reads as zeros, like a file's hole. */
    gsize inside = 0;
    if (offset < parent->size)
        inside = (gsize) MIN((guint64) len, parent->size - offset);
    memset(out + inside, 0, len - inside);
    if (inside == 0)
        return TRUE;
    if (parent->misread) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: an extent of this chain starts where "
                    "libvmdk misreads it (a flat one inside its file, a sparse one inside a "
                    "grain)", parent->top_path);
        return FALSE;
    }

    VcfVmdkChain *chain = take_chain(parent, error);
    if (chain == NULL)
        return FALSE;
    libvmdk_handle_t *top = chain->links[0].handle;
    gsize done = 0;
    gboolean ok = TRUE;
    while (done < inside) {
        libvmdk_error_t *verr = NULL;
        gsize want = MIN(inside - done, MAX_READ_CHUNK);
        ssize_t n = libvmdk_handle_read_buffer_at_offset(top, out + done, want,
                                                         (off64_t) (offset + done),
                                                         &verr);
        if (n <= 0) {
            vcf_set_vmdk_error(error, EIO, &verr,
                           "%s: reading %" G_GSIZE_FORMAT " bytes at offset %"
                           G_GUINT64_FORMAT "%s", parent->top_path, want,
                           offset + done, n == 0 ? ": short read" : "");
            ok = FALSE;
            break;
        }
        done += (gsize) n;
    }
    g_mutex_unlock(&chain->lock);
    return ok;
}
