/* Block sharing between files (reflinks): cloning a range of one file into
 * another, and telling whether two ranges lie on the very same blocks.
 *
 * A full clone's copier uses them where the library's file system shares
 * blocks (XFS with reflink=1, btrfs, NFS 4.2 servers that clone): a range
 * cloned is not copied, so it is not read back either. The check of a
 * clone is that the copy's blocks are its source's blocks (FIEMAP), which
 * says more than a checksum of the two would. */
#pragma once
#include <glib.h>

/* Makes LEN bytes of DST at TO share the blocks of SRC at FROM (FICLONERANGE:
 * never a copy). FALSE with *ERRNUM when it cannot: EOPNOTSUPP, EXDEV or
 * EINVAL (not block-aligned, a file system that cannot share), ENOSPC... */
gboolean vcf_clone_range(int src, guint64 from, int dst, guint64 to, guint64 len, int *errnum);

typedef enum {
    VCF_BLOCKS_SAME,      /* every byte of both ranges maps to one block, or a hole in both */
    VCF_BLOCKS_DIFFERENT,
    VCF_BLOCKS_UNKNOWN,   /* the file system does not tell (no FIEMAP, delayed allocation) */
} VcfBlocks;

/* Whether LEN bytes of A at AT_A and of B at AT_B lie on the same blocks. */
VcfBlocks vcf_same_blocks(int a, guint64 at_a, int b, guint64 at_b, guint64 len);

/* Whether copy_file_range on FD's file system copies on the server (NFS,
 * CephFS, SMB): on a local one it moves the bytes through the kernel much
 * as a write does, only slower than a write of bytes already read. */
gboolean vcf_copies_server_side(int fd);
