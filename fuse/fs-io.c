/* File I/O: a clone's flat disk goes to the composed disk, its descriptor
 * is generated text, everything else is a real file passed through. */
#include "config.h"
#include "fs-internal.h"
#include "flat-descriptor.h"
#include "vcf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    NodeKind kind;
    int fd;              /* NODE_PASS */
    OpenClone *oc;       /* NODE_FLAT: holds oc->handles */
    VcfDisk *disk;       /* NODE_FLAT */
    char *text;          /* NODE_DESC */
    gsize text_len;
    char *clone;         /* for messages */
} Handle;

#define HANDLE(fi) ((Handle *)(uintptr_t)(fi)->fh)

static gboolean wants_write(int flags)
{
    return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

static void reply_handle(fuse_req_t req, struct fuse_file_info *fi, Handle *h,
                         gboolean immutable)
{
    fi->fh = (uint64_t)(uintptr_t)h;
    /* Only we change a clone's disk and a protected parent, so what the
     * kernel cached stays true between opens. */
    fi->keep_cache = immutable || h->kind == NODE_FLAT || h->kind == NODE_DESC;
    if (fuse_reply_open(req, fi) == -ENOENT) {
        /* The open was interrupted: nobody will release this handle. */
        if (h->fd >= 0)
            close(h->fd);
        g_free(h->text);
        g_free(h->clone);
        g_free(h);
    }
}

void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VcfMount *m = VCF_MOUNT(req);
    Handle *h = g_new0(Handle, 1);
    h->fd = -1;
    g_autofree char *why = NULL;
    GError *error = NULL;
    int err = 0;
    gboolean immutable = FALSE;
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    if (n == NULL) {
        err = ENOENT;
    } else if (n->kind == NODE_PASS) {
        const char *who = protected_by(m, n->real);
        if (who != NULL && wants_write(fi->flags)) {
            err = EROFS;
            why = g_strdup_printf("open %s for writing: linked clone %s reads this file; "
                                  "it stays read-only while the clone exists", n->path, who);
        } else if ((h->fd = open(n->real, fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY))) < 0) {
            err = errno;
        }
        immutable = who != NULL;
    } else if (n->kind == NODE_FLAT) {
        if (fi->flags & O_TRUNC) {
            err = EPERM;
            why = g_strdup_printf("open %s with O_TRUNC: a clone's disk has a fixed size; "
                                  "write into it with dd conv=notrunc", n->path);
        } else if ((h->oc = open_clone_locked(m, n->clone, &error)) != NULL) {
            if (n->disk < vcf_clone_n_disks(h->oc->clone)) {
                h->disk = vcf_clone_get_disk(h->oc->clone, n->disk);
                h->oc->handles++;
                h->clone = g_strdup(n->clone);
            } else {
                err = ENOENT;
            }
        }
    } else if (n->kind == NODE_DESC) {
        OpenClone *oc = open_clone_locked(m, n->clone, &error);
        if (wants_write(fi->flags)) {
            err = EROFS;
            why = g_strdup_printf("%s is generated from the clone's disk and cannot be written",
                                  n->path);
        } else if (oc != NULL && n->disk < vcf_clone_n_disks(oc->clone)) {
            VcfDisk *disk = vcf_clone_get_disk(oc->clone, n->disk);
            h->text = vcf_flat_descriptor(n->stem, vcf_disk_get_size(disk),
                                          vcf_sparse_get_cid(vcf_disk_get_store(disk)));
            h->text_len = strlen(h->text);
        } else if (oc != NULL) {
            err = ENOENT;
        }
    } else {
        err = EISDIR;
    }
    if (n != NULL)
        h->kind = n->kind;
    g_mutex_unlock(&m->lock);
    if (error != NULL) {
        g_free(h);
        reply_gerror(req, error);
    } else if (err != 0) {
        if (h->fd >= 0)
            close(h->fd);
        g_free(h->text);
        g_free(h->clone);
        g_free(h);
        reply_errno(req, err, why);
    } else {
        reply_handle(req, fi, h, immutable);
    }
}

