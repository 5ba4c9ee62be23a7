/* Opening and validating a VMware disk chain through libvmdk: every link
 * from the top disk down to its base, each with its extent files, every
 * CID link checked. A disk libvmdk refuses is refused.
 *
 * Opening also describes the chain (VcfChainLink: each link's files and
 * extents) so that disk layers can read the formats we read ourselves with
 * their own code (see layer.h); libvmdk stays the reader of the others. */
#pragma once
#include <glib.h>
#include <libvmdk.h>

typedef enum {
    VCF_EXTENT_FLAT,         /* a byte range of a file */
    VCF_EXTENT_SPARSE,       /* hosted sparse (KDMV), stream-optimized too */
    VCF_EXTENT_VMFS_FLAT,    /* as flat */
    VCF_EXTENT_VMFS_SPARSE,  /* COWD: libvmdk reads it */
} VcfExtentKind;

typedef struct {
    VcfExtentKind kind;
    char *path;              /* resolved extent file */
    guint64 start;           /* its first byte in the disk */
    guint64 size;            /* bytes of the disk it covers */
    guint64 file_offset;     /* bytes: where a flat extent starts in PATH */
    /* libvmdk 20200926 (and qemu-img 7.2) read this extent wrong: a flat
     * one at an offset in its file, a sparse one that starts inside a
     * grain of its own. Our readers serve both right. */
    gboolean misread;
} VcfChainExtent;

typedef struct {
    char *path;              /* resolved descriptor or single-file sparse disk */
    gboolean single;         /* PATH is itself the one sparse extent */
    guint64 size;            /* bytes */
    GArray *extents;         /* VcfChainExtent, in disk order */
} VcfChainLink;

void vcf_chain_link_free(VcfChainLink *link);

/* One link's libvmdk handle and the pool of its extent files. The pool is
 * ours, not libvmdk's (see vmdk-chain.c), so it outlives the handle. */
typedef struct {
    libvmdk_handle_t *handle;
    libbfio_pool_t *pool;
    /* A descriptor we converted to UTF-8, and the memory handle libvmdk
     * read it through; kept while the handle lives. */
    libbfio_handle_t *text_io;
    char *text;
} VcfVmdkLink;

typedef struct {
    GMutex lock;             /* held while a reader uses this chain */
    VcfVmdkLink *links;      /* top first: links[i + 1] is the parent of links[i] */
    guint n_links;
} VcfVmdkChain;

typedef struct VcfLinkCache VcfLinkCache;

/* Opens TOP (resolved) and its parents down to the base into CHAIN (its
 * lock untouched), each link with a libvmdk handle set on its parent's.
 * With CHAIN NULL it only checks the chain: each link is opened with
 * libvmdk and closed again, or, when CACHE (which may be NULL) holds it
 * with its files unchanged, not opened at all (link-cache.h). Links
 * libvmdk opened are kept in CACHE. FILES, when not NULL, gets every file
 * read, top first, and STATS (when FILES and it are not NULL) each one's
 * stat as taken before libvmdk first read it; LINKS, when not NULL, a
 * VcfChainLink for every link, top first. Errors as vcf_parent_open's. */
gboolean vcf_vmdk_chain_open(VcfVmdkChain *chain, const char *top, const char *confine_real,
                             VcfLinkCache *cache, GPtrArray *files, GArray *stats,
                             GPtrArray *links, guint64 *size_out, guint32 *cid_out,
                             GError **error);
void vcf_vmdk_chain_clear(VcfVmdkChain *chain);
