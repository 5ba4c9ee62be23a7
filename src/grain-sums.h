/* xxh3 checksums of a store's grains, kept beside it in NAME.vmdk.xxh.
 *
 * Layout: a 4 KiB header (magic, version, grain size, grain count, and the
 * store CID the sums were last made consistent with), then one 64-bit
 * little-endian xxh3 per guest grain, indexed by grain number. A sum is only
 * meaningful for a grain the store's grain table says is allocated. */
#pragma once
#include <glib.h>

typedef struct VcfGrainSums VcfGrainSums;

VcfGrainSums *vcf_grain_sums_create(const char *path, guint64 n_grains,
                                    guint32 cid, GError **error);
/* Opens PATH read-write; a header that does not match N_GRAINS is EINVAL. */
VcfGrainSums *vcf_grain_sums_open(const char *path, guint64 n_grains,
                                  GError **error);
void vcf_grain_sums_free(VcfGrainSums *sums);
/* For reading a frozen layer's sums: PATH opened read-only, its header
 * checked as above; *CID gets the CID it was made consistent with. The
 * sum of grain G is the 8 bytes at VCF_GRAIN_SUMS_AT(G). -1 on error
 * (ENOENT when there is no such file). */
int vcf_grain_sums_open_read_only(const char *path, guint64 n_grains, guint32 *cid,
                                  GError **error);
#define VCF_GRAIN_SUMS_AT(grain) (4096u + (guint64)(grain) * 8)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfGrainSums, vcf_grain_sums_free)

/* The store CID recorded when the sums were last made durable. */
guint32 vcf_grain_sums_get_cid(const VcfGrainSums *sums);
void vcf_grain_sums_set_cid(VcfGrainSums *sums, guint32 cid);

guint64 vcf_grain_sums_get(const VcfGrainSums *sums, guint64 grain);
void vcf_grain_sums_set(VcfGrainSums *sums, guint64 grain, guint64 sum);
/* Writes what changed and makes it durable (fdatasync). */
gboolean vcf_grain_sums_sync(VcfGrainSums *sums, GError **error);

/* The sum recorded for a grain that shares its blocks with the file it was
 * cloned from (reflink.h) and was never read here: it is made at the
 * grain's first read. A real sum equal to it (2^-64) only skips one check. */
#define VCF_GRAIN_SUM_UNREAD G_GUINT64_CONSTANT(0x5643462d756e7264)

/* The checksum of one grain's bytes. */
guint64 vcf_grain_sum(const void *data, gsize len);
