/* A store's writes: where a grain goes, its data, then its table entry
 * and sum (published only once the data is written, so that readers and
 * a crash never see an entry before its data); and grains copied in file
 * to file. The tables and sums reach the disk in vcf_sparse_sync. */
#include "config.h"
#include "sparse.h"
#include "sparse-private.h"
#include "fileutil.h"
#include "grain-sums.h"
#include "reflink.h"
#include "vcf-error.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

/* The first write of a session renews the CID and marks the store unclean,
 * durably, before any grain changes. */
static gboolean start_session(VcfSparse *s, GError **error)
{
    if (s->session_started)
        return TRUE;
    s->header.unclean_shutdown = 1;
    if (!vcf_sparse_write_new_cid(s, vcf_sparse_random_cid(), error)
        || !vcf_sparse_write_header(s, error) || !vcf_sparse_sync_fd(s, error))
        return FALSE;
    s->session_started = TRUE;
    return TRUE;
}

/* N new places back to back at the end, the first at *FIRST. Under meta. */
static gboolean reserve_places(VcfSparse *s, guint n, guint64 *first, GError **error)
{
    guint64 want = (guint64) n * GRAIN_SECTORS;
    if (s->next_sector + want > G_MAXUINT32) {
        g_set_error(error, VCF_ERROR, ENOSPC, "%s: store is full (2 TiB of grains)", s->path);
        return FALSE;
    }
    *first = s->next_sector;
    s->next_sector += want;
    s->fresh_from = MAX(s->fresh_from, s->next_sector);
    return TRUE;
}

/* Under meta: the session, and the grain's place: its own sector if the
 * store holds it (*STORED), else a new one at the end; *FRESH (may be
 * NULL) when that was never handed out before, so reads as zeros. */
static gboolean place_grain(VcfSparse *s, guint64 grain, gboolean *stored, guint64 *sector,
                            gboolean *fresh, GError **error)
{
    g_mutex_lock(&s->meta);
    *stored = vcf_sparse_grain_state(s, grain) == VCF_GRAIN_DATA;
    if (*stored)
        *sector = vcf_sparse_gte(s, grain);
    if (fresh != NULL)
        *fresh = !*stored && s->next_sector >= s->fresh_from;
    gboolean ok = start_session(s, error) && (*stored || reserve_places(s, 1, sector, error));
    g_mutex_unlock(&s->meta);
    return ok;
}

/* N new places from SECTOR whose data did not land: the last ones handed
 * out are handed out again, so writes retried on a full disk do not grow
 * the file a grain each time. Any others stay unused, pointed at by nothing. */
static void unplace(VcfSparse *s, guint64 sector, guint n)
{
    g_mutex_lock(&s->meta);
    if (s->next_sector == sector + (guint64) n * GRAIN_SECTORS)
        s->next_sector = sector;
    g_mutex_unlock(&s->meta);
}

/* GRAIN's data is at SECTOR (a new place unless STORED): its entry and
 * SUM go in. Under meta. */
static void set_entry(VcfSparse *s, guint64 grain, gboolean stored, guint64 sector, guint64 sum)
{
    if (!stored)
        vcf_sparse_set_gte(s, grain, (guint32)sector);
    vcf_grain_sums_set(s->sums, grain, sum);
    s->data_unsynced = TRUE;
}

/* The grain's data (BUF, whole) is at SECTOR: its entry and sum go in. */
static void publish_grain(VcfSparse *s, guint64 grain, gboolean stored, guint64 sector,
                          const void *buf)
{
    guint64 sum = vcf_grain_sum(buf, VCF_GRAIN_SIZE);
    g_mutex_lock(&s->meta);
    set_entry(s, grain, stored, sector, sum);
    g_mutex_unlock(&s->meta);
}

/* A stored grain whose rewrite in place failed part-way (out of space for
 * a hole it wrote into, an I/O error): its sum is made to match what the
 * file holds now (its old bytes, some new ones), as a torn write on a disk
 * would leave it, rather than fail every read of it from then on. */
static void resum_grain(VcfSparse *s, guint64 grain, guint64 sector)
{
    g_autofree guint8 *now = g_malloc(VCF_GRAIN_SIZE);
    if (vcf_pread_all(s->fd, now, VCF_GRAIN_SIZE, sector * SECTOR, s->path, NULL)
        != (gssize)VCF_GRAIN_SIZE)
        return;
    guint64 sum = vcf_grain_sum(now, VCF_GRAIN_SIZE);
    g_mutex_lock(&s->meta);
    vcf_grain_sums_set(s->sums, grain, sum);
    s->data_unsynced = TRUE;
    g_mutex_unlock(&s->meta);
}

