/* The clone's store: a hosted sparse VMDK extent (VMware's "monolithicSparse"
 * delta) with 64 KiB grains, written by our own code so that qemu-img,
 * libvmdk and VMware read it with no vmclonefs running.
 *
 * ID spaces, and how they map:
 *   guest offset   byte offset in the virtual disk, 0 .. capacity
 *   grain          guest offset / VCF_GRAIN_SIZE
 *   GD index       grain / 512: which grain table (each covers 32 MiB)
 *   GT slot        grain % 512: the entry in that table
 *   file sector    what GD and GT entries hold: a 512-byte sector of the
 *                  store file; 0 in a GT entry means "not in this delta,
 *                  read the parent"
 * We lay every grain table out back to back right after the grain
 * directory, so the GT entry of grain G sits at byte gt_start + 4 * G and
 * the whole set of tables is one flat array in memory.
 *
 * Crash safety: grain data and checksums are written first; grain table
 * entries stay in memory until vcf_sparse_sync(), which makes the data
 * durable before it writes the entries that point to it. A crash therefore
 * leaves every entry on disk pointing at complete data. The header's
 * uncleanShutdown flag is set while the store has unsynced writes so that
 * the next open re-derives checksums of grains rewritten in place.
 *
 * Threads: reads and writes of different grains may run at once; the
 * caller (disk.c) keeps those of one grain apart, and keeps sync, open and
 * close apart from everything. */
#pragma once
#include <glib.h>
#include "descriptor.h"

#define VCF_GRAIN_SIZE 65536u
#define VCF_CID_NONE 0xffffffffu

typedef struct VcfSparse VcfSparse;

typedef struct {
    guint64 capacity;          /* bytes; rounded up to a 512-byte sector */
    guint32 parent_cid;        /* VCF_CID_NONE for a disk with no parent */
    const char *parent_hint;   /* parentFileNameHint, NULL for none */
    const VcfGeometry *geometry; /* ddb adapter and geometry; NULL: lsilogic's */
    const char *extent_name;   /* the extent's file name in the embedded
                                * descriptor; NULL: the file's own */
} VcfSparseParams;

typedef enum {
    VCF_GRAIN_ABSENT,   /* not in this delta: the parent's bytes */
    VCF_GRAIN_ZERO,     /* a zeroed grain (GT entry 1 with the zero-grain flag) */
    VCF_GRAIN_DATA,     /* stored here */
} VcfGrainState;

/* Creates PATH (which must not exist) and PATH.xxh, durable on return. */
VcfSparse *vcf_sparse_create(const char *path, const VcfSparseParams *params,
                             GError **error);
/* Creates an empty delta for a VM's own use (VMware writes it, not us):
 * no checksum file. Durable on return. */
gboolean vcf_sparse_create_extent(const char *path, const VcfSparseParams *params,
                                  GError **error);
/* Opens a store. Malformed headers, descriptors and tables are EINVAL with a
 * message naming the file; checksums are re-derived after an unclean
 * shutdown (see vcf_sparse_get_recovered_grains). */
VcfSparse *vcf_sparse_open(const char *path, gboolean writable, GError **error);
/* The adapter type and BIOS geometry its descriptor gives the disk. */
void vcf_sparse_get_geometry(const VcfSparse *sparse, VcfGeometry *geometry);
/* Syncs, clears the unclean flag and closes. Errors are reported, the
 * store is freed either way. */
gboolean vcf_sparse_close(VcfSparse *sparse, GError **error);
/* Frees without syncing (what a crash would leave, for tests). */
void vcf_sparse_free(VcfSparse *sparse);

const char *vcf_sparse_get_path(const VcfSparse *sparse);
guint64 vcf_sparse_get_capacity(const VcfSparse *sparse);
guint32 vcf_sparse_get_cid(const VcfSparse *sparse);
guint32 vcf_sparse_get_parent_cid(const VcfSparse *sparse);
const char *vcf_sparse_get_parent_hint(const VcfSparse *sparse);
/* Grains whose checksums open re-derived after an unclean shutdown. */
guint64 vcf_sparse_get_recovered_grains(const VcfSparse *sparse);
/* Grains stored in this delta. */
guint64 vcf_sparse_count_grains(const VcfSparse *sparse);
/* TRUE if no grain table entry is set: no grain, zeroed or stored. */
gboolean vcf_sparse_is_empty(const VcfSparse *sparse);

