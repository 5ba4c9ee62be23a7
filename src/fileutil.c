#include "config.h"
#include "fileutil.h"

#include "vcf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "PATH: WHAT: strerror", so the log says which file and which step. */
static void set_path_errno(GError **error, int errnum, const char *path,
                           const char *what)
{
    /* A call that failed without errno (a short write) is still a failure. */
    if (errnum <= 0)
        errnum = EIO;
    g_set_error(error, VCF_ERROR, errnum, "%s: %s: %s", path, what,
                g_strerror(errnum));
}

static gboolean write_all(int fd, const char *data, gsize len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return FALSE;
        }
        if (n == 0) {
            errno = EIO;
            return FALSE;
        }
        data += n;
        len -= (gsize)n;
    }
    return TRUE;
}

gboolean vcf_file_write_atomic(const char *path, const void *data, gsize len,
                               GError **error)
{
    g_return_val_if_fail(path != NULL, FALSE);
    g_return_val_if_fail(data != NULL || len == 0, FALSE);

    /* A replaced file keeps its permissions; following a symlink here is
     * deliberate, its target's mode is what the user chose. */
    mode_t mode = 0644;
    struct stat st;
    if (stat(path, &st) == 0)
        mode = st.st_mode & 07777;
    else if (errno != ENOENT) {
        set_path_errno(error, errno, path, "stat");
        return FALSE;
    }

    /* The temporary file must be in the same folder: rename is only atomic
     * within one file system. The leading dot keeps it out of listings. */
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *base = g_path_get_basename(path);
    g_autofree char *tmpl_name = g_strdup_printf(".%s.XXXXXX", base);
    g_autofree char *tmp = g_build_filename(dir, tmpl_name, NULL);

    int fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_path_errno(error, errno, path, "cannot create a temporary file beside it");
        return FALSE;
    }

    const char *what = NULL;
    if (!write_all(fd, data, len))
        what = "write of the temporary file";
    else if (fchmod(fd, mode) != 0)
        what = "chmod of the temporary file";
    /* The data must be on disk before the rename makes it the file, or a
     * crash could leave an empty file under the old name. */
    else if (fsync(fd) != 0)
        what = "fsync of the temporary file";

    int saved = errno;
    if (close(fd) != 0 && what == NULL) {
        saved = errno;
        what = "close of the temporary file";
    }
    if (what == NULL && rename(tmp, path) != 0) {
        saved = errno;
        what = "rename of the temporary file over it";
    }
    if (what != NULL) {
        unlink(tmp);
        set_path_errno(error, saved, path, what);
        return FALSE;
    }
    /* Without this the rename itself may be lost in a crash. */
    return vcf_fsync_dir(path, error);
}

gboolean vcf_fsync_dir(const char *path, GError **error)
{
    g_return_val_if_fail(path != NULL, FALSE);

    /* lstat: a symlink to a folder is an entry of its own folder. */
    struct stat st;
    g_autofree char *dir = NULL;
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
        dir = g_strdup(path);
    else
        dir = g_path_get_dirname(path);

    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        set_path_errno(error, errno, dir, "open of the folder");
        return FALSE;
    }
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    /* Some file systems (a few network and FUSE ones) cannot sync a folder
     * and say EINVAL; there is nothing more to do there. */
    if (rc != 0 && saved != EINVAL) {
        set_path_errno(error, saved, dir, "fsync of the folder");
        return FALSE;
    }
    return TRUE;
}

gboolean vcf_pwrite_all(int fd, const void *buf, gsize len, guint64 off,
                        const char *path, GError **error)
{
    gsize done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const guint8 *)buf + done, len - done, off + done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            g_set_error(error, VCF_ERROR, e == ENOSPC || e == EDQUOT ? ENOSPC : EIO,
                        "%s: write at byte %" G_GUINT64_FORMAT ": %s", path, off + done,
                        g_strerror(e));
            return FALSE;
        }
        done += n;
    }
    return TRUE;
}

gssize vcf_pread_all(int fd, void *buf, gsize len, guint64 off,
                     const char *path, GError **error)
{
    gsize done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (guint8 *)buf + done, len - done, off + done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            g_set_error(error, VCF_ERROR, EIO, "%s: read at byte %" G_GUINT64_FORMAT ": %s",
                        path, off + done, g_strerror(e));
            return -1;
        }
        if (n == 0)
            break;
        done += n;
    }
    return done;
}

/* Our own folders are two levels deep; a hostile tree may be as deep as
 * it likes, and recursion must not follow it off the stack. */
#define MAX_TREE_DEPTH 64

static gboolean remove_tree_at(const char *path, guint depth, GError **error)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return TRUE;
        set_path_errno(error, errno, path, "lstat");
        return FALSE;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) < 0 && errno != ENOENT) {
            set_path_errno(error, errno, path, "unlink");
            return FALSE;
        }
        return TRUE;
    }
    if (depth >= MAX_TREE_DEPTH) {
        g_set_error(error, VCF_ERROR, ELOOP, "%s: more than %u folders deep; left in place",
                    path, MAX_TREE_DEPTH);
        return FALSE;
    }
    GDir *d = g_dir_open(path, 0, NULL);
    const char *e;
    gboolean ok = TRUE;
    while (d != NULL && (e = g_dir_read_name(d)) != NULL && ok) {
        g_autofree char *p = g_build_filename(path, e, NULL);
        ok = remove_tree_at(p, depth + 1, error);
    }
    if (d != NULL)
        g_dir_close(d);
    if (ok && rmdir(path) < 0) {
        set_path_errno(error, errno, path, "rmdir");
        ok = FALSE;
    }
    return ok;
}

gboolean vcf_remove_tree(const char *path, GError **error)
{
    return remove_tree_at(path, 0, error);
}