void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *why = NULL;
    int err = 0;
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    g_autofree char *real = NULL;
    if (p == NULL) {
        err = ENOENT;
    } else if (p->kind == NODE_ROOT || p->kind == NODE_PASS || p->kind == NODE_CLONE) {
        guint i;
        gboolean flat;
        if (p->kind == NODE_CLONE && clone_disk_name(m, p, name, &i, &flat))
            err = EEXIST;
        else if ((p->kind == NODE_CLONE && clone_reserved_name(name))
                 || (p->kind == NODE_ROOT && (g_str_equal(name, "clones")
                                              || g_str_equal(name, ".vmclonefs"))))
            err = EPERM;
        else
            real = g_build_filename(p->real, name, NULL);
    } else {
        err = EPERM;
        why = g_strdup_printf("%s: files cannot be made here; mkdir makes a clone", p->path);
    }
    int fd = -1;
    if (real != NULL && (fd = open(real, fi->flags | O_CREAT, mode)) < 0)
        err = errno;
    struct fuse_entry_param e;
    GError *error = NULL;
    if (err == 0 && !lookup_locked(m, p, name, &e, &error))
        err = vcf_error_errno(error);
    g_mutex_unlock(&m->lock);
    if (err != 0) {
        if (fd >= 0)
            close(fd);
        if (error != NULL)
            reply_gerror(req, error);
        else
            reply_errno(req, err, why);
        return;
    }
    Handle *h = g_new0(Handle, 1);
    h->kind = NODE_PASS;
    h->fd = fd;
    fi->fh = (uint64_t)(uintptr_t)h;
    if (fuse_reply_create(req, &e, fi) == -ENOENT) {
        close(fd);
        g_free(h);
    }
}

static void reply_disk_error(fuse_req_t req, Handle *h, GError *error)
{
    g_prefix_error(&error, "clone %s: ", h->clone);
    reply_gerror(req, error);
}

void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
             struct fuse_file_info *fi)
{
    Handle *h = HANDLE(fi);
    if (h->kind == NODE_PASS) {
        struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
        buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
        buf.buf[0].fd = h->fd;
        buf.buf[0].pos = off;
        fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
        return;
    }
    if (h->kind == NODE_DESC) {
        gsize o = MIN((gsize)off, h->text_len);
        fuse_reply_buf(req, h->text + o, MIN(size, h->text_len - o));
        return;
    }
    guint64 disk_size = vcf_disk_get_size(h->disk);
    if ((guint64)off >= disk_size) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size = MIN(size, disk_size - off);
    g_autofree char *buf = g_malloc(size);
    GError *error = NULL;
    if (!vcf_disk_read(h->disk, buf, size, off, &error))
        reply_disk_error(req, h, error);
    else
        fuse_reply_buf(req, buf, size);
}

void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
              off_t off, struct fuse_file_info *fi)
{
    Handle *h = HANDLE(fi);
    if (h->kind == NODE_PASS) {
        ssize_t n = pwrite(h->fd, buf, size, off);
        if (n < 0)
            fuse_reply_err(req, errno);
        else
            fuse_reply_write(req, n);
        return;
    }
    if (h->kind != NODE_FLAT) {
        fuse_reply_err(req, EBADF);
        return;
    }
    /* A disk does not grow: past its end is "no space", as on a device. */
    guint64 disk_size = vcf_disk_get_size(h->disk);
    if ((guint64)off >= disk_size) {
        fuse_reply_err(req, size ? ENOSPC : 0);
        return;
    }
    size = MIN(size, disk_size - off);
    GError *error = NULL;
    if (!vcf_disk_write(h->disk, buf, size, off, &error))
        reply_disk_error(req, h, error);
    else
        fuse_reply_write(req, size);
}

void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    Handle *h = HANDLE(fi);
    /* close() of a passed-through file reports its delayed errors. */
    if (h->kind == NODE_PASS) {
        int fd = dup(h->fd);
        if (fd >= 0 && close(fd) < 0) {
            fuse_reply_err(req, errno);
            return;
        }
    }
    fuse_reply_err(req, 0);
}

void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    Handle *h = HANDLE(fi);
    if (h->kind == NODE_PASS) {
        int r = datasync ? fdatasync(h->fd) : fsync(h->fd);
        fuse_reply_err(req, r < 0 ? errno : 0);
        return;
    }
    if (h->kind == NODE_FLAT) {
        GError *error = NULL;
        if (!vcf_disk_sync(h->disk, &error)) {
            reply_disk_error(req, h, error);
            return;
        }
    }
    fuse_reply_err(req, 0);
}

void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VcfMount *m = VCF_MOUNT(req);
    Handle *h = HANDLE(fi);
    if (h->fd >= 0)
        close(h->fd);
    if (h->oc != NULL) {
        g_mutex_lock(&m->lock);
        h->oc->handles--;
        g_mutex_unlock(&m->lock);
    }
    g_free(h->text);
    g_free(h->clone);
    g_free(h);
    fuse_reply_err(req, 0);
}
