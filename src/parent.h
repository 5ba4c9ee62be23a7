/* Parent disks: a VMware disk and its whole delta chain, opened and
 * checked through libvmdk (vmdk-chain.c), and read through it where our
 * own layers (layer.h, stack.h) do not serve a link.
 *
 * A VcfParent holds up to N independent libvmdk chains (each link a handle,
 * its parent set base first) because a libvmdk handle serialises its reads;
 * vcf_parent_read() takes any free chain, so reads run in parallel.
 * vcf_parent_open checks the chain and opens none: the first read opens
 * the first chain, and readers that contend open the others; one that
 * cannot be opened then just leaves fewer. */
#pragma once
#include <glib.h>

typedef struct VcfParent VcfParent;
typedef struct VcfLinkCache VcfLinkCache;

/* The deepest chain vcf_parent_open opens, in links. */
#define VCF_CHAIN_MAX_LINKS 255

/* Opens the disk whose descriptor (or monolithic sparse file) is PATH, and
 * the parents named by parentFileNameHint down to the base. Every file of
 * the chain, extents included, must resolve inside CONFINE_DIR; a chain
 * that loops, is deeper than 255 links, names a missing file, or whose
 * parentCID does not match its parent's CID is an error (VCF_ERROR)
 * naming the file: ENOENT for a missing file; EINVAL for a file that is not
 * a VMDK, a descriptor that cannot be read (its encoding= included) and
 * what libvmdk does not support; EIO for a damaged sparse file, a CID
 * mismatch or a parent smaller than its child. A descriptor in another
 * charset than UTF-8 (encoding="Shift_JIS", which libvmdk cannot read) is
 * converted to UTF-8 first, extent names included.
 *
 * Opening checks the chain; libvmdk opens it for reading at the first
 * vcf_parent_read. CACHE (or NULL) holds links libvmdk opened before, which
 * are not opened again while their files are unchanged (link-cache.h). */
VcfParent *vcf_parent_open(const char *path, const char *confine_dir, VcfLinkCache *cache,
                           guint n_chains, GError **error);
void vcf_parent_free(VcfParent *parent);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfParent, vcf_parent_free)

/* Size of the disk in bytes. */
guint64 vcf_parent_get_size(const VcfParent *parent);
/* CID of the top link's descriptor (what a child's parentCID must equal). */
guint32 vcf_parent_get_cid(const VcfParent *parent);
/* Absolute paths of every file the chain reads, top link first: descriptors
 * and extent files. NULL-terminated, owned by PARENT. */
const char *const *vcf_parent_get_files(const VcfParent *parent);

/* EIO if a file of the chain was removed, replaced or modified since it
 * was opened (its inode, size or mtime moved): a VM run outside the mount
 * on a disk a clone reads, say. */
gboolean vcf_parent_check_unchanged(const VcfParent *parent, GError **error);

/* The chain described, top link first (VcfChainLink, see vmdk-chain.h). */
const GPtrArray *vcf_parent_get_links(const VcfParent *parent);
/* The realpath of the folder every file of the chain is in. */
const char *vcf_parent_get_confine(const VcfParent *parent);
/* The cache it was opened with (not a new reference), or NULL. */
VcfLinkCache *vcf_parent_get_cache(const VcfParent *parent);
/* How many libvmdk chains it may open to read in parallel. */
guint vcf_parent_get_n_chains(const VcfParent *parent);

/* Reads LEN bytes at OFFSET. Bytes past the end of the disk read as zeros.
 * Thread-safe. On failure: VCF_ERROR/EIO naming the disk and offset. */
gboolean vcf_parent_read(VcfParent *parent, void *buf, gsize len,
                         guint64 offset, GError **error);
