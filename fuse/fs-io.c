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
    char *real;          /* NODE_PASS opened for writing: its realpath */
    char *path;          /* ... and its mount path, for messages (also NODE_DESC) */
    gint checked_gen;    /* atomic: protect_gen when last found unprotected */
    OpenClone *oc;       /* NODE_FLAT: holds oc->handles */
    VcfDisk *disk;       /* NODE_FLAT */
    char *text;          /* NODE_DESC: what reads return */
    gsize text_len;
    char *generated;     /* NODE_DESC opened for writing: the text as made */
    char *clone;         /* for messages */
    fuse_ino_t ino;      /* NODE_FLAT */
    gboolean direct;     /* NODE_FLAT opened with FOPEN_DIRECT_IO (flat-cache.c) */
    gboolean keep;       /* NODE_FLAT: the kernel may keep what it cached */
} Handle;

#define HANDLE(fi) ((Handle *)(uintptr_t)(fi)->fh)

static gboolean wants_write(int flags)
{
    return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

static void handle_free(Handle *h)
{
    if (h->fd >= 0)
        close(h->fd);
    g_free(h->real);
    g_free(h->path);
    g_free(h->text);
    g_free(h->generated);
    g_free(h->clone);
    g_free(h);
}

/* A passed-through file opened for writing: remember where it is, so that
 * its writes stop if a clone starts to read it. m->lock held. */
static void watch_writes(VcfMount *m, Handle *h, const char *real, const char *path)
{
    char *rp = realpath(real, NULL);
    h->real = rp ? rp : g_strdup(real);
    h->path = g_strdup(path);
    h->checked_gen = g_atomic_int_get(&m->protect_gen);
}

/* Forgets an open handle: the kernel released it, or never got it. */
static void handle_drop(VcfMount *m, Handle *h)
{
    g_mutex_lock(&m->lock);
    if (h->oc != NULL) {
        h->oc->handles--;
        flat_cache_closed_locked(node_get(&m->nodes, h->ino), h->direct);
    }
    g_hash_table_remove(m->open_files, h);
    g_mutex_unlock(&m->lock);
    handle_free(h);
}

static void handle_keep(VcfMount *m, Handle *h)
{
    g_mutex_lock(&m->lock);
    g_hash_table_add(m->open_files, h);
    g_mutex_unlock(&m->lock);
}

gboolean open_for_writing_under(VcfMount *m, const char *dir)
{
    g_autofree char *real = realpath(dir, NULL);
    const char *d = real ? real : dir;
    gsize n = strlen(d);
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, m->open_files);
    while (g_hash_table_iter_next(&it, &k, NULL)) {
        const Handle *h = k;
        if (h->kind == NODE_PASS && h->real != NULL && strncmp(h->real, d, n) == 0
            && h->real[n] == '/')
            return TRUE;
    }
    return FALSE;
}

void open_files_free_all(VcfMount *m)
{
    /* Releases the kernel sends after close may still be on their way when
     * the mount goes: what they would have freed is freed here. */
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, m->open_files);
    while (g_hash_table_iter_next(&it, &k, NULL)) {
        handle_free(k);
        g_hash_table_iter_remove(&it);
    }
}

/* Opens a real file for H. O_TRUNC waits until the file is known not to
 * be a protected parent by its device and inode, as a hard link or a file
 * renamed since the check by path would be. m->lock held. */
static int open_passed(VcfMount *m, Handle *h, const char *real, const char *path, int flags,
                       mode_t mode, char **why)
{
    int keep = (flags & O_CREAT) ? ~(O_NOCTTY | O_TRUNC) : ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC);
    h->fd = open(real, flags & keep, mode);
    if (h->fd < 0)
        return errno;
    if (!wants_write(flags))
        return 0;
    const char *who = protected_fd_by(m, h->fd);
    if (who != NULL) {
        *why = g_strdup_printf("open %s for writing: linked clone %s reads this file (by "
                               "another name); it stays read-only while the clone exists",
                               path, who);
        return EROFS;
    }
    if ((flags & O_TRUNC) && ftruncate(h->fd, 0) < 0)
        return errno;
    watch_writes(m, h, real, path);
    return 0;
}

