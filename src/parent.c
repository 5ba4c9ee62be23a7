#include "config.h"
#include "parent.h"
#include "descriptor-utf8.h"
#include "vcf-error.h"
#include "vmdk-files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvmdk.h>

#define MAX_LINKS 255
#define CID_NONE 0xffffffffu
/* libvmdk returns ssize_t: keep each request well below SSIZE_MAX. */
#define MAX_READ_CHUNK ((gsize) 1 << 30)
#define TEXT_SLACK ((gsize) 64 * 1024)

/* One link of a chain: its handle and the pool of its extent files. The pool
 * is ours, not libvmdk's (see open_extents), so it outlives the handle. */
typedef struct {
    libvmdk_handle_t *handle;
    libbfio_pool_t *pool;
    /* A descriptor we converted to UTF-8 (see open_link), and the memory
     * handle libvmdk read it through; kept while the handle lives. */
    libbfio_handle_t *text_io;
    char *text;
} Link;

typedef struct {
    GMutex lock;     /* held while a reader uses this chain */
    Link *links;     /* top first: links[i + 1] is the parent of links[i] */
    guint n_links;
} Chain;

struct VcfParent {
    char *top_path;  /* realpath of the top link, for messages */
    guint64 size;
    guint32 cid;
    guint n_chains;  /* at most this many chains ... */
    gint n_open;     /* atomic: ... of which the first n_open are open */
    gint may_add;    /* atomic: FALSE once adding a chain failed */
    Chain *chains;
    gint next_chain; /* atomic: where the next reader starts looking */
    char **files;
    char *confine;   /* realpath of the folder every file must be in */
    GMutex open_lock;  /* held while a chain is being added */
    GPtrArray *chain_files;  /* what chain 0 found, to compare later ones with */
};

/* ---- one link ---------------------------------------------------------- */

static void link_clear(Link *link)
{
    /* The handle first: it points at the pool. A child must be freed before
     * its parent, which callers ensure by clearing top first. */
    if (link->handle != NULL)
        libvmdk_handle_free(&link->handle, NULL);
    if (link->pool != NULL) {
        libbfio_pool_close_all(link->pool, NULL);
        libbfio_pool_free(&link->pool, NULL);
    }
    if (link->text_io != NULL)
        libbfio_handle_free(&link->text_io, NULL);
    g_clear_pointer(&link->text, g_free);
}

static char *extent_name(libvmdk_handle_t *handle, int index,
                         const char *disk, int *type_out, GError **error)
{
    libvmdk_extent_descriptor_t *ext = NULL;
    libvmdk_error_t *verr = NULL;
    if (libvmdk_handle_get_extent_descriptor(handle, index, &ext, &verr) != 1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: extent %d", disk, index);
        return NULL;
    }
    int type = 0;
    size_t size = 0;
    int r = libvmdk_extent_descriptor_get_type(ext, &type, &verr);
    if (r == 1 && type != LIBVMDK_EXTENT_TYPE_FLAT
        && type != LIBVMDK_EXTENT_TYPE_SPARSE
        && type != LIBVMDK_EXTENT_TYPE_VMFS_FLAT
        && type != LIBVMDK_EXTENT_TYPE_VMFS_SPARSE) {
        /* ZERO, RDM and raw device extents: libvmdk reads none of them. */
        libvmdk_extent_descriptor_free(&ext, NULL);
        g_set_error(error, VCF_ERROR, EINVAL,
                    "%s: extent %d has an unsupported type (%d)", disk, index, type);
        return NULL;
    }
    if (r == 1 && (type == LIBVMDK_EXTENT_TYPE_FLAT || type == LIBVMDK_EXTENT_TYPE_VMFS_FLAT)) {
        /* The descriptor gives a flat extent's offset in sectors; libvmdk
         * 20200926 takes it as bytes and would serve the wrong bytes. */
        off64_t off = 0;
        size64_t len = 0;
        r = libvmdk_extent_descriptor_get_range(ext, &off, &len, &verr);
        if (r == 1 && off != 0) {
            libvmdk_extent_descriptor_free(&ext, NULL);
            g_set_error(error, VCF_ERROR, EINVAL, "%s: extent %d is a flat extent that starts "
                        "at an offset inside its file, which libvmdk misreads; not supported",
                        disk, index);
            return NULL;
        }
    }
    if (r == 1)
        r = libvmdk_extent_descriptor_get_utf8_filename_size(ext, &size, &verr);
    g_autofree char *name = NULL;
    if (r == 1 && size > 0) {
        name = g_malloc0(size + 1);
        r = libvmdk_extent_descriptor_get_utf8_filename(ext, (uint8_t *) name,
                                                        size, &verr);
    }
    libvmdk_extent_descriptor_free(&ext, NULL);
    *type_out = type;
    if (r == -1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: extent %d", disk, index);
        return NULL;
    }
    if (r == 0 || name == NULL || name[0] == '\0') {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: extent %d names no file",
                    disk, index);
        return NULL;
    }
    return g_steal_pointer(&name);
}

