/* Opening a VMware disk chain through libvmdk, and describing it: see
 * vmdk-chain.h. */
#include "config.h"
#include "vmdk-chain.h"
#include "link-cache.h"
#include "descriptor-utf8.h"
#include "vcf-error.h"
#include "vmdk-files.h"
#include "parent.h"
#include "sparse.h"
#include "sparse-format.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define CID_NONE 0xffffffffu
#define TEXT_SLACK ((gsize) 64 * 1024)

void vcf_chain_link_free(VcfChainLink *link)
{
    if (link == NULL)
        return;
    for (guint i = 0; link->extents != NULL && i < link->extents->len; i++)
        g_free(g_array_index(link->extents, VcfChainExtent, i).path);
    if (link->extents != NULL)
        g_array_unref(link->extents);
    g_free(link->path);
    g_free(link);
}

/* ---- one link ---------------------------------------------------------- */

static void link_clear(VcfVmdkLink *link)
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

/* Extent INDEX of HANDLE: its file name (as the descriptor gives it), and
 * in *EXT its kind, size and flat offset. */
static char *extent_name(libvmdk_handle_t *handle, int index,
                         const char *disk, VcfChainExtent *ext_out, GError **error)
{
    libvmdk_extent_descriptor_t *ext = NULL;
    libvmdk_error_t *verr = NULL;
    if (libvmdk_handle_get_extent_descriptor(handle, index, &ext, &verr) != 1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: extent %d", disk, index);
        return NULL;
    }
    int type = 0;
    size_t size = 0;
    off64_t off = 0;
    size64_t len = 0;
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
    /* libvmdk 20200926 gives the size in bytes but a flat extent's offset
     * as the descriptor's number, which is in sectors (and reads it as
     * bytes: see layer-flat.c). */
    if (r == 1)
        r = libvmdk_extent_descriptor_get_range(ext, &off, &len, &verr);
    if (r == 1 && (off < 0 || (guint64) off > G_MAXUINT64 / 512)) {
        libvmdk_extent_descriptor_free(&ext, NULL);
        g_set_error(error, VCF_ERROR, EINVAL, "%s: extent %d has a bad offset", disk, index);
        return NULL;
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
    if (r == -1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: extent %d", disk, index);
        return NULL;
    }
    if (r == 0 || name == NULL || name[0] == '\0') {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: extent %d names no file",
                    disk, index);
        return NULL;
    }
    ext_out->kind = type == LIBVMDK_EXTENT_TYPE_FLAT ? VCF_EXTENT_FLAT
        : type == LIBVMDK_EXTENT_TYPE_SPARSE ? VCF_EXTENT_SPARSE
        : type == LIBVMDK_EXTENT_TYPE_VMFS_FLAT ? VCF_EXTENT_VMFS_FLAT
        : VCF_EXTENT_VMFS_SPARSE;
    ext_out->size = len;
    ext_out->file_offset = (guint64) off * 512;
    return g_steal_pointer(&name);
}

/* Fills LINK->pool with the extent files, entry i for extent i, and hands it
 * to the handle. libvmdk's own libvmdk_handle_open_extent_data_files opens
 * a single-file disk's extent by the name in its embedded descriptor, which
 * is wrong once the disk is renamed (and reads a decoy of the old name), so
 * we open every extent ourselves. FACTS gets each extent, the name it was
 * found by and its stat, taken before libvmdk reads it. */
static gboolean open_extents(VcfVmdkLink *link, const char *disk, gboolean single,
                             const char *confine_real, VcfLinkFacts *facts, GError **error)
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
    guint64 start = 0;
    for (int i = 0; i < n_extents; i++) {
        VcfChainExtent ext = { 0 };
        g_autofree char *name = extent_name(link->handle, i, disk, &ext, error);
        if (name == NULL)
            return FALSE;
        g_autofree char *real = NULL;
        g_autofree char *joined = NULL;
        if (single && ext.kind != VCF_EXTENT_SPARSE && ext.kind != VCF_EXTENT_VMFS_SPARSE) {
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
            joined = g_build_filename(folder, name, NULL);
            g_autofree char *what = g_strdup_printf("extent of %s", disk);
            real = vcf_resolve_disk_file(joined, confine_real, what, error);
            if (real == NULL)
                return FALSE;
        }
        struct stat st;
        if (stat(real, &st) != 0) {
            vcf_set_errno(error, errno, real);
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
        if (ext.size > G_MAXUINT64 - start) {
            g_set_error(error, VCF_ERROR, EINVAL, "%s: extents add up past 2^64 bytes", disk);
            return FALSE;
        }
        guint64 grain_sectors = 0;
        ext.start = start;
        ext.misread = ext.file_offset != 0;
        if (ext.kind == VCF_EXTENT_SPARSE
            && vcf_sparse_extent_each_grain(real, NULL, NULL, NULL, &grain_sectors, NULL))
            ext.misread |= start % (grain_sectors * 512) != 0;
        ext.path = g_steal_pointer(&real);
        g_array_append_val(facts->desc->extents, ext);
        g_ptr_array_add(facts->extent_names, g_steal_pointer(&joined));
        g_array_append_val(facts->stats, st);
        start += ext.size;
    }
    if (libvmdk_handle_open_extent_data_files_file_io_pool(link->handle, link->pool,
                                                           &verr) != 1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: reading its extents", disk);
        return FALSE;
    }
    return TRUE;
}

