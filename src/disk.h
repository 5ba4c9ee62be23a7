/* The composed disk a clone serves: its own grains where the store has
 * them, the parent's bytes everywhere else. Writes are copy-on-write: a
 * grain the store does not own yet is filled from the parent first.
 *
 * Thread-safe: reads and writes run at once, one grain at a time per grain
 * (a stripe lock); sync runs alone. */
#pragma once
#include <glib.h>
#include "parent.h"
#include "sparse.h"

typedef struct VcfDisk VcfDisk;

/* Takes ownership of STORE and PARENT (PARENT may be NULL: then bytes the
 * store lacks read as zeros). A parent whose CID is not the store's
 * parentCID, or whose size differs, is EIO: the clone is broken, and
 * serving it would give wrong data. */
VcfDisk *vcf_disk_new(VcfSparse *store, VcfParent *parent, GError **error);
/* Syncs and closes the store; returns FALSE if that failed (freed anyway). */
gboolean vcf_disk_close(VcfDisk *disk, GError **error);

/* Frees without syncing anything: what a crash leaves behind (for tests). */
void vcf_disk_abandon(VcfDisk *disk);

guint64 vcf_disk_get_size(const VcfDisk *disk);
VcfSparse *vcf_disk_get_store(VcfDisk *disk);

/* Reads or writes [offset, offset + len), which must lie inside the disk. */
gboolean vcf_disk_read(VcfDisk *disk, void *buf, gsize len, guint64 offset,
                       GError **error);
gboolean vcf_disk_write(VcfDisk *disk, const void *buf, gsize len,
                        guint64 offset, GError **error);
/* SEEK_DATA (DATA) or SEEK_HOLE from OFFSET, in 64 KiB units: a hole is
 * where neither the store nor any layer below holds a grain (see
 * grain-map.h). ENXIO past the end, or for no data after OFFSET. */
gboolean vcf_disk_seek(VcfDisk *disk, guint64 offset, gboolean data, guint64 *out,
                       GError **error);
/* Makes every write so far durable. */
gboolean vcf_disk_sync(VcfDisk *disk, GError **error);
