#include "config.h"
#include "reflink.h"

#include <errno.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>

gboolean vcf_clone_range(int src, guint64 from, int dst, guint64 to, guint64 len, int *errnum)
{
    struct file_clone_range r = { .src_fd = src, .src_offset = from, .src_length = len,
                                  .dest_offset = to };
    if (ioctl(dst, FICLONERANGE, &r) == 0)
        return TRUE;
    *errnum = errno == ENOTTY ? EOPNOTSUPP : errno;
    return FALSE;
}

/* A run of the range's map: LEN bytes from OFF (relative to the range's
 * start) on the device at PHYS. Holes are not listed, nor are unwritten
 * extents: both read as zeros, and a clone makes the one of the other. */
typedef struct {
    guint64 off, phys, len;
} Piece;

#define BATCH 64
#define UNKNOWN_FLAGS (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_ENCODED \
                       | FIEMAP_EXTENT_DATA_ENCRYPTED | FIEMAP_EXTENT_NOT_ALIGNED \
                       | FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_DATA_TAIL)

/* The map of LEN bytes of FD at AT into PIECES, pieces that go on from
 * each other (on the device too) merged, so that two ranges on the same
 * blocks give the same list however the file system splits its extents.
 * FALSE when the file system cannot say. */
static gboolean map_range(int fd, guint64 at, guint64 len, GArray *pieces)
{
    gsize size = sizeof(struct fiemap) + BATCH * sizeof(struct fiemap_extent);
    g_autofree struct fiemap *fm = g_malloc(size);
    guint64 pos = at, end = at + len;
    while (pos < end) {
        memset(fm, 0, size);
        fm->fm_start = pos;
        fm->fm_length = end - pos;
        fm->fm_extent_count = BATCH;
        if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0)
            return FALSE;
        if (fm->fm_mapped_extents == 0)
            break;   /* a hole to the end */
        gboolean last = FALSE;
        for (guint i = 0; i < fm->fm_mapped_extents; i++) {
            const struct fiemap_extent *e = &fm->fm_extents[i];
            last |= (e->fe_flags & FIEMAP_EXTENT_LAST) != 0;
            guint64 lo = MAX(e->fe_logical, at), hi = MIN(e->fe_logical + e->fe_length, end);
            if (hi <= lo || (e->fe_flags & FIEMAP_EXTENT_UNWRITTEN))
                continue;
            if (e->fe_flags & UNKNOWN_FLAGS)
                return FALSE;
            Piece p = { lo - at, e->fe_physical + (lo - e->fe_logical), hi - lo };
            Piece *q = pieces->len > 0 ? &g_array_index(pieces, Piece, pieces->len - 1) : NULL;
            if (q != NULL && q->off + q->len == p.off && q->phys + q->len == p.phys)
                q->len += p.len;
            else
                g_array_append_val(pieces, p);
        }
        const struct fiemap_extent *e = &fm->fm_extents[fm->fm_mapped_extents - 1];
        if (last || e->fe_logical + e->fe_length <= pos)
            break;
        pos = e->fe_logical + e->fe_length;
    }
    return TRUE;
}

VcfBlocks vcf_same_blocks(int a, guint64 at_a, int b, guint64 at_b, guint64 len)
{
    g_autoptr(GArray) pa = g_array_new(FALSE, FALSE, sizeof(Piece));
    g_autoptr(GArray) pb = g_array_new(FALSE, FALSE, sizeof(Piece));
    if (!map_range(a, at_a, len, pa) || !map_range(b, at_b, len, pb))
        return VCF_BLOCKS_UNKNOWN;
    if (pa->len != pb->len)
        return VCF_BLOCKS_DIFFERENT;
    for (guint i = 0; i < pa->len; i++) {
        const Piece *x = &g_array_index(pa, Piece, i), *y = &g_array_index(pb, Piece, i);
        if (x->off != y->off || x->len != y->len || x->phys != y->phys)
            return VCF_BLOCKS_DIFFERENT;
    }
    return VCF_BLOCKS_SAME;
}

gboolean vcf_copies_server_side(int fd)
{
    struct statfs st;
    if (fstatfs(fd, &st) < 0)
        return FALSE;
    switch ((guint32) st.f_type) {
    case 0x6969u:       /* NFS */
    case 0x00c36400u:   /* CephFS */
    case 0xfe534d42u:   /* SMB2 */
    case 0xff534d42u:   /* CIFS */
        return TRUE;
    default:
        return FALSE;
    }
}