/* Fills LINK->pool with the extent files, entry i for extent i, and hands it
 * to the handle. libvmdk's own libvmdk_handle_open_extent_data_files opens
 * a single-file disk's extent by the name in its embedded descriptor, which
 * is wrong once the disk is renamed (and reads a decoy of the old name), so
 * we open every extent ourselves. FILES gets each extent's path. */
static gboolean open_extents(Link *link, const char *disk, gboolean single,
                             const char *confine_real, GPtrArray *files,
                             GError **error)
{
    libvmdk_error_t *verr = NULL;
    libbfio_error_t *berr = NULL;
    int n_extents = 0;
    if (libvmdk_handle_get_number_of_extents(link->handle, &n_extents, &verr) != 1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: reading its extents", disk);
        return FALSE;
    }
    if (n_extents < 1) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: descriptor lists no extent", disk);
        return FALSE;
    }
    if (single && n_extents != 1) {
        g_set_error(error, VCF_ERROR, EINVAL,
                    "%s: single-file sparse disk lists %d extents", disk, n_extents);
        return FALSE;
    }
    if (libbfio_pool_initialize(&link->pool, n_extents,
                                LIBBFIO_POOL_UNLIMITED_NUMBER_OF_OPEN_HANDLES,
                                &berr) != 1) {
        vcf_set_bfio_error(error, &berr, "%s: creating its file pool", disk);
        return FALSE;
    }
    g_autofree char *folder = g_path_get_dirname(disk);
    for (int i = 0; i < n_extents; i++) {
        int type = 0;
        g_autofree char *name = extent_name(link->handle, i, disk, &type, error);
        if (name == NULL)
            return FALSE;
        g_autofree char *real = NULL;
        if (single && type != LIBVMDK_EXTENT_TYPE_SPARSE
            && type != LIBVMDK_EXTENT_TYPE_VMFS_SPARSE) {
            /* Its header and grain tables would be read as flat data. */
            g_set_error(error, VCF_ERROR, EINVAL,
                        "%s: single-file sparse disk describes a flat extent", disk);
            return FALSE;
        }
        if (single) {
            /* The disk is its own extent, whatever its descriptor says. */
            real = g_strdup(disk);
        } else {
            /* A descriptor names files beside it; anything with a path could
             * reach other VMs' disks. */
            if (strchr(name, '/') != NULL || strcmp(name, ".") == 0
                || strcmp(name, "..") == 0) {
                g_set_error(error, VCF_ERROR, EINVAL,
                            "%s: extent name \"%s\" is not a plain file name",
                            disk, name);
                return FALSE;
            }
            g_autofree char *joined = g_build_filename(folder, name, NULL);
            g_autofree char *what = g_strdup_printf("extent of %s", disk);
            real = vcf_resolve_disk_file(joined, confine_real, what, error);
            if (real == NULL)
                return FALSE;
        }
        libbfio_handle_t *fh = NULL;
        if (libbfio_file_initialize(&fh, &berr) != 1) {
            vcf_set_bfio_error(error, &berr, "%s: extent %s", disk, real);
            return FALSE;
        }
        /* The length excludes the terminating NUL. */
        if (libbfio_file_set_name(fh, real, strlen(real), &berr) != 1
            || libbfio_handle_open(fh, LIBBFIO_OPEN_READ, &berr) != 1) {
            libbfio_handle_free(&fh, NULL);
            vcf_set_bfio_error(error, &berr, "%s: opening extent %s", disk, real);
            return FALSE;
        }
        if (libbfio_pool_set_handle(link->pool, i, fh, LIBBFIO_OPEN_READ, &berr) != 1) {
            libbfio_handle_close(fh, NULL);
            libbfio_handle_free(&fh, NULL);
            vcf_set_bfio_error(error, &berr, "%s: extent %s", disk, real);
            return FALSE;
        }
        if (files != NULL && strcmp(real, disk) != 0)
            g_ptr_array_add(files, g_steal_pointer(&real));
    }
    if (libvmdk_handle_open_extent_data_files_file_io_pool(link->handle, link->pool,
                                                           &verr) != 1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: reading its extents", disk);
        return FALSE;
    }
    return TRUE;
}