/* A new grain's data in a place never used, which reads as zeros: its
 * zero blocks at either end are left unwritten (holes), so that a 4 KiB
 * write into a grain no layer below holds writes 4 KiB and a sector, not
 * 64 KiB. (Not fallocate: ext4 writes zeros around a write into an
 * unwritten extent.) A later write into a hole in place may then need
 * space and fail part-way: see resum_grain. The sector: the grain's last,
 * so that the file reaches the grain's end (a grain must lie inside it);
 * a write cannot shrink the file. */
#define ZERO_BLOCK 4096u
static gboolean write_fresh(VcfSparse *s, const guint8 *buf, guint64 sector, GError **error)
{
    static const guint8 zeros[SECTOR];
    gsize lo = 0, hi = VCF_GRAIN_SIZE;
    while (lo < hi && vcf_all_zero(buf + lo, ZERO_BLOCK))
        lo += ZERO_BLOCK;
    while (hi > lo && vcf_all_zero(buf + hi - ZERO_BLOCK, ZERO_BLOCK))
        hi -= ZERO_BLOCK;
    guint64 at = sector * SECTOR;
    if (hi < VCF_GRAIN_SIZE
        && !vcf_sparse_pwrite(s, zeros, SECTOR, at + VCF_GRAIN_SIZE - SECTOR, error))
        return FALSE;
    return lo == hi || vcf_sparse_pwrite(s, buf + lo, hi - lo, at + lo, error);
}

gboolean vcf_sparse_write_grain(VcfSparse *s, guint64 grain, const void *buf,
                                gsize from, gsize len, GError **error)
{
    g_return_val_if_fail(s->writable && grain < s->n_grains, FALSE);
    g_return_val_if_fail(from + len <= VCF_GRAIN_SIZE, FALSE);
    gboolean stored, fresh;
    guint64 sector;
    if (!place_grain(s, grain, &stored, &sector, &fresh, error))
        return FALSE;
    /* The data, unlocked: other grains are written meanwhile. A new grain
     * is found by readers only once its entry is set, after the data. */
    gboolean ok = stored ? vcf_sparse_pwrite(s, (const guint8 *)buf + from, len,
                                      sector * SECTOR + from, error)
        : fresh ? write_fresh(s, buf, sector, error)
        : vcf_sparse_pwrite(s, buf, VCF_GRAIN_SIZE, sector * SECTOR, error);
    if (!ok) {
        if (stored)
            resum_grain(s, grain, sector);
        else
            unplace(s, sector, 1);
        return FALSE;
    }
    publish_grain(s, grain, stored, sector, buf);
    return TRUE;
}

/* LEN bytes from SRC at FROM to the store at TO, in the file system where
 * it can (copy_file_range: reflinks on XFS and btrfs, server-side copies
 * on NFS 4.2 and CephFS). FALSE when it cannot; *ERRNUM then says why. */
static gboolean copy_range(VcfSparse *s, int src, guint64 from, guint64 to, gsize len,
                           int *errnum)
{
    loff_t in = (loff_t) from, out = (loff_t) to;
    while (len > 0) {
        ssize_t n = copy_file_range(src, &in, s->fd, &out, len, 0);
        if (n <= 0) {
            *errnum = n < 0 ? errno : EIO;
            return FALSE;
        }
        len -= (gsize) n;
    }
    return TRUE;
}

gboolean vcf_sparse_copy_grain(VcfSparse *s, guint64 grain, int src, guint64 at,
                               const void *buf, gboolean *offloaded, GError **error)
{
    *offloaded = FALSE;
    g_return_val_if_fail(s->writable && grain < s->n_grains, FALSE);
    /* Copied file to file only where that saves moving the bytes: on the
     * server (block sharing is vcf_sparse_share_grains'). */
    if (src < 0 || !s->server_copy || at % 4096 != 0
        || vcf_sparse_grain_state(s, grain) != VCF_GRAIN_ABSENT)
        return vcf_sparse_write_grain(s, grain, buf, 0, VCF_GRAIN_SIZE, error);
    gboolean stored;
    guint64 sector;
    if (!place_grain(s, grain, &stored, &sector, NULL, error))
        return FALSE;
    int e = 0;
    if (!copy_range(s, src, at, sector * SECTOR, VCF_GRAIN_SIZE, &e)) {
        unplace(s, sector, 1);
        if (e == ENOSPC || e == EDQUOT) {
            g_set_error(error, VCF_ERROR, ENOSPC, "%s: copying a grain in: %s", s->path,
                        g_strerror(e));
            return FALSE;
        }
        /* Another file system, or one that cannot: written as usual. */
        return vcf_sparse_write_grain(s, grain, buf, 0, VCF_GRAIN_SIZE, error);
    }
    publish_grain(s, grain, stored, sector, buf);
    *offloaded = TRUE;
    return TRUE;
}