static void reply_handle(fuse_req_t req, VcfMount *m, struct fuse_file_info *fi, Handle *h,
                         gboolean immutable)
{
    fi->fh = (uint64_t)(uintptr_t)h;
    /* Only we change a clone's disk and a protected parent, so what the
     * kernel cached stays true between opens. A descriptor's CID changes
     * when the store starts a session: no cache for it. */
    fi->keep_cache = immutable || (h->kind == NODE_FLAT && h->keep);
    handle_keep(m, h);
    if (fuse_reply_open(req, fi) == -ENOENT)
        handle_drop(m, h);   /* the open was interrupted: nobody will release it */
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
    /* A snapshot being taken back must not lose a write to its delta: no
     * file is opened for writing meanwhile (see release_base_logged). */
    gboolean writer = wants_write(fi->flags);
    if (writer)
        g_rw_lock_reader_lock(&m->pass_writes);
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    if (n == NULL || n->kind == NODE_GONE) {
        err = ENOENT;
    } else if ((n->kind == NODE_FLAT || n->kind == NODE_DESC)
               && g_hash_table_contains(m->closing, n->clone)) {
        /* rmdir, rm or mv is taking this clone away right now. */
        err = EBUSY;
        why = g_strdup_printf("open %s: the clone is being deleted or renamed", n->path);
    } else if (n->kind == NODE_PASS) {
        const char *who = protected_by(m, n->real);
        if (who != NULL && wants_write(fi->flags)) {
            err = EROFS;
            why = g_strdup_printf("open %s for writing: linked clone %s reads this file; "
                                  "it stays read-only while the clone exists", n->path, who);
        } else {
            err = open_passed(m, h, n->real, n->path, fi->flags, 0, &why);
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
                h->ino = ino;
                h->direct = flat_cache_opened_locked(n, fi->flags, &h->keep);
                fi->direct_io = h->direct;
                h->clone = g_strdup(n->clone);
            } else {
                err = ENOENT;
            }
        }
    } else if (n->kind == NODE_STATUS) {
        if (writer) {
            err = EACCES;
            why = g_strdup_printf("open %s for writing: the status file is read-only", n->path);
        } else if ((h->text = status_text_locked(m, n->clone)) == NULL) {
            err = ENOENT;
        } else {
            h->text_len = strlen(h->text);
            fi->direct_io = 1;   /* fresh at every open, whatever its size was */
        }
    } else if (n->kind == NODE_DESC) {
        OpenClone *oc = open_clone_locked(m, n->clone, &error);
        if (fi->flags & O_TRUNC) {
            err = EROFS;
            why = g_strdup_printf("%s is generated from the clone's disk and cannot be "
                                  "truncated", n->path);
        } else if (oc != NULL && n->disk < vcf_clone_n_disks(oc->clone)) {
            h->text = disk_descriptor(n->stem, vcf_clone_get_disk(oc->clone, n->disk));
            h->text_len = strlen(h->text);
            if (wants_write(fi->flags)) {
                /* VMware and qemu open a disk's descriptor read/write to
                 * renew its CID on their first write (see fs_write); the
                 * edit stays in this handle, out of the page cache. */
                h->generated = g_strdup(h->text);
                h->path = g_strdup(n->path);
                fi->direct_io = 1;
            }
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
        handle_free(h);
        reply_gerror(req, error);
    } else if (err != 0) {
        handle_free(h);
        reply_errno(req, err, why);
    } else {
        reply_handle(req, m, fi, h, immutable);   /* in open_files before the unlock */
    }
    if (writer)
        g_rw_lock_reader_unlock(&m->pass_writes);
}