/* Opens the disk at DISK (a resolved path) with its extents. */
static gboolean open_link(Link *link, const char *disk, const char *confine_real,
                          GPtrArray *files, GError **error)
{
    libvmdk_error_t *verr = NULL;
    gboolean single = FALSE;
    if (!vcf_is_sparse_file(disk, &single, error))
        return FALSE;
    if (libvmdk_handle_initialize(&link->handle, &verr) != 1) {
        vcf_set_vmdk_error(error, ENOMEM, &verr, "%s", disk);
        return FALSE;
    }
    /* libvmdk reads few charsets: a descriptor in another one is handed to
     * it in UTF-8 from memory (its extents come from our pool anyway). A
     * file that is neither sparse nor a descriptor is EINVAL there. */
    gsize len = 0;
    if (!single && !vcf_descriptor_to_utf8(disk, &link->text, &len, error))
        return FALSE;
    int r;
    if (link->text != NULL) {
        /* libbfio 20170123's memory range copies a whole read request (2 KiB
         * for libvmdk's signature) even past the range: zeros to spare. */
        link->text = g_realloc(link->text, len + TEXT_SLACK);
        memset(link->text + len, 0, TEXT_SLACK);
        libbfio_error_t *berr = NULL;
        if (libbfio_memory_range_initialize(&link->text_io, &berr) != 1
            || libbfio_memory_range_set(link->text_io, (uint8_t *) link->text, len,
                                        &berr) != 1) {
            vcf_set_bfio_error(error, &berr, "%s: reading its descriptor", disk);
            return FALSE;
        }
        r = libvmdk_handle_open_file_io_handle(link->handle, link->text_io,
                                               LIBVMDK_OPEN_READ, &verr);
    } else {
        r = libvmdk_handle_open(link->handle, disk, LIBVMDK_OPEN_READ, &verr);
    }
    /* A descriptor libvmdk refuses is a format problem, not lost data; a
     * sparse file it refuses may be cut short or damaged. */
    if (r != 1) {
        if (single)
            vcf_set_vmdk_error(error, EIO, &verr, "%s: not a readable VMDK disk", disk);
        else
            vcf_set_vmdk_error(error, EINVAL, &verr, "%s: not a readable VMDK descriptor", disk);
        return FALSE;
    }
    if (files != NULL)
        g_ptr_array_add(files, g_strdup(disk));
    return open_extents(link, disk, single, confine_real, files, error);
}

/* The parent file named by the link's parentFileNameHint, or NULL with no
 * error for a base disk. */
static char *parent_path(libvmdk_handle_t *handle, const char *disk,
                         const char *confine_real, guint32 *parent_cid,
                         GError **error)
{
    libvmdk_error_t *verr = NULL;
    uint32_t pcid = CID_NONE;
    int r = libvmdk_handle_get_parent_content_identifier(handle, &pcid, &verr);
    if (r == -1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: reading parentCID", disk);
        return NULL;
    }
    /* libvmdk treats a link as a delta exactly when parentCID is present
     * and not ffffffff; any parentFileNameHint of a base is ignored. */
    *parent_cid = r == 1 ? pcid : CID_NONE;
    if (*parent_cid == CID_NONE)
        return NULL;
    size_t size = 0;
    g_autofree char *name = NULL;
    r = libvmdk_handle_get_utf8_parent_filename_size(handle, &size, &verr);
    if (r == 1 && size > 0) {
        name = g_malloc0(size + 1);
        r = libvmdk_handle_get_utf8_parent_filename(handle, (uint8_t *) name,
                                                     size, &verr);
    }
    if (r == -1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: reading parentFileNameHint", disk);
        return NULL;
    }
    if (r == 0 || name == NULL || name[0] == '\0') {
        g_set_error(error, VCF_ERROR, EINVAL,
                    "%s: delta disk (parentCID %08x) has no parentFileNameHint",
                    disk, *parent_cid);
        return NULL;
    }
    g_autofree char *joined = NULL;
    if (g_path_is_absolute(name)) {
        joined = g_strdup(name);
    } else {
        g_autofree char *folder = g_path_get_dirname(disk);
        joined = g_build_filename(folder, name, NULL);
    }
    g_autofree char *what = g_strdup_printf("parent of %s", disk);
    return vcf_resolve_disk_file(joined, confine_real, what, error);
}