VcfGrainState vcf_sparse_grain_state(const VcfSparse *sparse, guint64 grain);
/* Stores new grain GRAIN, whose bytes BUF (VCF_GRAIN_SIZE) lie in file SRC
 * at AT, by copying them file to file where the file system can
 * (*OFFLOADED: reflinked blocks on XFS and btrfs, a server-side copy on
 * NFS 4.2 and CephFS); else, and with SRC -1, writes BUF. Its checksum is
 * BUF's. The caller keeps other writers of GRAIN away. */
gboolean vcf_sparse_copy_grain(VcfSparse *sparse, guint64 grain, int src, guint64 at,
                               const void *buf, gboolean *offloaded, GError **error);
/* Places N new grains GRAIN .. GRAIN + N - 1 back to back and makes their
 * data share the blocks of N grains of file SRC at AT (reflink.h), nothing
 * copied. Checked: on those very blocks where the file system tells (SUMS,
 * N of them, then say VCF_GRAIN_SUM_UNREAD), else read back and compared
 * with SRC (SUMS their sums); EIO when they differ. *SHARED: done, each
 * grain's place in PLACES (N of them), and each grain is then published
 * with vcf_sparse_publish_shared. Not *SHARED, and no error, where the file
 * system cannot share them, *NEVER too when it shares no blocks at all.
 * ENOSPC when it is full. */
gboolean vcf_sparse_share_grains(VcfSparse *sparse, guint64 grain, guint n, int src,
                                 guint64 at, guint64 *places, guint64 *sums,
                                 gboolean *shared, gboolean *never, GError **error);
/* Points GRAIN's entry at PLACE (from vcf_sparse_share_grains), with SUM,
 * if the store still lacks it: FALSE when a write got there first (its
 * place then stays unused). The caller keeps other writers of GRAIN away. */
gboolean vcf_sparse_publish_shared(VcfSparse *sparse, guint64 grain, guint64 place,
                                   guint64 sum);
/* Starts writing the data out and returns (sync_file_range): not a
 * barrier, only an early start for a later vcf_sparse_flush_data. */
void vcf_sparse_start_writeback(VcfSparse *sparse);
/* Writes the grains' data out (fdatasync) while writers go on, so that the
 * vcf_sparse_sync after it, which runs alone, has little left to write.
 * It makes nothing durable that sync would not. */
gboolean vcf_sparse_flush_data(VcfSparse *sparse, GError **error);
/* Makes the store a standalone disk: no parentFileNameHint, parentCID
 * ffffffff (see sparse-standalone.c for why a crash at any point leaves a
 * valid store). Every grain the parent held must be in the store, durable,
 * before: the bytes below stop counting at once. */
gboolean vcf_sparse_make_standalone(VcfSparse *sparse, GError **error);
/* Reads stored grain GRAIN (VCF_GRAIN_SIZE bytes) and checks its checksum:
 * a mismatch or a grain past the end of the file is EIO naming file, grain
 * and byte offset. */
gboolean vcf_sparse_read_grain(VcfSparse *sparse, guint64 grain, void *buf,
                               GError **error);
/* Stores grain GRAIN whose full new contents are BUF. Only bytes
 * [from, from + len) changed: a grain already stored is rewritten in place
 * for that range only; a new grain is appended whole. */
gboolean vcf_sparse_write_grain(VcfSparse *sparse, guint64 grain,
                                const void *buf, gsize from, gsize len,
                                GError **error);
/* Names NAME (a file name in the store's folder) as the extent in the
 * embedded descriptor, durably: libvmdk opens a single-file disk's extent
 * by that name, so a renamed store must say its new one. */
gboolean vcf_sparse_set_extent_name(VcfSparse *sparse, const char *name, GError **error);
/* The extent's file name the embedded descriptor gives now (NULL if none). */
char *vcf_sparse_get_extent_name(const VcfSparse *sparse);
/* Makes every write so far durable: data and checksums, then tables. */
gboolean vcf_sparse_sync(VcfSparse *sparse, GError **error);
