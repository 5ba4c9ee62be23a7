/* The mount's namespace: what each path is, its attributes, listings. */
#include "config.h"
#include "fs-internal.h"
#include "flat-descriptor.h"
#include "vcf-error.h"

#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>


/* ---- errors ------------------------------------------------------------ */

void reply_gerror(fuse_req_t req, GError *error)
{
    int err = vcf_error_errno(error);
    if (err == ENOENT)
        g_debug("%s", error->message);   /* lookups of absent names are normal */
    else
        g_warning("%s", error->message);
    g_error_free(error);
    fuse_reply_err(req, err);
}

void reply_errno(fuse_req_t req, int err, const char *why)
{
    if (why != NULL)
        g_warning("%s", why);
    fuse_reply_err(req, err);
}

/* ---- what a name is ---------------------------------------------------- */

gboolean clone_disk_name(VcfMount *m, const Node *dir, const char *name,
                         guint *index, gboolean *is_flat)
{
    g_autoptr(VcfCloneInfo) owned = NULL;
    const VcfCloneInfo *info = clone_info_locked(m, dir->clone, &owned);
    return info != NULL && vcf_clone_disk_name(info, name, index, is_flat);
}

gboolean clone_hidden_name(VcfMount *m, const Node *dir, const char *name)
{
    g_autoptr(VcfCloneInfo) owned = NULL;
    const VcfCloneInfo *info = clone_info_locked(m, dir->clone, &owned);
    return info == NULL ? vcf_clone_reserved_name(name) : vcf_clone_hides(info, name);
}

void reply_entry_counted(fuse_req_t req, VcfMount *m, const struct fuse_entry_param *e)
{
    if (fuse_reply_entry(req, e) == -ENOENT) {
        /* Interrupted: the kernel will never forget what it never got. */
        g_mutex_lock(&m->lock);
        node_forget(&m->nodes, e->ino, 1);
        g_mutex_unlock(&m->lock);
    }
}

static gboolean no_entry(GError **error, const char *path)
{
    g_set_error(error, VCF_ERROR, ENOENT, "%s: no such file in the mount", path);
    return FALSE;
}

/* Fills TMPL for NAME under PARENT, checking it exists. */
static gboolean is_orphan_source(VcfMount *m, const char *name)
{
    g_autoptr(GPtrArray) orphans = vcf_clone_orphan_sources(m->lib);
    return g_ptr_array_find_with_equal_func(orphans, name, g_str_equal, NULL);
}