/* The link's parentCID in *PARENT_CID, and in *NAME the file its
 * parentFileNameHint names, joined to DISK's folder (not resolved), or
 * NULL for a base disk. */
static gboolean parent_name(libvmdk_handle_t *handle, const char *disk,
                            guint32 *parent_cid, char **name_out, GError **error)
{
    libvmdk_error_t *verr = NULL;
    uint32_t pcid = CID_NONE;
    *name_out = NULL;
    int r = libvmdk_handle_get_parent_content_identifier(handle, &pcid, &verr);
    if (r == -1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: reading parentCID", disk);
        return FALSE;
    }
    /* libvmdk treats a link as a delta exactly when parentCID is present
     * and not ffffffff; any parentFileNameHint of a base is ignored. */
    *parent_cid = r == 1 ? pcid : CID_NONE;
    if (*parent_cid == CID_NONE)
        return TRUE;
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
        return FALSE;
    }
    if (r == 0 || name == NULL || name[0] == '\0') {
        g_set_error(error, VCF_ERROR, EINVAL,
                    "%s: delta disk (parentCID %08x) has no parentFileNameHint",
                    disk, *parent_cid);
        return FALSE;
    }
    if (g_path_is_absolute(name)) {
        *name_out = g_steal_pointer(&name);
    } else {
        g_autofree char *folder = g_path_get_dirname(disk);
        *name_out = g_build_filename(folder, name, NULL);
    }
    return TRUE;
}

/* Opens the disk at DISK (a resolved path) with its extents into LINK, and
 * says what libvmdk found in it. */
static VcfLinkFacts *open_link(VcfVmdkLink *link, const char *disk, const char *confine_real,
                               GError **error)
{
    libvmdk_error_t *verr = NULL;
    gboolean single = FALSE;
    g_autoptr(VcfLinkFacts) facts = vcf_link_facts_new();
    struct stat st;
    /* Before anything reads it: see link-cache.h. */
    facts->stat_at = g_get_real_time();
    if (stat(disk, &st) != 0) {
        vcf_set_errno(error, errno, disk);
        return NULL;
    }
    g_array_append_val(facts->stats, st);
    if (!vcf_is_sparse_file(disk, &single, error))
        return NULL;
    if (libvmdk_handle_initialize(&link->handle, &verr) != 1) {
        vcf_set_vmdk_error(error, ENOMEM, &verr, "%s", disk);
        return NULL;
    }
    /* libvmdk reads few charsets: a descriptor in another one is handed to
     * it in UTF-8 from memory (its extents come from our pool anyway). A
     * file that is neither sparse nor a descriptor is EINVAL there. */
    gsize len = 0;
    if (!single && !vcf_descriptor_to_utf8(disk, &link->text, &len, error))
        return NULL;
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
            return NULL;
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
        return NULL;
    }
    facts->desc = g_new0(VcfChainLink, 1);
    facts->desc->path = g_strdup(disk);
    facts->desc->single = single;
    facts->desc->extents = g_array_new(FALSE, TRUE, sizeof(VcfChainExtent));
    if (!open_extents(link, disk, single, confine_real, facts, error))
        return NULL;
    uint32_t cid = 0;
    size64_t size = 0;
    if (libvmdk_handle_get_content_identifier(link->handle, &cid, &verr) != 1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: reading CID", disk);
        return NULL;
    }
    if (libvmdk_handle_get_media_size(link->handle, &size, &verr) != 1) {
        vcf_set_vmdk_error(error, EIO, &verr, "%s: reading its size", disk);
        return NULL;
    }
    facts->cid = cid;
    facts->desc->size = size;
    if (!parent_name(link->handle, disk, &facts->parent_cid, &facts->parent_name, error))
        return NULL;
    return g_steal_pointer(&facts);
}

static VcfChainLink *chain_link_copy(const VcfChainLink *from)
{
    VcfChainLink *l = g_new0(VcfChainLink, 1);
    l->path = g_strdup(from->path);
    l->single = from->single;
    l->size = from->size;
    l->extents = g_array_sized_new(FALSE, TRUE, sizeof(VcfChainExtent), from->extents->len);
    for (guint i = 0; i < from->extents->len; i++) {
        VcfChainExtent e = g_array_index(from->extents, VcfChainExtent, i);
        e.path = g_strdup(e.path);
        g_array_append_val(l->extents, e);
    }
    return l;
}

/* ---- one chain --------------------------------------------------------- */