/* The N grains cloned from SRC at AT to the store at TO, checked: on the
 * very blocks (their sums are then made at first read), or else, where the
 * file system does not say so (NFS, SMB, compressed extents), read back
 * and compared with the source, and summed here. SUMS gets N sums. */
static gboolean check_shared(VcfSparse *s, guint n, int src, guint64 at, guint64 to,
                             guint64 *sums, GError **error)
{
    guint64 len = (guint64) n * VCF_GRAIN_SIZE;
    if (vcf_same_blocks(src, at, s->fd, to, len) == VCF_BLOCKS_SAME) {
        for (guint i = 0; i < n; i++)
            sums[i] = VCF_GRAIN_SUM_UNREAD;
        return TRUE;
    }
    g_autofree guint8 *want = g_malloc(len);
    g_autofree guint8 *got = g_malloc(len);
    gssize a = vcf_pread_all(src, want, len, at, "the disk below", error);
    if (a < 0)
        return FALSE;
    gssize b = vcf_pread_all(s->fd, got, len, to, s->path, error);
    if (b < 0)
        return FALSE;
    memset(want + a, 0, len - (guint64) a);   /* past a file's end: zeros */
    memset(got + b, 0, len - (guint64) b);
    if (memcmp(want, got, len) != 0) {
        g_set_error(error, VCF_ERROR, EIO, "%s: %u grains cloned from the disk below do not "
                    "read back as their source", s->path, n);
        return FALSE;
    }
    for (guint i = 0; i < n; i++)
        sums[i] = vcf_grain_sum(got + (gsize) i * VCF_GRAIN_SIZE, VCF_GRAIN_SIZE);
    return TRUE;
}

gboolean vcf_sparse_share_grains(VcfSparse *s, guint64 grain, guint n, int src, guint64 at,
                                 guint64 *places, guint64 *sums, gboolean *shared,
                                 gboolean *never, GError **error)
{
    static const guint8 zeros[SECTOR];
    *shared = FALSE;
    *never = FALSE;
    g_return_val_if_fail(s->writable && n > 0 && grain + n <= s->n_grains, FALSE);
    /* N places back to back, at the end: the clone is one range. */
    guint64 first = 0;
    g_mutex_lock(&s->meta);
    gboolean ok = start_session(s, error) && reserve_places(s, n, &first, error);
    g_mutex_unlock(&s->meta);
    if (!ok)
        return FALSE;
    int e = 0;
    guint64 len = (guint64) n * VCF_GRAIN_SIZE, to = first * SECTOR;
    if (!vcf_clone_range(src, at, s->fd, to, len, &e)) {
        unplace(s, first, n);
        if (e == ENOSPC || e == EDQUOT) {
            g_set_error(error, VCF_ERROR, ENOSPC, "%s: sharing %u grains with the disk "
                        "below: %s", s->path, n, g_strerror(e));
            return FALSE;
        }
        /* Copied the usual way. Only some refusals are the file system's
         * for good: EINVAL (alignment) and EXDEV (another mount) are this
         * range's or this source's. */
        *never = e == EOPNOTSUPP || e == EPERM || e == EBADF;
        return TRUE;
    }
    /* Every grain must lie inside the file: a clone that ends in a hole
     * may not have moved its end (the last sector is ours, and zeros). On
     * a failure the places stay unused, pointed at by nothing. */
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        vcf_set_errno(error, errno, s->path);
        return FALSE;
    }
    if ((guint64) st.st_size < to + len
        && !vcf_sparse_pwrite(s, zeros, SECTOR, to + len - SECTOR, error))
        return FALSE;
    if (!check_shared(s, n, src, at, to, sums, error))
        return FALSE;
    for (guint i = 0; i < n; i++)
        places[i] = first + (guint64) i * GRAIN_SECTORS;
    *shared = TRUE;
    return TRUE;
}

gboolean vcf_sparse_publish_shared(VcfSparse *s, guint64 grain, guint64 place, guint64 sum)
{
    g_mutex_lock(&s->meta);
    gboolean absent = vcf_sparse_grain_state(s, grain) == VCF_GRAIN_ABSENT;
    if (absent)
        set_entry(s, grain, FALSE, place, sum);
    g_mutex_unlock(&s->meta);
    return absent;
}
