/* A fixed-size table kept in memory and mirrored into a region of a file:
 * callers change entries in memory and mark them dirty; flush writes only
 * the dirty 4 KiB pages back. Used for the grain tables of the store and for
 * the grain checksums. Not thread-safe: the caller serialises changes. */
#pragma once
#include <glib.h>

typedef struct VcfTable VcfTable;

/* A table of SIZE bytes at byte OFFSET of FD (FD stays owned by the caller).
 * With LOAD, reads the region (bytes past the end of the file read as zero). */
VcfTable *vcf_table_new(int fd, guint64 offset, gsize size, gboolean load,
                        const char *file_name, GError **error);
void vcf_table_free(VcfTable *table);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfTable, vcf_table_free)

/* The table's bytes; writes through this pointer must be followed by
 * vcf_table_mark_dirty. */
guint8 *vcf_table_data(VcfTable *table);
gsize vcf_table_size(const VcfTable *table);
/* The parts of the table LOAD read from the file, *N [start, end) byte
 * pairs in order; every other byte was a hole and is zero, so a scan of
 * what the file holds need look nowhere else. */
const gsize *vcf_table_loaded(const VcfTable *table, guint *n);
void vcf_table_mark_dirty(VcfTable *table, gsize offset, gsize len);
gboolean vcf_table_is_dirty(const VcfTable *table);
/* Writes the dirty pages (no fsync: the caller orders and syncs). */
gboolean vcf_table_write_dirty(VcfTable *table, GError **error);
