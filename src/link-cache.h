/* What libvmdk found in one link of a disk chain (its CID, size, parent
 * and extents), kept for as long as the link's files stay unchanged, so
 * that libvmdk reads a link once and not at every clone and every open of
 * one. Opening a link's extent data costs libvmdk time in proportion to
 * the disk's size, not its data: 30 ms for an empty 1 TiB sparse disk,
 * which a clone's mkdir used to pay two or three times.
 *
 * A file counts as unchanged while its inode, size, mode, mtime and ctime
 * are: a write, a truncate, a rename over it or a chmod moves ctime. Facts
 * are only ever made from a link libvmdk opened whole, descriptor and
 * extent data, with each file's stat taken before libvmdk read it, so a
 * file that changed during that open is missed next time, never trusted;
 * and only when every file of the link had not changed for a while (the
 * settle time) before that stat, since a file's times move in clock ticks
 * and a second change within the tick of the first would not show.
 *
 * Only files on local file systems whose stat is the file's own (ext4,
 * XFS, btrfs, tmpfs, ZFS, F2FS) are kept: an NFS client's stat may be its
 * attribute cache's, stamped by another host's clock, and FAT's times
 * move in 2 s ticks. Elsewhere every link is opened by libvmdk each time.
 *
 * The cache belongs to the library (VcfLibrary, one per mount); its lock
 * only guards the table: files are stat'ed outside it. */
#pragma once
#include <glib.h>
#include <sys/stat.h>
#include "vmdk-chain.h"   /* VcfChainLink, VcfLinkCache */

/* One link as libvmdk opened it. Immutable once made; shared by
 * reference (vcf_link_facts_ref/unref). */
typedef struct {
    VcfChainLink *desc;      /* path (resolved), single, size, extents */
    guint32 cid;
    guint32 parent_cid;      /* 0xffffffff for a base */
    char *parent_name;       /* parentFileNameHint joined to desc->path's
                              * folder, not resolved; NULL for a base */
    /* The names the descriptor gives its extents, joined to its folder, in
     * extent order (NULL entries for a single-file disk). */
    GPtrArray *extent_names;
    /* stat of desc->path, then of each extent file, as taken before
     * libvmdk read them, from stat_at on (g_get_real_time). */
    GArray *stats;
    gint64 stat_at;
} VcfLinkFacts;

VcfLinkFacts *vcf_link_facts_new(void);
VcfLinkFacts *vcf_link_facts_ref(VcfLinkFacts *facts);
void vcf_link_facts_unref(VcfLinkFacts *facts);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfLinkFacts, vcf_link_facts_unref)

/* Keeps links whose files last changed at least SETTLE_US before they
 * are stored (VCF_LINK_SETTLE_US; tests may pass 0). */
#define VCF_LINK_SETTLE_US G_USEC_PER_SEC
VcfLinkCache *vcf_link_cache_new(gint64 settle_us);
VcfLinkCache *vcf_link_cache_ref(VcfLinkCache *cache);
void vcf_link_cache_unref(VcfLinkCache *cache);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfLinkCache, vcf_link_cache_unref)

/* The facts of the link at DISK (resolved) as found inside CONFINE_REAL,
 * if every file of it is still what it was and every extent name still
 * resolves to the same file; else NULL. A new reference. */
VcfLinkFacts *vcf_link_cache_lookup(VcfLinkCache *cache, const char *disk,
                                    const char *confine_real);
/* Keeps FACTS (a reference is taken) for the link at FACTS->desc->path
 * inside CONFINE_REAL, in place of what was kept for it, unless a file of
 * it changed within the settle time. */
void vcf_link_cache_store(VcfLinkCache *cache, const char *confine_real,
                          VcfLinkFacts *facts);
/* How many links libvmdk opened whole for it, and how many lookups it
 * answered (0 and 0 for a NULL cache): for tests and the log. */
void vcf_link_cache_counts(VcfLinkCache *cache, guint64 *stored, guint64 *hits);