void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *why = NULL;
    int err = 0;
    g_rw_lock_reader_lock(&m->pass_writes);   /* as fs_open for writing */
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
        else if ((p->kind == NODE_CLONE && clone_hidden_name(m, p, name))
                 || (p->kind == NODE_ROOT && (g_str_equal(name, CLONES_DIR)
                                              || g_str_equal(name, STATE_DIR))))
            err = EPERM;
        else
            real = g_build_filename(p->real, name, NULL);
    } else {
        err = EPERM;
        why = g_strdup_printf("%s: files cannot be made here; mkdir makes a clone", p->path);
    }
    const char *who = real != NULL ? protected_by(m, real) : NULL;
    if (who != NULL) {
        err = EROFS;
        why = g_strdup_printf("create %s/%s: linked clone %s reads this file", p->path, name, who);
    }
    Handle *h = g_new0(Handle, 1);
    h->kind = NODE_PASS;
    h->fd = -1;
    g_autofree char *path = p ? node_child_path(p, name) : NULL;
    if (err == 0)
        err = open_passed(m, h, real, path, fi->flags | O_CREAT, mode, &why);
    struct fuse_entry_param e;
    GError *error = NULL;
    if (err == 0 && !lookup_locked(m, p, name, &e, &error))
        err = vcf_error_errno(error);
    g_mutex_unlock(&m->lock);
    if (err != 0) {
        handle_free(h);
        if (error != NULL)
            reply_gerror(req, error);
        else
            reply_errno(req, err, why);
        g_rw_lock_reader_unlock(&m->pass_writes);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)h;
    handle_keep(m, h);
    if (fuse_reply_create(req, &e, fi) == -ENOENT) {
        handle_drop(m, h);
        g_mutex_lock(&m->lock);
        node_forget(&m->nodes, e.ino, 1);   /* the kernel never got the entry */
        g_mutex_unlock(&m->lock);
    }
    g_rw_lock_reader_unlock(&m->pass_writes);
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
    if (h->kind == NODE_DESC || h->kind == NODE_STATUS) {
        /* A copy: a write on the handle may replace the text meanwhile,
         * and the reply must not point into the handle once sent. */
        VcfMount *m = VCF_MOUNT(req);
        g_mutex_lock(&m->lock);
        gsize o = MIN((gsize)off, h->text_len);
        gsize n = MIN(size, h->text_len - o);
        g_autofree char *copy = g_memdup2(h->text + o, n);
        g_mutex_unlock(&m->lock);
        fuse_reply_buf(req, copy, n);
        return;
    }
    guint64 disk_size = vcf_disk_get_size(h->disk);
    if ((guint64)off >= disk_size) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size = MIN(size, disk_size - off);
    GError *error = NULL;
    VcfRun runs[SPLICE_MAX_RUNS];
    gboolean served;
    SpliceReply sr = { VCF_MOUNT(req), req };
    if (!vcf_disk_read_runs(h->disk, size, off, runs, SPLICE_MAX_RUNS, splice_reply, &sr,
                            &served, &error)) {
        reply_disk_error(req, h, error);
        return;
    }
    if (served)
        return;
    g_autofree char *buf = g_malloc(size);
    if (!vcf_disk_read(h->disk, buf, size, off, &error))
        reply_disk_error(req, h, error);
    else
        fuse_reply_buf(req, buf, size);
}

/* A write into a real file, unless a clone made since it was opened reads
 * that file now. */
static void write_passed(fuse_req_t req, VcfMount *m, Handle *h, const char *buf,
                         size_t size, off_t off)
{
    if (h->real == NULL) {   /* opened read-only: the kernel would not ask */
        fuse_reply_err(req, EBADF);
        return;
    }
    g_rw_lock_reader_lock(&m->pass_writes);
    gint gen = g_atomic_int_get(&m->protect_gen);
    if (g_atomic_int_get(&h->checked_gen) != gen) {
        g_mutex_lock(&m->lock);
        /* By inode: the file may have been renamed or linked since open. */
        g_autofree char *who = g_strdup(protected_fd_by(m, h->fd));
        g_mutex_unlock(&m->lock);
        if (who != NULL) {
            g_rw_lock_reader_unlock(&m->pass_writes);
            g_autofree char *why = g_strdup_printf(
                "write into %s: linked clone %s reads this file now; a handle opened "
                "before the clone was made can no longer write", h->path, who);
            reply_errno(req, EROFS, why);
            return;
        }
        g_atomic_int_set(&h->checked_gen, gen);
    }
    ssize_t n = pwrite(h->fd, buf, size, off);
    int e = errno;
    g_rw_lock_reader_unlock(&m->pass_writes);
    if (n < 0)
        fuse_reply_err(req, e);
    else
        fuse_reply_write(req, n);
}

/* A write into a descriptor: only a new CID is taken (it changes nothing:
 * the store renews its own CID on its first write), anything else would
 * describe another disk than the one served. */
