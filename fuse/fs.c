/* The mount's namespace: what each path is, its attributes, listings. */
#include "config.h"
#include "fs-internal.h"
#include "flat-descriptor.h"
#include "vcf-error.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define CLONES_DIR "clones"
#define STATE_DIR ".vmclonefs"
/* A readdir entry's number before lookup gives the real one; libc skips 0. */
#define UNKNOWN_INO 0xffffffffu

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

/* ---- the mount's state -------------------------------------------------- */

static void open_clone_free(gpointer p)
{
    OpenClone *oc = p;
    GError *error = NULL;
    if (!vcf_clone_close(oc->clone, &error)) {
        g_warning("closing a clone: %s", error->message);
        g_error_free(error);
    }
    g_free(oc);
}

static char *file_id(dev_t dev, ino_t ino)
{
    return g_strdup_printf("%ju:%ju", (uintmax_t)dev, (uintmax_t)ino);
}

/* By path, for the namespace operations; by device and inode, for handles
 * opened earlier whose file may have been renamed or linked since. */
static void protect_file(VcfMount *m, const char *path, const char *clone)
{
    g_hash_table_insert(m->protected, g_strdup(path), g_strdup(clone));
    struct stat st;
    if (stat(path, &st) == 0)
        g_hash_table_insert(m->protected_ids, file_id(st.st_dev, st.st_ino), g_strdup(clone));
}

const char *protected_fd_by(VcfMount *m, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return NULL;
    g_autofree char *id = file_id(st.st_dev, st.st_ino);
    return g_hash_table_lookup(m->protected_ids, id);
}

OpenClone *open_clone_locked(VcfMount *m, const char *name, GError **error)
{
    OpenClone *oc = g_hash_table_lookup(m->clones, name);
    if (oc != NULL)
        return oc;
    VcfClone *c = vcf_clone_open(m->lib, name, m->n_chains, error);
    if (c == NULL)
        return NULL;
    oc = g_new0(OpenClone, 1);
    oc->clone = c;
    g_hash_table_insert(m->clones, g_strdup(name), oc);
    GPtrArray *files = vcf_clone_parent_files(c);
    for (guint i = 0; i < files->len; i++)
        protect_file(m, g_ptr_array_index(files, i), name);
    g_atomic_int_inc(&m->protect_gen);
    return oc;
}

void protect_refresh(VcfMount *m)
{
    g_hash_table_remove_all(m->protected);
    g_hash_table_remove_all(m->protected_ids);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, m->clones);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        GPtrArray *files = vcf_clone_parent_files(((OpenClone *)v)->clone);
        for (guint i = 0; i < files->len; i++)
            protect_file(m, g_ptr_array_index(files, i), k);
    }
    g_atomic_int_inc(&m->protect_gen);
}

char *disk_descriptor(const char *stem, VcfDisk *disk)
{
    VcfSparse *store = vcf_disk_get_store(disk);
    VcfGeometry geo;
    vcf_sparse_get_geometry(store, &geo);
    return vcf_flat_descriptor(stem, vcf_disk_get_size(disk), vcf_sparse_get_cid(store), &geo);
}

const char *protected_by(VcfMount *m, const char *real)
{
    g_autofree char *rp = realpath(real, NULL);
    const char *path = rp ? rp : real;
    const char *who = g_hash_table_lookup(m->protected, path);
    if (who != NULL)
        return who;
    /* A folder holding a protected file is protected too: moving or
     * removing it would take the file away from its clones. */
    gsize n = strlen(path);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, m->protected);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (strncmp(k, path, n) == 0 && ((char *)k)[n] == '/')
            return v;
    return NULL;
}

