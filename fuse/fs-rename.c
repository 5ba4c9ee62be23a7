/* mv: renaming a clone within its source folder, and passing renames
 * through where the mount shows real files. */
#include "config.h"
#include "fs-internal.h"
#include "clone-rename.h"
#include "vcf-error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Names the kernel may still hold in a renamed clone's folder: its old
 * disk names. Dropped from its cache once the rename is answered. */
typedef struct {
    fuse_ino_t dir;
    GPtrArray *names;
} Stale;

static void stale_forget(VcfMount *m, Stale *st)
{
    for (guint i = 0; st->names != NULL && i < st->names->len; i++) {
        const char *n = st->names->pdata[i];
        /* Not while the rename is in flight: the kernel holds its folders. */
        fuse_lowlevel_notify_inval_entry(m->se, st->dir, n, strlen(n));
    }
    g_clear_pointer(&st->names, g_ptr_array_unref);
}

/* mv clones/SRC/FROM clones/SRC/TO. m->ns_lock held. */
static int rename_clone(VcfMount *m, const char *source, const char *from, const char *to,
                        char **why, Stale *stale)
{
    int err = 0;
    g_autoptr(VcfCloneInfo) info = clone_at_rest(m, source, from, "mv", &err, why);
    if (info == NULL)
        return err;
    g_mutex_lock(&m->lock);
    OpenClone *oc = open_clone_steal(m, from);
    g_mutex_unlock(&m->lock);
    GError *error = NULL;
    if (oc != NULL) {
        /* Closed properly: its data stays, under the new name. */
        copy_stop(oc);
        if (!vcf_clone_close(oc->clone, &error)) {
            g_warning("mv clones/%s/%s: closing it: %s", source, from, error->message);
            g_clear_error(&error);
        }
        oc->clone = NULL;
        open_clone_discard(oc);
    }
    g_autofree char *warning = NULL;
    gboolean ok = vcf_clone_rename(m->lib, from, to, &warning, &error);
    g_autofree char *mf = g_strdup_printf("%s/%s/%s", CLONES_DIR, source, from);
    if (ok) {
        g_autofree char *mt = g_strdup_printf("%s/%s/%s", CLONES_DIR, source, to);
        g_autofree char *rf = g_build_filename(vcf_library_store_root(m->lib), from, NULL);
        g_autofree char *rt = g_build_filename(vcf_library_store_root(m->lib), to, NULL);
        g_mutex_lock(&m->lock);
        Node *c = g_hash_table_lookup(m->nodes.by_path, mf);
        if (c != NULL && m->se != NULL) {
            stale->dir = c->ino;
            stale->names = g_ptr_array_new_with_free_func(g_free);
            for (guint i = 0; i < info->stems->len; i++) {
                g_ptr_array_add(stale->names, g_strconcat(info->stems->pdata[i], ".vmdk", NULL));
                g_ptr_array_add(stale->names, g_strconcat(info->stems->pdata[i], "-flat.vmdk", NULL));
            }
        }
        node_move_clone(&m->nodes, mf, mt, rf, rt, to);
        g_mutex_unlock(&m->lock);
    }
    at_rest_done(m, from, NULL, FALSE, FALSE);
    if (warning != NULL)
        g_warning("mv clones/%s/%s to %s: %s", source, from, to, warning);
    const char *now = ok ? to : from;
    GError *local = NULL;
    OpenClone *reopened = open_clone_now(m, now, &local);
    if (reopened == NULL) {
        g_warning("clone %s does not open after mv: %s", now, local->message);
        g_error_free(local);
    } else if (reopened->info != NULL && copy_wanted(reopened->info)
               && !copy_start(m, now, reopened, &local)) {
        g_warning("clone %s: the full copy cannot go on after mv: %s", now, local->message);
        g_error_free(local);
    }
    if (!ok) {
        *why = g_strdup_printf("mv clones/%s/%s to %s: %s", source, from, to, error->message);
        err = vcf_error_errno(error);
        g_error_free(error);
        return err;
    }
    g_message("renamed clone %s to %s", from, to);
    return 0;
}

void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
               fuse_ino_t newparent, const char *newname, unsigned int flags)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *why = NULL;
    int err = 0;
    Stale stale = { 0 };
    g_mutex_lock(&m->ns_lock);
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    Node *np = node_get(&m->nodes, newparent);
    g_autofree char *from = NULL, *to = NULL;
    guint index;
    gboolean flat;
    g_autoptr(VcfCloneInfo) owned = NULL;
    const VcfCloneInfo *info = p && p->kind == NODE_CLONE ? clone_info_locked(m, p->clone, &owned)
                                                          : NULL;
    if (p == NULL || np == NULL) {
        err = ENOENT;
    } else if (flags & ~(unsigned int)RENAME_NOREPLACE) {
        /* Exchanging two names would have to swap whole subtrees of our
         * nodes, and no tool a user runs needs it. */
        err = EINVAL;
        why = g_strdup_printf("rename %s/%s: only plain renames (and RENAME_NOREPLACE) are "
                              "supported, not flags %#x", p->path, name, flags);
    } else if (p->kind == NODE_SOURCE) {
        if (np != p) {
            /* Not EXDEV: mv and file managers would fall back to a mkdir
             * there, which makes a clone, and a copy into it. */
            err = EINVAL;
            why = g_strdup_printf("mv %s/%s: a clone stays in its source folder %s; mv it "
                                  "within that folder to rename it", p->path, name, p->path);
            g_autofree char *src = g_strdup(p->source);
            g_mutex_unlock(&m->lock);
            note_refusal(m, src, why);
            g_mutex_lock(&m->lock);
        } else {
            g_autofree char *source = g_strdup(p->source);
            g_mutex_unlock(&m->lock);
            err = rename_clone(m, source, name, newname, &why, &stale);
            if (err != 0)
                note_refusal(m, source, why ? why : g_strerror(err));
            g_mutex_lock(&m->lock);
        }
    } else if ((p->kind == NODE_CLONE && clone_disk_name(m, p, name, &index, &flat))
               || p->kind == NODE_CLONES || (p->kind == NODE_ROOT && g_str_equal(name, CLONES_DIR))) {
        err = EPERM;
        why = g_strdup_printf("rename %s/%s: a clone's disks keep their names; mv the clone "
                              "folder to rename the clone", p->path, name);
    } else if (info != NULL && vcf_clone_is_config(info, name)) {
        err = EPERM;
        why = g_strdup_printf("rename %s/%s: the clone's own config keeps its name; mv the "
                              "clone folder to rename the clone", p->path, name);
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
    g_mutex_unlock(&m->ns_lock);
    reply_errno(req, err, why);
    stale_forget(m, &stale);
}