static gboolean classify(VcfMount *m, const Node *parent, const char *name,
                         Node *tmpl, GError **error)
{
    memset(tmpl, 0, sizeof *tmpl);
    g_autofree char *path = node_child_path(parent, name);
    if (g_str_equal(name, ".") || g_str_equal(name, ".."))
        return no_entry(error, path);
    switch (parent->kind) {
    case NODE_ROOT:
        if (g_str_equal(name, CLONES_DIR)) {
            tmpl->kind = NODE_CLONES;
            break;
        }
        if (g_str_equal(name, STATE_DIR))
            return no_entry(error, path);
        tmpl->kind = NODE_PASS;
        tmpl->real = g_build_filename(parent->real, name, NULL);
        break;
    case NODE_CLONES: {
        g_autofree char *vm_name = g_strndup(name, strcspn(name, "@"));
        GError *why = NULL;
        g_autoptr(VcfVm) vm = vcf_library_load_vm(m->lib, vm_name, &why);
        const char *snap = strchr(name, '@');
        /* A clone is a source too (a VM of its name comes first). */
        if (vm == NULL && snap == NULL && g_error_matches(why, VCF_ERROR, ENOENT)
            && vcf_clone_exists(m->lib, name))
            g_clear_error(&why);
        if (vm != NULL && snap != NULL && vcf_vm_find_snapshot(vm, snap + 1) == NULL)
            g_set_error(&why, VCF_ERROR, ENOENT, "VM %s has no snapshot named \"%s\"",
                        vm->name, snap + 1);
        /* A source gone, whose full clones stay: they are still shown in it.
         * Not for hidden names: file managers probe many of those. */
        if (why != NULL && name[0] != '.' && is_orphan_source(m, name))
            g_clear_error(&why);
        if (why != NULL) {
            /* Someone is after a source that is not there (mkdir
             * clones/SRC/NAME looks SRC up first): say why, once per
             * lookup; hidden names are probes by file managers. */
            if (name[0] != '.')
                g_message("clones/%s is not a source: %s", name, why->message);
            g_error_free(why);
            return no_entry(error, path);
        }
        tmpl->kind = NODE_SOURCE;
        tmpl->source = g_strdup(name);
        break;
    }
    case NODE_SOURCE: {
        g_autoptr(VcfCloneInfo) owned = NULL;
        const VcfCloneInfo *info = clone_info_locked(m, name, &owned);
        if (info == NULL || g_strcmp0(info->source, parent->source) != 0)
            return no_entry(error, path);
        tmpl->kind = NODE_CLONE;
        tmpl->clone = g_strdup(name);
        tmpl->source = g_strdup(parent->source);
        tmpl->real = g_strdup(info->dir);
        break;
    }
    case NODE_CLONE: {
        guint index;
        gboolean flat;
        if (clone_disk_name(m, parent, name, &index, &flat)) {
            tmpl->kind = flat ? NODE_FLAT : NODE_DESC;
            tmpl->clone = g_strdup(parent->clone);
            tmpl->disk = index;
            tmpl->stem = g_strndup(name, strlen(name) - (flat ? 10 : 5));
            break;
        }
        if (g_str_equal(name, STATUS_FILE)) {
            tmpl->kind = NODE_STATUS;
            tmpl->clone = g_strdup(parent->clone);
            break;
        }
        if (clone_hidden_name(m, parent, name))
            return no_entry(error, path);
        tmpl->kind = NODE_PASS;
        tmpl->real = g_build_filename(parent->real, name, NULL);
        break;
    }
    case NODE_PASS:
        tmpl->kind = NODE_PASS;
        tmpl->real = g_build_filename(parent->real, name, NULL);
        break;
    default:
        return no_entry(error, path);
    }
    tmpl->path = g_steal_pointer(&path);
    if (tmpl->real != NULL) {
        struct stat st;
        if (lstat(tmpl->real, &st) < 0) {
            int e = errno;
            g_set_error(error, VCF_ERROR, e, "%s: %s", tmpl->path, g_strerror(e));
            node_strings_free(tmpl);
            return FALSE;
        }
    }
    return TRUE;
}

/* ---- attributes --------------------------------------------------------- */

static gboolean stat_path(const char *path, struct stat *st, GError **error)
{
    if (lstat(path, st) == 0)
        return TRUE;
    vcf_set_errno(error, errno, path);
    return FALSE;
}