static guint64 media_size(libvmdk_handle_t *handle, const char *disk,
                          gboolean *ok, GError **error)
{
    libvmdk_error_t *verr = NULL;
    size64_t size = 0;
    *ok = libvmdk_handle_get_media_size(handle, &size, &verr) == 1;
    if (!*ok)
        vcf_set_vmdk_error(error, EIO, &verr, "%s: reading its size", disk);
    return size;
}

/* ---- one chain --------------------------------------------------------- */

static void chain_clear(Chain *chain)
{
    for (guint i = 0; i < chain->n_links; i++)
        link_clear(&chain->links[i]);
    g_free(chain->links);
    chain->links = NULL;
    chain->n_links = 0;
}

/* Opens TOP (resolved) and its parents down to the base into CHAIN. FILES,
 * when not NULL, gets every file read, top first. */
static gboolean open_chain(Chain *chain, const char *top, const char *confine_real,
                           GPtrArray *files, guint64 *size_out, guint32 *cid_out,
                           GError **error)
{
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal,
                                                       g_free, NULL);
    GArray *links = g_array_new(FALSE, TRUE, sizeof(Link));
    g_autofree char *disk = g_strdup(top);
    g_autofree char *child = NULL;    /* the link whose parent DISK is */
    guint32 child_parent_cid = CID_NONE;
    guint64 child_size = 0;
    gboolean ok = FALSE;

    for (;;) {
        if (links->len == MAX_LINKS) {
            g_set_error(error, VCF_ERROR, EINVAL,
                        "%s: chain is deeper than %d links (at %s)",
                        top, MAX_LINKS, disk);
            goto out;
        }
        g_hash_table_add(seen, g_strdup(disk));
        g_array_set_size(links, links->len + 1);
        Link *link = &g_array_index(links, Link, links->len - 1);
        if (!open_link(link, disk, confine_real, files, error))
            goto out;

        libvmdk_error_t *verr = NULL;
        uint32_t cid = 0;
        if (libvmdk_handle_get_content_identifier(link->handle, &cid, &verr) != 1) {
            vcf_set_vmdk_error(error, EIO, &verr, "%s: reading CID", disk);
            goto out;
        }
        gboolean size_ok;
        guint64 size = media_size(link->handle, disk, &size_ok, error);
        if (!size_ok)
            goto out;
        if (child == NULL) {
            *cid_out = cid;
            *size_out = size;
        } else {
            /* Checked here, not left to libvmdk, for a message that says
             * which files disagree. */
            if (child_parent_cid != cid) {
                g_set_error(error, VCF_ERROR, EIO,
                            "%s: parentCID %08x does not match CID %08x of %s",
                            child, child_parent_cid, cid, disk);
                goto out;
            }
            /* libvmdk fails reading a child's holes past its parent's end. */
            if (child_size > size) {
                g_set_error(error, VCF_ERROR, EIO,
                            "%s: size %" G_GUINT64_FORMAT " is larger than its parent %s (%"
                            G_GUINT64_FORMAT ")", child, child_size, disk, size);
                goto out;
            }
        }

        GError *local = NULL;
        g_autofree char *parent = parent_path(link->handle, disk, confine_real,
                                              &child_parent_cid, &local);
        if (local != NULL) {
            g_propagate_error(error, local);
            goto out;
        }
        if (parent == NULL)
            break;   /* the base */
        if (g_hash_table_contains(seen, parent)) {
            g_set_error(error, VCF_ERROR, EINVAL,
                        "%s: chain loops: parent %s is already in it", disk, parent);
            goto out;
        }
        g_free(child);
        child = g_steal_pointer(&disk);
        child_size = size;
        disk = g_steal_pointer(&parent);
    }

    /* Base first, as libvmdk wants: each link reads its holes from the
     * already complete chain below it. */
    for (guint i = links->len - 1; i > 0; i--) {
        libvmdk_error_t *verr = NULL;
        Link *c = &g_array_index(links, Link, i - 1);
        Link *p = &g_array_index(links, Link, i);
        if (libvmdk_handle_set_parent_handle(c->handle, p->handle, &verr) != 1) {
            vcf_set_vmdk_error(error, EIO, &verr, "%s: setting parent link %u", top, i);
            goto out;
        }
    }
    ok = TRUE;

