/* Operations that change the namespace: mkdir makes clones, rmdir deletes
 * them; the rest is passed through where the mount shows real files. */
#include "config.h"
#include "fs-internal.h"
#include "vcf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The real folder behind PARENT for making NAME in it, or NULL with *ERR. */
static char *real_child(VcfMount *m, const Node *parent, const char *name, int *err,
                        char **why)
{
    if (parent->kind != NODE_ROOT && parent->kind != NODE_PASS && parent->kind != NODE_CLONE) {
        *err = EPERM;
        *why = g_strdup_printf("%s: only mkdir of a new clone works here", parent->path);
        return NULL;
    }
    if (parent->kind == NODE_ROOT && (g_str_equal(name, "clones") || g_str_equal(name, ".vmclonefs"))) {
        *err = EEXIST;
        return NULL;
    }
    if (parent->kind == NODE_CLONE) {
        guint i;
        gboolean flat;
        if (clone_disk_name(m, parent, name, &i, &flat)) {
            *err = EEXIST;
            return NULL;
        }
        if (clone_reserved_name(name)) {
            *err = EPERM;
            *why = g_strdup_printf("%s/%s: this name is reserved for the clone's own state",
                                   parent->path, name);
            return NULL;
        }
    }
    return g_build_filename(parent->real, name, NULL);
}

static void reply_new_entry(fuse_req_t req, VcfMount *m, Node *parent, const char *name)
{
    struct fuse_entry_param e;
    GError *error = NULL;
    if (lookup_locked(m, parent, name, &e, &error)) {
        g_mutex_unlock(&m->lock);
        fuse_reply_entry(req, &e);
    } else {
        g_mutex_unlock(&m->lock);
        reply_gerror(req, error);
    }
}

static void mkdir_locked(fuse_req_t req, VcfMount *m, fuse_ino_t parent, const char *name,
                         mode_t mode)
{
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    if (p == NULL) {
        g_mutex_unlock(&m->lock);
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (p->kind == NODE_SOURCE) {
        GError *error = NULL;
        gint64 t0 = g_get_monotonic_time();
        /* mkdir returns once the clone exists: wait for the job. */
        g_autoptr(VcfJob) job = vcf_clone_create_job(m->lib, p->source, name, NULL, NULL);
        if (!vcf_job_wait(job, &error)) {
            g_mutex_unlock(&m->lock);
            g_prefix_error(&error, "mkdir clones/%s/%s: ", p->source, name);
            /* A failed mkdir always says why, ENOENT included (a missing
             * disk), unlike the lookups reply_gerror keeps quiet about. */
            g_warning("%s", error->message);
            fuse_reply_err(req, vcf_error_errno(error));
            g_error_free(error);
            return;
        }
        g_message("made linked clone %s of %s in %.1f ms", name, p->source,
                  (g_get_monotonic_time() - t0) / 1000.0);
        if (open_clone_locked(m, name, &error) == NULL) {
            /* A clone we cannot open would leave its parents unprotected:
             * it goes again, and mkdir says why. */
            g_prefix_error(&error, "mkdir clones/%s/%s: the new clone does not open: ",
                           p->source, name);
            vcf_clone_delete(m->lib, name, NULL);
            g_mutex_unlock(&m->lock);
            reply_gerror(req, error);
            return;
        }
        reply_new_entry(req, m, p, name);
        return;
    }
    if (p->kind == NODE_CLONES) {
        g_mutex_unlock(&m->lock);
        reply_errno(req, EPERM, NULL);
        g_warning("mkdir clones/%s: make a clone inside clones/SOURCE/, for example "
                  "mkdir clones/VM/%s", name, name);
        return;
    }
    int err = 0;
    g_autofree char *why = NULL;
    g_autofree char *real = real_child(m, p, name, &err, &why);
    if (real != NULL && mkdir(real, mode) < 0)
        err = errno;
    if (err != 0) {
        g_mutex_unlock(&m->lock);
        reply_errno(req, err, why);
        return;
    }
    reply_new_entry(req, m, p, name);
}

void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    VcfMount *m = VCF_MOUNT(req);
    /* No write reaches a passed-through disk while a clone may be freezing
     * it; the writes that come after see it protected. */
    g_rw_lock_writer_lock(&m->pass_writes);
    mkdir_locked(req, m, parent, name, mode);
    g_rw_lock_writer_unlock(&m->pass_writes);
}

static void forget_hidden_under(VcfMount *m, const char *path)
{
    GHashTableIter it;
    gpointer k;
    gsize n = strlen(path);
    g_hash_table_iter_init(&it, m->hidden);
    while (g_hash_table_iter_next(&it, &k, NULL))
        if (strncmp(k, path, n) == 0 && ((char *)k)[n] == '/')
            g_hash_table_iter_remove(&it);
}

/* rmdir of a clone folder deletes the clone, whatever the folder holds:
 * that is what the user asked for, and rm -r gets there the same way. */