gboolean node_stat(VcfMount *m, const Node *n, struct stat *st, GError **error)
{
    switch (n->kind) {
    case NODE_ROOT:
    case NODE_PASS:
    case NODE_CLONE:
        if (!stat_path(n->real, st, error))
            return FALSE;
        break;
    case NODE_CLONES:
    case NODE_SOURCE:
        if (!stat_path(vcf_library_store_root(m->lib), st, error))
            return FALSE;
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
        break;
    case NODE_GONE:
        return no_entry(error, n->path);
    case NODE_STATUS: {
        g_autofree char *text = status_text_locked(m, n->clone);
        g_autofree char *dir = g_build_filename(vcf_library_store_root(m->lib), n->clone, NULL);
        if (text == NULL || !stat_path(dir, st, error))
            return text == NULL ? no_entry(error, n->path) : FALSE;
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        st->st_size = strlen(text);
        st->st_blocks = 0;   /* generated: it takes no space */
        break;
    }
    case NODE_DESC:
    case NODE_FLAT: {
        OpenClone *oc = open_clone_locked(m, n->clone, error);
        if (oc == NULL)
            return FALSE;
        if (n->disk >= vcf_clone_n_disks(oc->clone))
            return no_entry(error, n->path);
        VcfDisk *disk = vcf_clone_get_disk(oc->clone, n->disk);
        if (!stat_path(vcf_disk_get_path(disk), st, error))
            return FALSE;
        /* The store's own times move with a copy in the background. */
        gint64 w = vcf_disk_get_written_at(disk);
        st->st_mtim.tv_sec = st->st_ctim.tv_sec = w / G_USEC_PER_SEC;
        st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = w % G_USEC_PER_SEC * 1000;
        if (n->kind == NODE_FLAT) {
            guint32 cid;
            VcfGeometry geo;
            guint64 frozen = 0;
            vcf_disk_describe(disk, &cid, &geo, &frozen, NULL);
            st->st_mode = S_IFREG | 0644;
            st->st_size = vcf_disk_get_size(disk);
            /* What the clone costs on disk: its store and frozen layers. */
            st->st_blocks += frozen / 512;
        } else {
            g_autofree char *text = disk_descriptor(n->stem, disk);
            st->st_mode = S_IFREG | 0644;   /* opened read/write by hypervisors */
            st->st_size = strlen(text);
            st->st_blocks = (st->st_size + 511) / 512;
        }
        st->st_nlink = 1;
        break;
    }
    }
    st->st_ino = n->ino;
    return TRUE;
}

gboolean lookup_locked(VcfMount *m, Node *parent, const char *name,
                       struct fuse_entry_param *e, GError **error)
{
    Node tmpl;
    if (!classify(m, parent, name, &tmpl, error))
        return FALSE;
    Node *n = node_remember(&m->nodes, &tmpl);
    memset(e, 0, sizeof *e);
    if (!node_stat(m, n, &e->attr, error)) {
        node_forget(&m->nodes, n->ino, 1);
        return FALSE;
    }
    e->ino = n->ino;
    e->attr_timeout = m->timeout;
    e->entry_timeout = m->timeout;
    return TRUE;
}

void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    VcfMount *m = VCF_MOUNT(req);
    struct fuse_entry_param e;
    GError *error = NULL;
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    gboolean ok = p != NULL && lookup_locked(m, p, name, &e, &error);
    g_mutex_unlock(&m->lock);
    if (ok)
        reply_entry_counted(req, m, &e);
    else if (error != NULL)
        reply_gerror(req, error);
    else
        fuse_reply_err(req, ENOENT);
}

void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    VcfMount *m = VCF_MOUNT(req);
    g_mutex_lock(&m->lock);
    node_forget(&m->nodes, ino, nlookup);
    g_mutex_unlock(&m->lock);
    fuse_reply_none(req);
}

void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    VcfMount *m = VCF_MOUNT(req);
    g_mutex_lock(&m->lock);
    for (size_t i = 0; i < count; i++)
        node_forget(&m->nodes, forgets[i].ino, forgets[i].nlookup);
    g_mutex_unlock(&m->lock);
    fuse_reply_none(req);
}

void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VcfMount *m = VCF_MOUNT(req);
    struct stat st;
    GError *error = NULL;
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    gboolean ok = n != NULL && node_stat(m, n, &st, &error);
    g_mutex_unlock(&m->lock);
    if (ok)
        fuse_reply_attr(req, &st, m->timeout);
    else if (error != NULL)
        reply_gerror(req, error);
    else
        fuse_reply_err(req, ENOENT);
}