out:
    chain->n_links = links->len;
    chain->links = (Link *) g_array_free(links, FALSE);
    if (!ok)
        chain_clear(chain);
    return ok;
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
    parent->chains = g_new0(Chain, n_chains);
    for (guint i = 0; i < n_chains; i++)
        g_mutex_init(&parent->chains[i].lock);
    parent->n_chains = n_chains;
    g_mutex_init(&parent->open_lock);

    /* One chain now; the others when readers contend for it (see
     * take_chain), so that opening a clone costs one walk of the chain. */
    parent->chain_files = g_ptr_array_new_with_free_func(g_free);
    GPtrArray *files = parent->chain_files;
    if (!open_chain(&parent->chains[0], top, confine_real, files,
                    &parent->size, &parent->cid, error))
        return NULL;
    parent->n_open = 1;
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
    return g_steal_pointer(&parent);
}

void vcf_parent_free(VcfParent *parent)
{
    if (parent == NULL)
        return;
    for (guint i = 0; i < parent->n_chains; i++) {
        chain_clear(&parent->chains[i]);
        g_mutex_clear(&parent->chains[i].lock);
    }
    g_mutex_clear(&parent->open_lock);
    if (parent->chain_files != NULL)
        g_ptr_array_unref(parent->chain_files);
    g_free(parent->confine);
    g_free(parent->chains);
    g_strfreev(parent->files);
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

const char *const *vcf_parent_get_files(const VcfParent *parent)
{
    return (const char *const *) parent->files;
}

/* Opens chain K (locked by the caller); it must find the files, size and
 * CID that chain 0 found, else a file changed under us and the chains
 * would disagree. */
static gboolean add_chain(VcfParent *parent, guint k)
{
    g_autoptr(GPtrArray) again = g_ptr_array_new_with_free_func(g_free);
    guint64 size = 0;
    guint32 cid = 0;
    if (!open_chain(&parent->chains[k], parent->top_path, parent->confine, again, &size,
                    &cid, NULL))
        return FALSE;
    gboolean same = size == parent->size && cid == parent->cid
                    && again->len == parent->chain_files->len;
    for (guint j = 0; same && j < again->len; j++)
        same = strcmp(again->pdata[j], parent->chain_files->pdata[j]) == 0;
    if (!same)
        chain_clear(&parent->chains[k]);
    return same;
}

/* A free chain if there is one; else a new one if fewer than n_chains are
 * open; else waits for one. Starting the search at a counter spreads
 * readers over chains instead of piling on chain 0. */
static Chain *take_chain(VcfParent *parent)
{
    guint start = (guint) g_atomic_int_add(&parent->next_chain, 1);
    guint n = (guint) g_atomic_int_get(&parent->n_open);
    for (guint i = 0; i < n; i++) {
        Chain *chain = &parent->chains[(start + i) % n];
        if (g_mutex_trylock(&chain->lock))
            return chain;
    }
    if (n < parent->n_chains && g_atomic_int_get(&parent->may_add)
        && g_mutex_trylock(&parent->open_lock)) {
        guint k = (guint) g_atomic_int_get(&parent->n_open);
        if (k < parent->n_chains) {
            Chain *chain = &parent->chains[k];
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
    Chain *chain = &parent->chains[start % n];
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

    Chain *chain = take_chain(parent);
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
