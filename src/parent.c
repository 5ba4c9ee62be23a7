#include "config.h"
#include "parent.h"
#include "descriptor-utf8.h"
#include "vcf-error.h"
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
    gint n_open;     /* atomic: ... of which the first n_open are open */
    gint may_add;    /* atomic: FALSE once adding a chain failed */
    VcfVmdkChain *chains;
    gint next_chain; /* atomic: where the next reader starts looking */
    char **files;
    char *confine;   /* realpath of the folder every file must be in */
    GMutex open_lock;  /* held while a chain is being added */
    GPtrArray *chain_files;  /* what chain 0 found, to compare later ones with */
    GPtrArray *links;        /* VcfChainLink: chain 0 described */
    gboolean misread;        /* libvmdk would serve wrong bytes (see vcf_parent_read) */
    struct stat *seen;       /* each of files as opened: vcf_parent_check_unchanged */
};

/* What of a file's stat tells a change: another file, or new contents. */
static gboolean same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size
        && a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* ---- public ------------------------------------------------------------ */

VcfParent *vcf_parent_open(const char *path, const char *confine_dir,
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

    /* One chain now; the others when readers contend for it (see
     * take_chain), so that opening a clone costs one walk of the chain. */
    parent->chain_files = g_ptr_array_new_with_free_func(g_free);
    GPtrArray *files = parent->chain_files;
    parent->links = g_ptr_array_new_with_free_func((GDestroyNotify) vcf_chain_link_free);
    if (!vcf_vmdk_chain_open(&parent->chains[0], top, confine_real, files, parent->links,
                             &parent->size, &parent->cid, error))
        return NULL;
    parent->n_open = 1;
    for (guint i = 0; i < parent->links->len; i++) {
        const VcfChainLink *l = parent->links->pdata[i];
        for (guint j = 0; j < l->extents->len; j++)
            if (g_array_index(l->extents, VcfChainExtent, j).misread)
                parent->misread = TRUE;
    }
    parent->may_add = n_chains > 1;
    /* Links may share a file (an extent named by several descriptors):
     * list each once, in first-seen order. */
    g_autoptr(GHashTable) listed = g_hash_table_new(g_str_hash, g_str_equal);
    GPtrArray *unique = g_ptr_array_new();
    for (guint i = 0; i < files->len; i++) {
        if (g_hash_table_add(listed, files->pdata[i]))
            g_ptr_array_add(unique, g_strdup(files->pdata[i]));
    }
    g_ptr_array_add(unique, NULL);
    parent->files = (char **) g_ptr_array_free(unique, FALSE);
    /* As they are now, for vcf_parent_check_unchanged. */
    parent->seen = g_new0(struct stat, g_strv_length(parent->files));
    for (guint i = 0; parent->files[i] != NULL; i++)
        if (stat(parent->files[i], &parent->seen[i]) < 0) {
            vcf_set_errno(error, errno, parent->files[i]);
            return NULL;
        }
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
        if (!same_file(&now, was)) {
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

guint vcf_parent_get_n_chains(const VcfParent *parent)
{
    return parent->n_chains;
}

/* Opens chain K (locked by the caller); it must find the files, size and
 * CID that chain 0 found, else a file changed under us and the chains
 * would disagree. */
static gboolean add_chain(VcfParent *parent, guint k)
{
    g_autoptr(GPtrArray) again = g_ptr_array_new_with_free_func(g_free);
    guint64 size = 0;
    guint32 cid = 0;
    if (!vcf_vmdk_chain_open(&parent->chains[k], parent->top_path, parent->confine, again,
                             NULL, &size, &cid, NULL))
        return FALSE;
    gboolean same = size == parent->size && cid == parent->cid
                    && again->len == parent->chain_files->len;
    for (guint j = 0; same && j < again->len; j++)
        same = strcmp(again->pdata[j], parent->chain_files->pdata[j]) == 0;
    if (!same)
        vcf_vmdk_chain_clear(&parent->chains[k]);
    return same;
}

/* A free chain if there is one; else a new one if fewer than n_chains are
 * open; else waits for one. Starting the search at a counter spreads
 * readers over chains instead of piling on chain 0. */
static VcfVmdkChain *take_chain(VcfParent *parent)
{
    guint start = (guint) g_atomic_int_add(&parent->next_chain, 1);
    guint n = (guint) g_atomic_int_get(&parent->n_open);
    for (guint i = 0; i < n; i++) {
        VcfVmdkChain *chain = &parent->chains[(start + i) % n];
        if (g_mutex_trylock(&chain->lock))
            return chain;
    }
    if (n < parent->n_chains && g_atomic_int_get(&parent->may_add)
        && g_mutex_trylock(&parent->open_lock)) {
        guint k = (guint) g_atomic_int_get(&parent->n_open);
        if (k < parent->n_chains) {
            VcfVmdkChain *chain = &parent->chains[k];
            g_mutex_lock(&chain->lock);
            if (add_chain(parent, k)) {
                g_atomic_int_set(&parent->n_open, (gint) k + 1);
                g_mutex_unlock(&parent->open_lock);
                return chain;
            }
            /* Could not open another: make do with those we have. */
            g_mutex_unlock(&chain->lock);
            g_atomic_int_set(&parent->may_add, FALSE);
        }
        g_mutex_unlock(&parent->open_lock);
        n = (guint) g_atomic_int_get(&parent->n_open);
    }
    VcfVmdkChain *chain = &parent->chains[start % n];
    g_mutex_lock(&chain->lock);
    return chain;
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

    VcfVmdkChain *chain = take_chain(parent);
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