static int apply_setattr(VcfMount *m, const Node *n, struct stat *attr, int to_set,
                         char **why)
{
    if (n->kind == NODE_FLAT || n->kind == NODE_DESC) {
        if (to_set & FUSE_SET_ATTR_SIZE) {
            struct stat st;
            GError *error = NULL;
            if (!node_stat(m, n, &st, &error)) {
                *why = g_strdup(error->message);
                g_error_free(error);
                return EIO;
            }
            if (attr->st_size != st.st_size) {
                *why = g_strdup_printf("%s: a clone's disk has a fixed size (%" G_GINT64_FORMAT
                                       " bytes); use dd conv=notrunc to write into it",
                                       n->path, (gint64)st.st_size);
                return EPERM;
            }
        }
        if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
            return EPERM;
        return 0;    /* times: accepted, not kept (the store's times show) */
    }
    if (n->kind == NODE_GONE)
        return ENOENT;
    if (n->kind == NODE_STATUS)
        return EPERM;
    if (n->real == NULL || n->kind != NODE_PASS)
        return to_set & ~(FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW
                          | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME) ? EPERM : 0;
    /* A new mtime on a file a clone reads would break the clone
     * (vcf_parent_check_unchanged): refused like a truncate. */
    const char *who = to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MTIME)
        ? protected_by(m, n->real) : NULL;
    if (who != NULL) {
        *why = g_strdup_printf("%s: linked clone %s reads this file; it cannot be %s", n->path,
                               who, to_set & FUSE_SET_ATTR_SIZE ? "truncated"
                               : "given another modification time");
        return EBUSY;
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
        if (truncate(n->real, attr->st_size) < 0)
            return errno;
    }
    if ((to_set & FUSE_SET_ATTR_MODE) && chmod(n->real, attr->st_mode) < 0)
        return errno;
    if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        uid_t u = to_set & FUSE_SET_ATTR_UID ? attr->st_uid : (uid_t)-1;
        gid_t g = to_set & FUSE_SET_ATTR_GID ? attr->st_gid : (gid_t)-1;
        if (lchown(n->real, u, g) < 0)
            return errno;
    }
    if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
        struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };
        if (to_set & FUSE_SET_ATTR_ATIME_NOW)
            tv[0].tv_nsec = UTIME_NOW;
        else if (to_set & FUSE_SET_ATTR_ATIME)
            tv[0] = attr->st_atim;
        if (to_set & FUSE_SET_ATTR_MTIME_NOW)
            tv[1].tv_nsec = UTIME_NOW;
        else if (to_set & FUSE_SET_ATTR_MTIME)
            tv[1] = attr->st_mtim;
        if (utimensat(AT_FDCWD, n->real, tv, AT_SYMLINK_NOFOLLOW) < 0)
            return errno;
    }
    return 0;
}

void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                struct fuse_file_info *fi)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *why = NULL;
    struct stat st;
    GError *error = NULL;
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    int err = n == NULL ? ENOENT : apply_setattr(m, n, attr, to_set, &why);
    gboolean ok = err == 0 && node_stat(m, n, &st, &error);
    g_mutex_unlock(&m->lock);
    if (ok)
        fuse_reply_attr(req, &st, m->timeout);
    else if (error != NULL)
        reply_gerror(req, error);
    else
        reply_errno(req, err, why);
}

void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
    VcfMount *m = VCF_MOUNT(req);
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    g_autofree char *real = n && n->kind == NODE_PASS ? g_strdup(n->real) : NULL;
    g_mutex_unlock(&m->lock);
    if (real == NULL) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    /* The target may be up to PATH_MAX bytes; the link's own errno (ENOENT,
     * EACCES, EINVAL for a non-link) is what the caller should see. */
    g_autofree char *target = g_malloc(PATH_MAX + 1);
    ssize_t len = readlink(real, target, PATH_MAX);
    if (len < 0) {
        fuse_reply_err(req, errno);
        return;
    }
    target[len] = '\0';
    fuse_reply_readlink(req, target);
}

void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
    VcfMount *m = VCF_MOUNT(req);
    struct statvfs sv;
    if (statvfs(m->root, &sv) < 0)
        fuse_reply_err(req, errno);
    else
        fuse_reply_statfs(req, &sv);
}
