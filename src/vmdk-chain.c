/* Opening a VMware disk chain through libvmdk, and describing it: see
 * vmdk-chain.h. */
#include "config.h"
#include "vmdk-chain.h"
#include "descriptor-utf8.h"
#include "vcf-error.h"
#include "vmdk-files.h"
#include "parent.h"
#include "sparse.h"
#include "sparse-format.h"

#include <errno.h>
#include <string.h>

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
 * we open every extent ourselves. FILES gets each extent's path, EXTENTS
 * (when not NULL) each extent. */
static gboolean open_extents(VcfVmdkLink *link, const char *disk, gboolean single,
                             const char *confine_real, GPtrArray *files,
                             GArray *extents, GError **error)
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
        if (ext.size > G_MAXUINT64 - start) {
            g_set_error(error, VCF_ERROR, EINVAL, "%s: extents add up past 2^64 bytes", disk);
            return FALSE;
        }
        if (extents != NULL) {
            guint64 grain_sectors = 0;
            ext.start = start;
            ext.misread = ext.file_offset != 0;
            if (ext.kind == VCF_EXTENT_SPARSE
                && vcf_sparse_extent_each_grain(real, NULL, NULL, NULL, &grain_sectors, NULL))
                ext.misread |= start % (grain_sectors * 512) != 0;
            ext.path = g_strdup(real);
            g_array_append_val(extents, ext);
        }
        start += ext.size;
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

/* Opens the disk at DISK (a resolved path) with its extents; describes it
 * in *DESCRIBED when that is not NULL. */
static gboolean open_link(VcfVmdkLink *link, const char *disk, const char *confine_real,
                          GPtrArray *files, VcfChainLink **described, GError **error)
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
    g_autoptr(GArray) extents = NULL;
    if (described != NULL)
        extents = g_array_new(FALSE, TRUE, sizeof(VcfChainExtent));
    if (!open_extents(link, disk, single, confine_real, files, extents, error)) {
        for (guint i = 0; extents != NULL && i < extents->len; i++)
            g_free(g_array_index(extents, VcfChainExtent, i).path);
        return FALSE;
    }
    if (described != NULL) {
        *described = g_new0(VcfChainLink, 1);
        (*described)->path = g_strdup(disk);
        (*described)->single = single;
        (*described)->extents = g_steal_pointer(&extents);
    }
    return TRUE;
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

void vcf_vmdk_chain_clear(VcfVmdkChain *chain)
{
    for (guint i = 0; i < chain->n_links; i++)
        link_clear(&chain->links[i]);
    g_free(chain->links);
    chain->links = NULL;
    chain->n_links = 0;
}

gboolean vcf_vmdk_chain_open(VcfVmdkChain *chain, const char *top, const char *confine_real,
                             GPtrArray *files, GPtrArray *described, guint64 *size_out,
                             guint32 *cid_out, GError **error)
{
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal,
                                                       g_free, NULL);
    GArray *links = g_array_new(FALSE, TRUE, sizeof(VcfVmdkLink));
    g_autofree char *disk = g_strdup(top);
    g_autofree char *child = NULL;    /* the link whose parent DISK is */
    guint32 child_parent_cid = CID_NONE;
    guint64 child_size = 0;
    gboolean ok = FALSE;

    for (;;) {
        if (links->len == VCF_CHAIN_MAX_LINKS) {
            g_set_error(error, VCF_ERROR, EINVAL,
                        "%s: chain is deeper than %d links (at %s)",
                        top, VCF_CHAIN_MAX_LINKS, disk);
            goto out;
        }
        g_hash_table_add(seen, g_strdup(disk));
        g_array_set_size(links, links->len + 1);
        VcfVmdkLink *link = &g_array_index(links, VcfVmdkLink, links->len - 1);
        VcfChainLink *desc = NULL;
        if (!open_link(link, disk, confine_real, files,
                       described != NULL ? &desc : NULL, error))
            goto out;
        if (desc != NULL)
            g_ptr_array_add(described, desc);

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
        if (desc != NULL)
            desc->size = size;
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
        VcfVmdkLink *c = &g_array_index(links, VcfVmdkLink, i - 1);
        VcfVmdkLink *p = &g_array_index(links, VcfVmdkLink, i);
        if (libvmdk_handle_set_parent_handle(c->handle, p->handle, &verr) != 1) {
            vcf_set_vmdk_error(error, EIO, &verr, "%s: setting parent link %u", top, i);
            goto out;
        }
    }
    ok = TRUE;

out:
    chain->n_links = links->len;
    chain->links = (VcfVmdkLink *) g_array_free(links, FALSE);
    if (!ok)
        vcf_vmdk_chain_clear(chain);
    return ok;
}

