/* The composed disk a clone serves: its own grains where the store has
 * them, the parent's bytes everywhere else. Writes are copy-on-write: a
 * grain the store does not own yet is filled from the parent first.
 *
 * Thread-safe: reads and writes run at once, one grain at a time per grain
 * (a stripe lock); sync and freeze run alone. */
#pragma once
#include <glib.h>
#include "descriptor.h"
#include "parent.h"
#include "sparse.h"
#include "stack.h"

typedef struct VcfDisk VcfDisk;

/* Takes ownership of STORE and PARENT (PARENT may be NULL: then bytes the
 * store lacks read as zeros). A parent whose CID is not the store's
 * parentCID, or whose size differs, is EIO: the clone is broken, and
 * serving it would give wrong data. */
VcfDisk *vcf_disk_new(VcfSparse *store, VcfParent *parent, GError **error);
/* Opens the store at PATH and the chain its parentFileNameHint names
 * (relative to the store's folder), every file of it inside CONFINE; the
 * same checks. CACHE and N_CHAINS as for vcf_parent_open. */
VcfDisk *vcf_disk_open(const char *path, const char *confine, VcfLinkCache *cache,
                       guint n_chains, GError **error);
/* The same for a store made just now on PARENT, opened by its maker
 * (vcf_parent_open with the same CONFINE and N_CHAINS; its CACHE is kept
 * for reopening): the chain is not opened again. Takes ownership of PARENT, even on failure. */
VcfDisk *vcf_disk_open_over(const char *path, VcfParent *parent, GError **error);
/* Syncs and closes the store; returns FALSE if that failed (freed anyway). */
gboolean vcf_disk_close(VcfDisk *disk, GError **error);

/* Frees without syncing anything: what a crash leaves behind (for tests). */
void vcf_disk_abandon(VcfDisk *disk);

guint64 vcf_disk_get_size(const VcfDisk *disk);
/* When the guest last wrote the disk, in µs since the epoch (before any
 * write since open: the store's mtime). A full clone's copy and syncs do
 * not move it: it is the disk's time, as backup tools see it. */
gint64 vcf_disk_get_written_at(VcfDisk *disk);
/* The store's file: the writable top, whatever freezes there were. */
const char *vcf_disk_get_path(const VcfDisk *disk);
/* The store's CID and geometry now, and the space its frozen layers use. */
gboolean vcf_disk_describe(VcfDisk *disk, guint32 *cid, VcfGeometry *geometry,
                           guint64 *frozen_bytes, GError **error);
/* Adds the realpaths of every file the layers below read to FILES (char*). */
void vcf_disk_add_parent_files(VcfDisk *disk, GPtrArray *files);

/* Reads or writes [offset, offset + len), which must lie inside the disk. */
gboolean vcf_disk_read(VcfDisk *disk, void *buf, gsize len, guint64 offset,
                       GError **error);
gboolean vcf_disk_write(VcfDisk *disk, const void *buf, gsize len,
                        guint64 offset, GError **error);
/* Serves a read of [OFFSET, OFFSET + LEN) without reading it here, when
 * all of it lies as it is in the layers' files and none of it in the
 * store (see vcf_stack_map_range): FUNC gets its runs (at most MAX, in
 * RUNS) and replies with them, while the disk keeps its files open, and
 * *SERVED is what it returns. FALSE: read it with vcf_disk_read. */
typedef gboolean (*VcfDiskRunsFunc)(const VcfRun *runs, guint n, gpointer user_data);
gboolean vcf_disk_read_runs(VcfDisk *disk, gsize len, guint64 offset, VcfRun *runs,
                            guint max, VcfDiskRunsFunc func, gpointer user_data,
                            gboolean *served, GError **error);
/* SEEK_DATA (DATA) or SEEK_HOLE from OFFSET, in 64 KiB units: a hole is
 * where neither the store nor any layer below holds a grain (see
 * grain-map.h). ENXIO past the end, or for no data after OFFSET. */
gboolean vcf_disk_seek(VcfDisk *disk, guint64 offset, gboolean data, guint64 *out,
                       GError **error);
/* Makes every write so far durable. */
gboolean vcf_disk_sync(VcfDisk *disk, GError **error);

/* Freezes the store, disk INDEX of its clone (freeze.h), and goes on in the
 * new empty delta above it. For readers and writers it is one step: they
 * wait meanwhile, for a sync, a few renames and the opening of the chain.
 * *LAYER gets the file a clone of this disk sits on: the frozen layer, or,
 * when the store holds nothing (nothing written since it was made or last
 * frozen), the disk it sits on itself, and no layer is made. A failure
 * leaves the store as it was, or, if it cannot be opened again, the disk
 * broken: every access EIO, saying why. */
gboolean vcf_disk_freeze(VcfDisk *disk, guint index, char **layer, GError **error);

/* ---- full clones (disk-copy.c) ---- */
/* Units (VCF_GRAIN_SIZE bytes each) of the disk. */
guint64 vcf_disk_get_units(const VcfDisk *disk);
/* A count of the guest's reads and writes so far (it wraps): a copier
 * that sees it move gives way. */
guint vcf_disk_guest_ops(VcfDisk *disk);
/* Writes the store's data out while guests go on (vcf_sparse_flush_data):
 * the vcf_disk_sync after it holds them up for less. */
gboolean vcf_disk_flush_data(VcfDisk *disk, GError **error);
/* Starts writing the store's data out, without waiting: so that a copy's
 * writes reach the device while it reads on, and its step's sync is short. */
void vcf_disk_start_writeback(VcfDisk *disk);
/* Whether the disk still reads from layers below its store. */
gboolean vcf_disk_has_parent(VcfDisk *disk);
/* How many units of [FROM, TO) some layer below holds: what a full copy
 * has to look at (0 once the disk has no parent). */
gboolean vcf_disk_count_to_copy(VcfDisk *disk, guint64 from, guint64 to, guint64 *units,
                                GError **error);
/* Copies units [FIRST, FIRST + N) (N at most VCF_COPY_RUN) into the store
 * where the store lacks them and a layer below holds them (*HELD counts
 * those), unless their bytes are all zeros; each copy is read back through
 * the store, its xxh3 sum checked, and compared with its source (EIO if it
 * differs). A unit the store got meanwhile, by a guest write, is left as it
 * is. Where the file system shares blocks, units that lie back to back in
 * one file below are cloned instead, not read (see disk-copy.c). *COPIED:
 * bytes the store got. Not durable until vcf_disk_sync. */
#define VCF_COPY_RUN 16u
gboolean vcf_disk_copy_units(VcfDisk *disk, guint64 first, guint n, guint *held, gsize *copied,
                             GError **error);
/* Checks that every unit of [FROM, TO) held below is in the store or reads
 * as zeros: EIO naming the first that is not. Guests go on meanwhile (their
 * writes only add to the store); the caller keeps freezes away. */
gboolean vcf_disk_check_copied(VcfDisk *disk, guint64 from, guint64 to, GError **error);
/* EIO once a file of the layers below was removed, replaced or modified
 * since it was opened (vcf_parent_check_unchanged): the store is synced
 * (the guest's writes are its own) and the disk broken, every access EIO
 * from then on; *FOUND (may be NULL) is TRUE for the call that found it.
 * EIO too for a disk broken before, for this or another reason. */
gboolean vcf_disk_check_parent(VcfDisk *disk, gboolean *found, GError **error);
/* Drops the layers below for good, once checked as above: syncs, and
 * rewrites the store as a standalone disk. */
gboolean vcf_disk_promote(VcfDisk *disk, GError **error);