static int remove_clone(VcfMount *m, const Node *p, const char *name, char **why)
{
    g_autofree char *path = g_strconcat(p->path, "/", name, NULL);
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(m->lib, name, NULL);
    if (info == NULL || g_strcmp0(info->source, p->source) != 0)
        return ENOENT;
    OpenClone *oc = g_hash_table_lookup(m->clones, name);
    if (oc != NULL && oc->handles > 0) {
        *why = g_strdup_printf("rmdir %s: the clone's disk is open (%u handles); close it first",
                               path, oc->handles);
        return EBUSY;
    }
    g_hash_table_remove(m->clones, name);   /* syncs and closes */
    GError *error = NULL;
    gboolean ok = vcf_clone_delete(m->lib, name, &error);
    /* Protection follows the clones still open: reopened on next use if
     * the delete failed before it took the clone away. */
    protect_refresh(m);
    if (!ok) {
        *why = g_strdup_printf("rmdir %s: %s", path, error->message);
        int err = vcf_error_errno(error);
        g_error_free(error);
        if (open_clone_locked(m, name, NULL) != NULL)
            protect_refresh(m);
        return err;
    }
    forget_hidden_under(m, path);
    g_message("deleted clone %s", name);
    return 0;
}

void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *why = NULL;
    int err = 0;
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    if (p == NULL) {
        err = ENOENT;
    } else if (p->kind == NODE_SOURCE) {
        err = remove_clone(m, p, name, &why);
    } else if (p->kind == NODE_ROOT || p->kind == NODE_PASS || p->kind == NODE_CLONE) {
        g_autofree char *real = g_build_filename(p->real, name, NULL);
        const char *who = protected_by(m, real);
        if (who != NULL) {
            err = EBUSY;
            why = g_strdup_printf("rmdir %s/%s: linked clone %s reads a disk in it",
                                  p->path, name, who);
        } else if (p->kind == NODE_ROOT && g_str_equal(name, "clones")) {
            err = EPERM;
        } else if (rmdir(real) < 0) {
            err = errno;
        }
    } else if (p->kind == NODE_CLONES) {
        err = EPERM;
        why = g_strdup_printf("rmdir clones/%s: a source folder lists what can be cloned and "
                              "cannot be removed; rmdir clones/%s/NAME deletes clone NAME",
                              name, name);
    } else {
        err = EPERM;
    }
    g_mutex_unlock(&m->lock);
    reply_errno(req, err, why);
}

void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *why = NULL;
    int err = 0;
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    guint index;
    gboolean flat;
    if (p == NULL) {
        err = ENOENT;
    } else if (p->kind == NODE_CLONE && clone_disk_name(m, p, name, &index, &flat)) {
        OpenClone *oc = g_hash_table_lookup(m->clones, p->clone);
        if (oc != NULL && oc->handles > 0) {
            /* rm -r of a clone in use fails as a whole, as its rmdir will. */
            err = EBUSY;
            why = g_strdup_printf("rm %s/%s: the clone's disk is open (%u handles); close it "
                                  "first", p->path, name, oc->handles);
        } else {
            /* The disk stays in the store; it only leaves the listing, so
             * that rm -r of a clone folder gets to the rmdir that deletes it. */
            g_hash_table_add(m->hidden, node_child_path(p, name));
        }
    } else if (p->kind == NODE_ROOT || p->kind == NODE_PASS || p->kind == NODE_CLONE) {
        g_autofree char *real = g_build_filename(p->real, name, NULL);
        const char *who = protected_by(m, real);
        if (who != NULL) {
            err = EBUSY;
            why = g_strdup_printf("rm %s/%s: linked clone %s reads this file", p->path, name, who);
        } else if (p->kind == NODE_CLONE && clone_reserved_name(name)) {
            err = ENOENT;
        } else if (unlink(real) < 0) {
            err = errno;
        }
    } else {
        err = EPERM;
    }
    g_mutex_unlock(&m->lock);
    reply_errno(req, err, why);
}

void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
               fuse_ino_t newparent, const char *newname, unsigned int flags)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *why = NULL;
    int err = 0;
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    Node *np = node_get(&m->nodes, newparent);
    g_autofree char *from = NULL, *to = NULL;
    guint index;
    gboolean flat;
    if (p == NULL || np == NULL) {
        err = ENOENT;
    } else if ((p->kind == NODE_CLONE && clone_disk_name(m, p, name, &index, &flat))
               || p->kind == NODE_SOURCE || p->kind == NODE_CLONES
               || (p->kind == NODE_ROOT && g_str_equal(name, "clones"))) {
        err = EPERM;
        why = g_strdup_printf("rename %s/%s: clones and their disks keep their names",
                              p->path, name);
    } else if (p->kind != NODE_ROOT && p->kind != NODE_PASS && p->kind != NODE_CLONE) {
        err = EPERM;
    } else if ((to = real_child(m, np, newname, &err, &why)) != NULL) {
        from = g_build_filename(p->real, name, NULL);
        const char *who = protected_by(m, from);
        const char *who_to = protected_by(m, to);
        if (who != NULL || who_to != NULL) {
            err = EBUSY;
            why = g_strdup_printf("rename %s/%s: linked clone %s reads it", p->path, name,
                                  who ? who : who_to);
        } else if (renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) < 0) {
            err = errno;
        } else {
            g_autofree char *mf = node_child_path(p, name);
            g_autofree char *mt = node_child_path(np, newname);
            node_move(&m->nodes, mf, mt, from, to);
        }
    }
    g_mutex_unlock(&m->lock);
    reply_errno(req, err, why);
}

void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *why = NULL;
    int err = 0;
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    g_autofree char *real = p ? real_child(m, p, name, &err, &why) : NULL;
    if (p == NULL)
        err = ENOENT;
    else if (real != NULL && symlink(link, real) < 0)
        err = errno;
    if (err != 0) {
        g_mutex_unlock(&m->lock);
        reply_errno(req, err, why);
        return;
    }
    reply_new_entry(req, m, p, name);
}