gboolean vcf_mount_init(VcfMount *m, const char *library, guint n_chains,
                        double timeout, GError **error)
{
    memset(m, 0, sizeof *m);
    m->lib = vcf_library_open(library, error);
    if (m->lib == NULL)
        return FALSE;
    /* A second daemon is refused here, before the leftovers and clones
     * below are touched. */
    if (!vcf_library_lock(m->lib, error)) {
        g_clear_pointer(&m->lib, vcf_library_free);
        return FALSE;
    }
    m->root = g_strdup(vcf_library_root(m->lib));
    m->n_chains = n_chains ? n_chains : 1;
    m->timeout = timeout;
    g_mutex_init(&m->lock);
    g_rw_lock_init(&m->pass_writes);
    g_mutex_init(&m->sync_lock);
    g_cond_init(&m->sync_cond);
    node_table_init(&m->nodes, m->root);
    m->clones = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, open_clone_free);
    m->hidden = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    m->protected = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    m->protected_ids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    m->open_files = g_hash_table_new(g_direct_hash, g_direct_equal);
    m->open_dirs = g_hash_table_new_full(g_direct_hash, g_direct_equal,
                                         (GDestroyNotify)g_ptr_array_unref, NULL);
    guint left = vcf_clone_remove_leftovers(m->lib);
    if (left > 0)
        g_message("removed %u clone folders a crash left half made or half deleted", left);
    /* Open every clone now: that is what protects their parents, and a
     * broken clone is reported at mount time rather than at first read. */
    g_autoptr(GPtrArray) names = vcf_clone_list(m->lib);
    for (guint i = 0; i < names->len; i++) {
        GError *local = NULL;
        if (open_clone_locked(m, g_ptr_array_index(names, i), &local) == NULL) {
            g_warning("%s", local->message);
            g_error_free(local);
        }
    }
    return TRUE;
}

void vcf_mount_clear(VcfMount *m)
{
    if (m->syncer != NULL) {
        g_mutex_lock(&m->sync_lock);
        m->stopping = TRUE;
        g_cond_signal(&m->sync_cond);
        g_mutex_unlock(&m->sync_lock);
        g_thread_join(m->syncer);
        m->syncer = NULL;
    }
    if (m->clones != NULL) {
        open_files_free_all(m);
        g_hash_table_destroy(m->open_files);
        g_hash_table_destroy(m->open_dirs);  /* frees the listings left */
        g_hash_table_destroy(m->clones);   /* syncs and closes every disk */
        g_hash_table_destroy(m->hidden);
        g_hash_table_destroy(m->protected);
        g_hash_table_destroy(m->protected_ids);
        node_table_clear(&m->nodes);
        m->clones = NULL;
    }
    if (m->lib != NULL)
        g_rw_lock_clear(&m->pass_writes);   /* glib allocates it on first use */
    vcf_library_free(m->lib);
    m->lib = NULL;
    g_free(m->root);
    m->root = NULL;
}

/* ---- what a name is ---------------------------------------------------- */

gboolean clone_reserved_name(const char *name)
{
    return g_str_equal(name, "clone.ini") || g_str_has_suffix(name, ".xxh");
}

gboolean clone_disk_name(VcfMount *m, const Node *dir, const char *name,
                         guint *index, gboolean *is_flat)
{
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(m->lib, dir->clone, NULL);
    if (info == NULL)
        return FALSE;
    for (guint i = 0; i < info->stems->len; i++) {
        const char *stem = g_ptr_array_index(info->stems, i);
        g_autofree char *desc = g_strconcat(stem, ".vmdk", NULL);
        g_autofree char *flat = g_strconcat(stem, "-flat.vmdk", NULL);
        if (g_str_equal(name, desc) || g_str_equal(name, flat)) {
            *index = i;
            *is_flat = g_str_equal(name, flat);
            return TRUE;
        }
    }
    return FALSE;
}

static gboolean no_entry(GError **error, const char *path)
{
    g_set_error(error, VCF_ERROR, ENOENT, "%s: no such file in the mount", path);
    return FALSE;
}