void vcf_vmdk_chain_clear(VcfVmdkChain *chain)
{
    for (guint i = 0; i < chain->n_links; i++)
        link_clear(&chain->links[i]);
    g_free(chain->links);
    chain->links = NULL;
    chain->n_links = 0;
}

/* The facts of link DISK: kept ones if CACHE has them and CHAIN needs no
 * handles, else from opening it with libvmdk, into a new link of LINKS
 * when CHAIN is kept (or a link closed again). */
static VcfLinkFacts *link_facts(VcfVmdkChain *chain, GArray *links, const char *disk,
                                const char *confine_real, VcfLinkCache *cache,
                                GError **error)
{
    VcfLinkFacts *facts = chain == NULL ? vcf_link_cache_lookup(cache, disk, confine_real)
                                        : NULL;
    if (facts != NULL)
        return facts;
    VcfVmdkLink scratch = { 0 };
    VcfVmdkLink *link = &scratch;
    if (chain != NULL) {
        g_array_set_size(links, links->len + 1);
        link = &g_array_index(links, VcfVmdkLink, links->len - 1);
    }
    facts = open_link(link, disk, confine_real, error);
    if (chain == NULL)
        link_clear(&scratch);
    if (facts != NULL)
        vcf_link_cache_store(cache, confine_real, facts);
    return facts;
}

gboolean vcf_vmdk_chain_open(VcfVmdkChain *chain, const char *top, const char *confine_real,
                             VcfLinkCache *cache, GPtrArray *files, GArray *stats,
                             GPtrArray *described, guint64 *size_out, guint32 *cid_out,
                             GError **error)
{
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal,
                                                       g_free, NULL);
    /* Handles only for a chain kept open; a check closes each link. */
    GArray *links = chain != NULL ? g_array_new(FALSE, TRUE, sizeof(VcfVmdkLink)) : NULL;
    g_autofree char *disk = g_strdup(top);
    g_autofree char *child = NULL;    /* the link whose parent DISK is */
    guint32 child_parent_cid = CID_NONE;
    guint64 child_size = 0;
    guint depth = 0;
    gboolean ok = FALSE;

    for (;;) {
        if (depth == VCF_CHAIN_MAX_LINKS) {
            g_set_error(error, VCF_ERROR, EINVAL,
                        "%s: chain is deeper than %d links (at %s)",
                        top, VCF_CHAIN_MAX_LINKS, disk);
            goto out;
        }
        depth++;
        g_hash_table_add(seen, g_strdup(disk));
        g_autoptr(VcfLinkFacts) facts = link_facts(chain, links, disk, confine_real, cache,
                                                   error);
        if (facts == NULL)
            goto out;
        const VcfChainLink *desc = facts->desc;
        if (files != NULL) {
            g_ptr_array_add(files, g_strdup(disk));
            if (stats != NULL)
                g_array_append_val(stats, g_array_index(facts->stats, struct stat, 0));
            for (guint i = 0; i < desc->extents->len; i++) {
                const char *p = g_array_index(desc->extents, VcfChainExtent, i).path;
                if (strcmp(p, disk) == 0)
                    continue;
                g_ptr_array_add(files, g_strdup(p));
                if (stats != NULL)
                    g_array_append_val(stats, g_array_index(facts->stats, struct stat, i + 1));
            }
        }
        if (described != NULL)
            g_ptr_array_add(described, chain_link_copy(desc));

        guint64 size = desc->size;
        if (child == NULL) {
            *cid_out = facts->cid;
            *size_out = size;
        } else {
            /* Checked here, not left to libvmdk, for a message that says
             * which files disagree. */
            if (child_parent_cid != facts->cid) {
                g_set_error(error, VCF_ERROR, EIO,
                            "%s: parentCID %08x does not match CID %08x of %s",
                            child, child_parent_cid, facts->cid, disk);
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

        if (facts->parent_name == NULL)
            break;   /* the base */
        child_parent_cid = facts->parent_cid;
        g_autofree char *what = g_strdup_printf("parent of %s", disk);
        g_autofree char *parent = vcf_resolve_disk_file(facts->parent_name, confine_real,
                                                        what, error);
        if (parent == NULL)
            goto out;
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
    for (guint i = links != NULL ? links->len : 0; i > 1; i--) {
        libvmdk_error_t *verr = NULL;
        VcfVmdkLink *c = &g_array_index(links, VcfVmdkLink, i - 2);
        VcfVmdkLink *p = &g_array_index(links, VcfVmdkLink, i - 1);
        if (libvmdk_handle_set_parent_handle(c->handle, p->handle, &verr) != 1) {
            vcf_set_vmdk_error(error, EIO, &verr, "%s: setting parent link %u", top, i - 1);
            goto out;
        }
    }
    ok = TRUE;

out:
    if (chain != NULL) {
        chain->n_links = links->len;
        chain->links = (VcfVmdkLink *) g_array_free(links, FALSE);
        if (!ok)
            vcf_vmdk_chain_clear(chain);
    }
    return ok;
}