static void write_descriptor(fuse_req_t req, VcfMount *m, Handle *h, const char *buf,
                             size_t size, off_t off)
{
    if (off < 0 || (guint64)off + size > 64 * 1024) {
        g_autofree char *why = g_strdup_printf("%s: a descriptor is not that large", h->path);
        reply_errno(req, EFBIG, why);
        return;
    }
    g_mutex_lock(&m->lock);   /* the handle's text, against reads on it */
    gsize len = MAX(h->text_len, (gsize)off + size);
    char *edited = g_malloc0(len + 1);
    memcpy(edited, h->text, h->text_len);
    memcpy(edited + off, buf, size);
    if (!vcf_flat_descriptor_edit_ok(h->generated, edited, len)) {
        g_mutex_unlock(&m->lock);
        g_free(edited);
        g_autofree char *why = g_strdup_printf(
            "write into %s: only its CID= line may change; the rest is generated from the "
            "clone's disk", h->path);
        reply_errno(req, EROFS, why);
        return;
    }
    g_free(h->text);
    h->text = edited;
    h->text_len = len;
    g_mutex_unlock(&m->lock);
    fuse_reply_write(req, size);
}

void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
              off_t off, struct fuse_file_info *fi)
{
    Handle *h = HANDLE(fi);
    if (h->kind == NODE_PASS) {
        write_passed(req, VCF_MOUNT(req), h, buf, size, off);
        return;
    }
    if (h->kind == NODE_DESC && h->generated != NULL) {
        write_descriptor(req, VCF_MOUNT(req), h, buf, size, off);
        return;
    }
    if (h->kind != NODE_FLAT) {
        fuse_reply_err(req, EBADF);
        return;
    }
    /* A disk does not grow: past its end is "no space", as on a device. */
    guint64 disk_size = vcf_disk_get_size(h->disk);
    if ((guint64)off >= disk_size) {
        if (size == 0)
            fuse_reply_write(req, 0);
        else
            fuse_reply_err(req, ENOSPC);
        return;
    }
    size = MIN(size, disk_size - off);
    GError *error = NULL;
    /* With FOPEN_DIRECT_IO the kernel sends no fsync for an O_DSYNC or
     * O_SYNC write (its flags say so): durable before it is answered. */
    if (!vcf_disk_write(h->disk, buf, size, off, &error)
        || (h->direct && (fi->flags & O_DSYNC) && !vcf_disk_sync(h->disk, &error))) {
        reply_disk_error(req, h, error);
        return;
    }
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
    handle_drop(m, HANDLE(fi));
    fuse_reply_err(req, 0);
}

/* SEEK_DATA and SEEK_HOLE: a clone's disk answers from its layers' maps,
 * so that cp, tar, rsync and borg skip what no layer holds. */
void fs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
    Handle *h = HANDLE(fi);
    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        fuse_reply_err(req, EINVAL);   /* the kernel does SEEK_SET and the rest */
        return;
    }
    if (off < 0) {
        fuse_reply_err(req, ENXIO);
        return;
    }
    if (h->kind == NODE_PASS) {
        off_t r = lseek(h->fd, off, whence);
        if (r < 0)
            fuse_reply_err(req, errno);
        else
            fuse_reply_lseek(req, r);
        return;
    }
    if (h->kind == NODE_DESC || h->kind == NODE_STATUS) {
        VcfMount *m = VCF_MOUNT(req);
        g_mutex_lock(&m->lock);
        gsize len = h->text_len;
        g_mutex_unlock(&m->lock);
        if ((guint64)off >= len)
            fuse_reply_err(req, ENXIO);
        else
            fuse_reply_lseek(req, whence == SEEK_DATA ? off : (off_t)len);
        return;
    }
    guint64 out = 0;
    GError *error = NULL;
    if (vcf_disk_seek(h->disk, (guint64)off, whence == SEEK_DATA, &out, &error))
        fuse_reply_lseek(req, (off_t)out);
    else if (vcf_error_errno(error) == ENXIO) {
        g_error_free(error);
        fuse_reply_err(req, ENXIO);   /* what the caller asks about, no news */
    } else
        reply_disk_error(req, h, error);
}