/* Fills TMPL for NAME under PARENT, checking it exists. */
static gboolean classify(VcfMount *m, const Node *parent, const char *name,
                         Node *tmpl, GError **error)
{
    memset(tmpl, 0, sizeof *tmpl);
    g_autofree char *path = node_child_path(parent, name);
    if (g_str_equal(name, ".") || g_str_equal(name, "..")
        || g_hash_table_contains(m->hidden, path))
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
        if (vm != NULL && snap != NULL && vcf_vm_find_snapshot(vm, snap + 1) == NULL)
            g_set_error(&why, VCF_ERROR, ENOENT, "VM %s has no snapshot named \"%s\"",
                        vm->name, snap + 1);
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
        g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(m->lib, name, NULL);
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
        if (clone_reserved_name(name))
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
    case NODE_DESC:
    case NODE_FLAT: {
        OpenClone *oc = open_clone_locked(m, n->clone, error);
        if (oc == NULL)
            return FALSE;
        if (n->disk >= vcf_clone_n_disks(oc->clone))
            return no_entry(error, n->path);
        VcfDisk *disk = vcf_clone_get_disk(oc->clone, n->disk);
        VcfSparse *store = vcf_disk_get_store(disk);
        if (!stat_path(vcf_sparse_get_path(store), st, error))
            return FALSE;
        if (n->kind == NODE_FLAT) {
            st->st_mode = S_IFREG | 0644;
            st->st_size = vcf_disk_get_size(disk);
            /* st_blocks stays the store's: what the clone costs on disk. */
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
        fuse_reply_entry(req, &e);
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
    if (n->real == NULL || n->kind != NODE_PASS)
        return to_set & ~(FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW
                          | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME) ? EPERM : 0;
    if (to_set & FUSE_SET_ATTR_SIZE) {
        const char *who = protected_by(m, n->real);
        if (who != NULL) {
            *why = g_strdup_printf("%s: linked clone %s reads this file; it cannot be truncated",
                                   n->path, who);
            return EBUSY;
        }
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
    GError *error = NULL;
    g_autofree char *target = g_file_read_link(real, &error);
    if (target == NULL) {
        int e = error->code == G_FILE_ERROR_INVAL ? EINVAL : EIO;
        g_error_free(error);
        fuse_reply_err(req, e);
        return;
    }
    fuse_reply_readlink(req, target);
}

/* ---- listings ------------------------------------------------------------ */

typedef struct {
    char *name;
    mode_t type;
} DirEntry;

static void dir_entry_free(gpointer p)
{
    DirEntry *d = p;
    g_free(d->name);
    g_free(d);
}

static void add_entry(GPtrArray *list, const char *name, mode_t type)
{
    DirEntry *d = g_new(DirEntry, 1);
    d->name = g_strdup(name);
    d->type = type;
    g_ptr_array_add(list, d);
}

/* The real folder's entries, less what the mount hides. */
static void list_real(GPtrArray *list, const char *dir, const Node *n, VcfMount *m)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (g_str_equal(name, ".") || g_str_equal(name, ".."))
            continue;
        if (n->kind == NODE_ROOT && (g_str_equal(name, STATE_DIR) || g_str_equal(name, CLONES_DIR)))
            continue;
        if (n->kind == NODE_CLONE) {
            guint i;
            gboolean flat;
            /* Store deltas are shown as flat descriptors, added below. */
            if (clone_reserved_name(name) || clone_disk_name(m, n, name, &i, &flat))
                continue;
        }
        g_autofree char *path = node_child_path(n, name);
        if (g_hash_table_contains(m->hidden, path))
            continue;
        add_entry(list, name, (mode_t)DTTOIF(e->d_type));
    }
    if (d != NULL)
        closedir(d);
}

static GPtrArray *list_node(VcfMount *m, const Node *n)
{
    GPtrArray *list = g_ptr_array_new_with_free_func(dir_entry_free);
    add_entry(list, ".", S_IFDIR);
    add_entry(list, "..", S_IFDIR);
    switch (n->kind) {
    case NODE_ROOT:
        add_entry(list, CLONES_DIR, S_IFDIR);
        list_real(list, n->real, n, m);
        break;
    case NODE_PASS:
        list_real(list, n->real, n, m);
        break;
    case NODE_CLONES: {
        g_autoptr(GPtrArray) vms = vcf_library_list_vms(m->lib);
        for (guint i = 0; i < vms->len; i++) {
            const char *name = g_ptr_array_index(vms, i);
            /* Listed only if lookup will find it: a VM whose .vmx does not
             * load is left out (its lookup logs why), like a folder with none. */
            g_autoptr(VcfVm) vm = vcf_library_load_vm(m->lib, name, NULL);
            if (vm != NULL)
                add_entry(list, name, S_IFDIR);
            for (guint j = 0; vm != NULL && j < vm->snapshots->len; j++) {
                const VcfSnapshot *s = g_ptr_array_index(vm->snapshots, j);
                g_autofree char *sn = g_strdup_printf("%s@%s", name, s->display_name);
                /* Snapshots that share a name are one folder (whose mkdir
                 * explains why it cannot choose). */
                if (strchr(s->display_name, '/') == NULL && strlen(sn) < 255
                    && vcf_vm_find_snapshot(vm, s->display_name) == s)
                    add_entry(list, sn, S_IFDIR);
            }
        }
        break;
    }
    case NODE_SOURCE: {
        g_autoptr(GPtrArray) names = vcf_clone_list(m->lib);
        for (guint i = 0; i < names->len; i++) {
            g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(m->lib, g_ptr_array_index(names, i), NULL);
            if (info != NULL && g_strcmp0(info->source, n->source) == 0)
                add_entry(list, info->name, S_IFDIR);
        }
        break;
    }
    case NODE_CLONE: {
        list_real(list, n->real, n, m);
        g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(m->lib, n->clone, NULL);
        for (guint i = 0; info != NULL && i < info->stems->len; i++) {
            const char *stem = g_ptr_array_index(info->stems, i);
            g_autofree char *desc = g_strconcat(stem, ".vmdk", NULL);
            g_autofree char *flat = g_strconcat(stem, "-flat.vmdk", NULL);
            g_autofree char *dp = node_child_path(n, desc);
            g_autofree char *fp = node_child_path(n, flat);
            if (!g_hash_table_contains(m->hidden, dp))
                add_entry(list, desc, S_IFREG);
            if (!g_hash_table_contains(m->hidden, fp))
                add_entry(list, flat, S_IFREG);
        }
        break;
    }
    default:
        break;
    }
    return list;
}

void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VcfMount *m = VCF_MOUNT(req);
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    GPtrArray *list = n ? list_node(m, n) : NULL;
    g_mutex_unlock(&m->lock);
    if (list == NULL) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)list;
    g_mutex_lock(&m->lock);
    g_hash_table_add(m->open_dirs, list);
    g_mutex_unlock(&m->lock);
    if (fuse_reply_open(req, fi) == -ENOENT) {
        g_mutex_lock(&m->lock);
        g_hash_table_remove(m->open_dirs, list);
        g_mutex_unlock(&m->lock);
    }
}

void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info *fi)
{
    GPtrArray *list = (GPtrArray *)(uintptr_t)fi->fh;
    g_autofree char *buf = g_malloc(size);
    size_t used = 0;
    for (guint i = off; i < list->len; i++) {
        DirEntry *d = g_ptr_array_index(list, i);
        /* The real number comes with lookup; a non-zero one keeps libc happy. */
        struct stat st = { .st_ino = UNKNOWN_INO, .st_mode = d->type };
        size_t need = fuse_add_direntry(req, buf + used, size - used, d->name, &st, i + 1);
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
}

void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VcfMount *m = VCF_MOUNT(req);
    g_mutex_lock(&m->lock);
    g_hash_table_remove(m->open_dirs, (gpointer)(uintptr_t)fi->fh);   /* frees it */
    g_mutex_unlock(&m->lock);
    fuse_reply_err(req, 0);
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
