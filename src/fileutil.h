/* Small file helpers shared by the core. */
#pragma once
#include <glib.h>
#include <string.h>
#include <sys/stat.h>

/* Writes DATA to PATH so that a crash leaves either the old or the new file:
 * a temporary file in the same folder, fsync, rename over PATH, fsync of the
 * folder. Mode 0644 for new files; an existing file keeps its mode. */
gboolean vcf_file_write_atomic(const char *path, const void *data, gsize len,
                               GError **error);

/* fsync of the folder holding PATH (or of PATH itself if it is a folder), so
 * that a create, rename or unlink in it is durable. */
gboolean vcf_fsync_dir(const char *path, GError **error);

/* Writes all LEN bytes at OFF, retrying short writes and EINTR. Errors are
 * VCF_ERROR naming PATH and the offset: ENOSPC for a full disk (or quota),
 * EIO otherwise. */
gboolean vcf_pwrite_all(int fd, const void *buf, gsize len, guint64 off,
                        const char *path, GError **error);
/* Reads up to LEN bytes at OFF; the count is short only at the end of the
 * file. -1 with VCF_ERROR/EIO naming PATH and the offset. */
gssize vcf_pread_all(int fd, void *buf, gsize len, guint64 off,
                     const char *path, GError **error);
/* Whether LEN bytes at BUF are all zeros. */
static inline gboolean vcf_all_zero(const guint8 *buf, gsize len)
{
    return len == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, len - 1) == 0);
}
/* Removes PATH and everything under it; symbolic links are removed, never
 * followed. Stops at the first failure, and refuses trees more than 64
 * folders deep (ELOOP) rather than recurse without bound. */
gboolean vcf_remove_tree(const char *path, GError **error);

/* Whether two stats of one path show the same file with the same bytes, as
 * far as stat can tell: device, inode, size and mtime. */
static inline gboolean vcf_stat_same_data(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size
        && a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}
