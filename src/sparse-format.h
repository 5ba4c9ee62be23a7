/* The hosted sparse extent format (VMware's "monolithicSparse" file), as
 * far as more than one file needs it: the header, the embedded descriptor's
 * text, and a probe that reads a VMware-made extent's tables. */
#pragma once
#include <glib.h>
#include "descriptor.h"

#define SECTOR 512u
#define GRAIN_SECTORS (VCF_GRAIN_SIZE / SECTOR)
#define GTES_PER_GT 512u
#define GT_SECTORS (GTES_PER_GT * 4 / SECTOR)
#define DESC_SECTOR 1u
#define DESC_SECTORS 20u
#define MAX_DESC_SECTORS 2048u
/* Grain table entries are 32-bit sector numbers, so a sparse extent file
 * (and the disk it stores) stays within 2 TiB. */
#define MAX_CAPACITY (G_GUINT64_CONSTANT(2) << 40)

#define FLAG_NL_DETECT (1u << 0)
#define FLAG_RGD (1u << 1)
#define FLAG_ZERO_GRAIN (1u << 2)
#define FLAG_COMPRESSED (1u << 16)
#define FLAG_MARKERS (1u << 17)

/* VMware's SparseExtentHeader, little-endian, 512 bytes. */
typedef struct __attribute__((packed)) {
    guint32 magic;            /* "KDMV" */
    guint32 version;
    guint32 flags;
    guint64 capacity;         /* sectors */
    guint64 grain_size;       /* sectors */
    guint64 desc_offset;      /* sectors */
    guint64 desc_size;        /* sectors */
    guint32 gtes_per_gt;
    guint64 rgd_offset;
    guint64 gd_offset;
    guint64 overhead;         /* sectors before the first grain */
    guint8 unclean_shutdown;
    char nl_single, nl_non, nl_double1, nl_double2;
    guint16 compress_algorithm;
    guint8 pad[433];
} VcfSparseHeader;
G_STATIC_ASSERT(sizeof(VcfSparseHeader) == 512);

#define VMDK_MAGIC 0x564d444bu

/* To and from little-endian: the conversion is its own inverse. */
void vcf_sparse_header_to_le(const VcfSparseHeader *in, VcfSparseHeader *out);
/* The embedded descriptor of a new extent. */
char *vcf_sparse_descriptor_text(guint32 cid, guint32 parent_cid, const char *parent_hint,
                                 guint64 sectors, const char *extent_name,
                                 const VcfGeometry *geometry);
/* KEY's value in descriptor TEXT as a CID: 1 to 8 hex digits. */
gboolean vcf_sparse_parse_cid(const char *text, const char *key, guint32 *out);
/* Calls FUNC (when not NULL) for every grain the extent at PATH (ours or VMware's, no
 * checksums needed) holds, data or zeroed, with its table entry, in order,
 * until FUNC returns FALSE; sets its *CAPACITY (bytes) and *GRAIN_SECTORS.
 * EINVAL if it is not a hosted sparse extent. */
typedef gboolean (*VcfGrainFunc)(guint64 grain, guint32 gte, gpointer data);
gboolean vcf_sparse_extent_each_grain(const char *path, VcfGrainFunc func, gpointer data,
                                      guint64 *capacity, guint64 *grain_sectors,
                                      GError **error);
/* Whether the extent at PATH (ours or VMware's, no checksums needed)
 * holds any grain: *HAS_DATA. EINVAL if it is not a hosted sparse extent. */
gboolean vcf_sparse_extent_has_data(const char *path, gboolean *has_data, GError **error);
/* Whether the extent at PATH has zeroed grains (entry 1 with the header's
 * zeroed-grain flag), which libvmdk 20200926 reads as the sector entry 1
 * points to: *ANY. EINVAL if it is not a hosted sparse extent. */
gboolean vcf_sparse_extent_has_zeroed_grains(const char *path, gboolean *any, GError **error);
