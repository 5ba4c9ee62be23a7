/* Operations that change the namespace: mkdir makes clones, rmdir and rm
 * delete them (mv, in fs-rename.c, renames them); the rest is passed through
 * where the mount shows real files. Each clone change holds m->ns_lock across its I/O and
 * m->lock only to look at or change the tables. */
#include "config.h"
#include "fs-internal.h"
#include "clone-rename.h"
#include "vcf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* GIO and the freedesktop.org spec trash into MOUNT/.Trash-UID or
 * MOUNT/.Trash/UID; without one the file manager offers to delete. */
static gboolean is_trash_name(const char *name)
{
    return g_str_equal(name, ".Trash") || g_str_has_prefix(name, ".Trash-");
}

/* The real folder behind PARENT for making NAME in it, or NULL with *ERR.
 * m->lock held. */
char *real_child(VcfMount *m, const Node *parent, const char *name, int *err,
                 char **why)
{
    if (parent->kind != NODE_ROOT && parent->kind != NODE_PASS && parent->kind != NODE_CLONE) {
        *err = EPERM;
        *why = g_strdup_printf("%s: only mkdir of a new clone works here", parent->path);
        return NULL;
    }
    if (parent->kind == NODE_ROOT && (g_str_equal(name, CLONES_DIR) || g_str_equal(name, STATE_DIR))) {
        *err = EEXIST;
        return NULL;
    }
    if (parent->kind == NODE_ROOT && vcf_clone_exists(m->lib, name)) {
        /* clones/NAME is that clone's source folder: a VM there would take it. */
        *err = EEXIST;
        *why = g_strdup_printf("%s: a clone has this name; a library folder may not take it",
                               name);
        return NULL;
    }
    if (parent->kind == NODE_ROOT && is_trash_name(name)) {
        *err = EPERM;
        *why = g_strdup_printf("%s: vmclonefs keeps no trash folder in the library; "
                               "delete instead (rmdir or rm -r deletes a clone)", name);
        return NULL;
    }
    if (parent->kind == NODE_CLONE && g_str_equal(name, STATUS_FILE)) {
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
        if (clone_hidden_name(m, parent, name)) {
            *err = EPERM;
            *why = g_strdup_printf("%s/%s: this name is reserved for the clone's own state",
                                   parent->path, name);
            return NULL;
        }
    }
    return g_build_filename(parent->real, name, NULL);
}

/* Replies with the entry of NAME, just made under PARENT. m->lock held;
 * released here. */
static void reply_new_entry(fuse_req_t req, VcfMount *m, Node *parent, const char *name)
{
    struct fuse_entry_param e;
    GError *error = NULL;
    gboolean ok = lookup_locked(m, parent, name, &e, &error);
    g_mutex_unlock(&m->lock);
    if (ok)
        reply_entry_counted(req, m, &e);
    else
        reply_gerror(req, error);
}

/* Lines of the source's config that could not be read: a clone copies
 * them as they are, and the user hears of them where they look. */
static void log_source_warnings(VcfMount *m, const char *source, const char *name)
{
    g_autofree char *vm_name = g_strndup(source, strcspn(source, "@"));
    g_autoptr(VcfVm) vm = vcf_library_load_vm(m->lib, vm_name, NULL);
    for (guint i = 0; vm != NULL && i < vm->warnings->len; i++)
        g_message("mkdir clones/%s/%s: kept as it is: %s", source, name,
                  (const char *)g_ptr_array_index(vm->warnings, i));
}

void note_refusal(VcfMount *m, const char *source, const char *why)
{
    g_mutex_lock(&m->lock);
    g_hash_table_insert(m->refusals, g_strdup(source), g_strdup(why));
    g_mutex_unlock(&m->lock);
}

gboolean source_full_locked(VcfMount *m, const char *source)
{
    const char *t = g_hash_table_lookup(m->source_types, source);
    return t != NULL ? g_str_equal(t, "full") : m->full_default;
}

gboolean full_allowed(VcfMount *m, const char *source, GError **error)
{
    if (vcf_clone_exists(m->lib, source))
        return TRUE;
    g_autofree char *vm_name = g_strndup(source, strcspn(source, "@"));
    g_autoptr(VcfVm) vm = vcf_library_load_vm(m->lib, vm_name, NULL);
    if (vm == NULL || vm->power != VCF_POWER_ON)
        return TRUE;
    g_set_error(error, VCF_ERROR, EBUSY, "VM %s is powered on: a full clone needs it powered "
                "off or suspended (VIX_E_VM_IS_RUNNING); a linked clone of a snapshot does not",
                vm_name);
    return FALSE;
}

/* A full clone of a suspended VM reads its disks until it is full: one
 * resumed in VMware meanwhile breaks it (vcf_disk_check_parent). */
static void warn_if_suspended(VcfMount *m, const char *source, const char *name)
{
    if (strchr(source, '@') != NULL || vcf_clone_exists(m->lib, source))
        return;
    g_autoptr(VcfVm) vm = vcf_library_load_vm(m->lib, source, NULL);
    if (vm != NULL && vm->power == VCF_POWER_SUSPENDED)
        g_message("clone %s of suspended VM %s copies its disks as they are (the clone boots "
                  "as after a power cut): do not resume %s until %s is full, or %s breaks",
                  name, source, source, name, name);
}

/* mkdir clones/SOURCE/NAME. m->ns_lock held. */
static void make_clone(fuse_req_t req, VcfMount *m, fuse_ino_t parent, const char *source,
                       const char *name)
{
    GError *error = NULL;
    gint64 t0 = g_get_monotonic_time();
    g_mutex_lock(&m->lock);
    gboolean full = source_full_locked(m, source);
    g_mutex_unlock(&m->lock);
    log_source_warnings(m, source, name);
    if (full && !full_allowed(m, source, &error)) {
        g_prefix_error(&error, "mkdir clones/%s/%s: ", source, name);
        note_refusal(m, source, error->message);
        reply_gerror(req, error);
        return;
    }
    /* A clone as the source is frozen through its open disks. It stays in
     * m->clones meanwhile: it leaves only under ns_lock, which we hold. */
    OpenClone *src = strchr(source, '@') == NULL && vcf_clone_exists(m->lib, source)
        ? open_clone_now(m, source, NULL) : NULL;
    /* A freeze would move what the copy has done below its store, and its
     * promotion would then drop it: one or the other. */
    if (src != NULL && copy_running(m, src)) {
        g_set_error(&error, VCF_ERROR, EBUSY, "mkdir clones/%s/%s: clone %s is being copied "
                    "to a full clone; clone it once its copy is done (state full)", source,
                    name, source);
        note_refusal(m, source, error->message);
        reply_gerror(req, error);
        return;
    }
    /* mkdir returns once the clone exists: wait for the job. */
    VcfClone *opened = NULL;
    g_autoptr(VcfJob) job = vcf_clone_create_job(m->lib, source, name, src ? src->clone : NULL,
                                                 full, m->n_chains, &opened, NULL, NULL);
    gboolean made = vcf_job_wait(job, &error);
    if (src != NULL) {
        /* Its layers changed: so did the files it protects. */
        g_mutex_lock(&m->lock);
        protect_refresh(m);
        g_mutex_unlock(&m->lock);
    }
    if (!made) {
        g_prefix_error(&error, "mkdir clones/%s/%s: ", source, name);
        note_refusal(m, source, error->message);
        /* A failed mkdir always says why, ENOENT included (a missing
         * disk), unlike the lookups reply_gerror keeps quiet about. */
        g_warning("%s", error->message);
        fuse_reply_err(req, vcf_error_errno(error));
        g_error_free(error);
        return;
    }
    if (open_clone_publish(m, name, opened, &error) == NULL) {
        /* A clone we cannot open would leave its parents unprotected:
         * it goes again, and mkdir says why. */
        g_prefix_error(&error, "mkdir clones/%s/%s: the new clone does not open: ", source, name);
        g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(m->lib, name, NULL);
        vcf_clone_delete(m->lib, name, NULL);
        if (info != NULL)
            release_base_logged(m, info);
        reply_gerror(req, error);
        return;
    }
    if (full) {
        warn_if_suspended(m, source, name);
        OpenClone *oc = open_clone_now(m, name, NULL);
        if (oc == NULL || !copy_start(m, name, oc, &error)) {
            /* Usable as a linked clone; the copy can be asked for again. */
            g_autofree char *why = g_strdup_printf(
                "mkdir clones/%s/%s: made, but its full copy does not start: %s; it starts "
                "at the next mount, or with setfattr -n user.vmclonefs.type -v full", source,
                name, error ? error->message : "the clone does not open");
            g_warning("%s", why);
            note_refusal(m, source, why);
            g_clear_error(&error);
        }
    }
    g_message("made %s clone %s of %s in %.1f ms", full ? "full" : "linked", name, source,
              (g_get_monotonic_time() - t0) / 1000.0);
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    if (p == NULL) {
        g_mutex_unlock(&m->lock);
        fuse_reply_err(req, ENOENT);
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
    g_mutex_lock(&m->ns_lock);
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    int err = 0;
    g_autofree char *why = NULL;
    g_autofree char *real = NULL;
    if (p == NULL) {
        err = ENOENT;
    } else if (p->kind == NODE_SOURCE) {
        g_autofree char *source = g_strdup(p->source);
        g_mutex_unlock(&m->lock);
        make_clone(req, m, parent, source, name);
        goto out;
    } else if (p->kind == NODE_CLONES) {
        err = EPERM;
        why = g_strdup_printf("mkdir clones/%s: make a clone inside clones/SOURCE/, for "
                              "example mkdir clones/VM/%s", name, name);
    } else if ((real = real_child(m, p, name, &err, &why)) != NULL && mkdir(real, mode) < 0) {
        err = errno;
    }
    if (err != 0) {
        g_mutex_unlock(&m->lock);
        reply_errno(req, err, why);
    } else {
        reply_new_entry(req, m, p, name);
    }
out:
    g_mutex_unlock(&m->ns_lock);
    g_rw_lock_writer_unlock(&m->pass_writes);
}

/* Makes clone NAME's stored disks go (DROP): steals its open copy, then
 * drops; a refusal puts it back. NAME is in m->closing (clone_at_rest), so
 * nothing opens or reopens it meanwhile. m->ns_lock held. */
typedef gboolean (*DropFunc)(VcfLibrary *lib, const char *name, GError **error);

static gboolean take_away(VcfMount *m, const char *name, DropFunc drop, GError **error)
{
    g_mutex_lock(&m->lock);
    OpenClone *oc = open_clone_steal(m, name);
    g_mutex_unlock(&m->lock);
    /* No copy writes to a store that is going. */
    gboolean copying = oc != NULL && oc->copier != NULL;
    copy_stop(oc);
    gboolean ok = drop(m->lib, name, error);
    g_mutex_lock(&m->lock);
    if (!ok)
        open_clone_put_back(m, name, oc);   /* a refusal changes nothing */
    g_mutex_unlock(&m->lock);
    GError *local = NULL;
    if (!ok && copying && !copy_start(m, name, oc, &local)) {
        g_warning("clone %s: the full copy cannot go on: %s", name, local->message);
        g_error_free(local);
    }
    if (ok && oc != NULL)
        open_clone_discard(oc);
    return ok;
}

/* Claims clone NAME under SOURCE for a change: none of its disks is open,
 * and, in the same step, it joins m->closing so that none is opened until
 * at_rest_done. A fresh copy of its info, or NULL with *ERR and *WHY.
 * m->ns_lock held. */
VcfCloneInfo *clone_at_rest(VcfMount *m, const char *source, const char *name,
                                   const char *what, int *err, char **why)
{
    g_mutex_lock(&m->lock);
    g_autoptr(VcfCloneInfo) owned = NULL;
    const VcfCloneInfo *known = clone_info_locked(m, name, &owned);
    OpenClone *oc = g_hash_table_lookup(m->clones, name);
    guint handles = oc ? oc->handles : 0;
    gboolean here = known != NULL && g_strcmp0(known->source, source) == 0;
    if (here && handles == 0)
        g_hash_table_add(m->closing, g_strdup(name));
    g_mutex_unlock(&m->lock);
    if (!here) {
        *err = ENOENT;
        return NULL;
    }
    if (handles > 0) {
        *err = EBUSY;
        *why = g_strdup_printf("%s clones/%s/%s: the clone's disk is open (%u handle%s); close "
                               "it first", what, source, name, handles, handles == 1 ? "" : "s");
        return NULL;
    }
    GError *error = NULL;
    g_autofree char *act = g_strdup_printf("%s clones/%s/%s", what, source, name);
    VcfCloneInfo *info = vcf_clone_info_load(m->lib, name, &error);
    /* Clones on its frozen layers need its folder as it is. */
    if (info != NULL && !vcf_clone_check_no_dependents(m->lib, name, act, &error))
        g_clear_pointer(&info, vcf_clone_info_free);
    if (info == NULL) {
        *err = vcf_error_errno(error);
        *why = g_str_has_prefix(error->message, act) ? g_strdup(error->message)
            : g_strdup_printf("%s: %s", act, error->message);
        g_error_free(error);
        g_mutex_lock(&m->lock);
        g_hash_table_remove(m->closing, name);
        g_mutex_unlock(&m->lock);
    }
    return info;
}

/* Ends a clone_at_rest claim; the nodes under GONE_PATH (if given) are
 * gone, and with SELF the node of GONE_PATH too. */
void at_rest_done(VcfMount *m, const char *name, const char *gone_path, gboolean self,
                         gboolean disks_only)
{
    g_mutex_lock(&m->lock);
    if (gone_path != NULL)
        node_mark_gone(&m->nodes, gone_path, self, disks_only);
    /* What kept it from opening is forgotten with it (told again if a
     * clone of that name fails to open). */
    if (gone_path != NULL && self)
        g_hash_table_remove(m->unopenable, name);
    g_hash_table_remove(m->closing, name);
    g_mutex_unlock(&m->lock);
}

/* rmdir of a clone folder that holds only what vmclonefs shows deletes the
 * clone; one holding the user's files is not empty, as anywhere. *GONE
 * gets its info, for release_base_logged. */
static int remove_clone(VcfMount *m, const char *source, const char *name, char **why,
                        VcfCloneInfo **gone)
{
    int err = 0;
    g_autoptr(VcfCloneInfo) info = clone_at_rest(m, source, name, "rmdir", &err, why);
    if (info == NULL)
        return err;
    g_autofree char *other = NULL;
    g_autofree char *path = g_strdup_printf("%s/%s/%s", CLONES_DIR, source, name);
    GError *error = NULL;
    if (!vcf_clone_folder_is_own(info, &other, &error)) {
        at_rest_done(m, name, NULL, FALSE, FALSE);
        if (error != NULL) {
            *why = g_strdup_printf("rmdir clones/%s/%s: %s", source, name, error->message);
            g_error_free(error);
            return EIO;
        }
        *why = g_strdup_printf("rmdir clones/%s/%s: the folder holds %s, which is not the "
                               "clone's; remove it first (rm -r removes everything)",
                               source, name, other);
        return ENOTEMPTY;
    }
    gboolean ok = take_away(m, name, vcf_clone_delete, &error);
    at_rest_done(m, name, ok ? path : NULL, TRUE, FALSE);
    if (!ok) {
        *why = g_strdup_printf("rmdir clones/%s/%s: %s", source, name, error->message);
        err = vcf_error_errno(error);
        g_error_free(error);
        return err;
    }
    g_message("deleted clone %s", name);
    *gone = g_steal_pointer(&info);
    return 0;
}

void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *why = NULL;
    g_autoptr(VcfCloneInfo) gone = NULL;
    int err = 0;
    /* As mkdir: taking back a snapshot must not race a write into its VM. */
    g_rw_lock_writer_lock(&m->pass_writes);
    g_mutex_lock(&m->ns_lock);
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    if (p == NULL) {
        err = ENOENT;
    } else if (p->kind == NODE_SOURCE) {
        g_autofree char *source = g_strdup(p->source);
        g_mutex_unlock(&m->lock);
        err = remove_clone(m, source, name, &why, &gone);
        if (err != 0)
            note_refusal(m, source, why ? why : g_strerror(err));
        /* Done before the reply: when rmdir returns, the VM is as it will be. */
        if (gone != NULL)
            release_base_logged(m, gone);
        g_mutex_lock(&m->lock);
    } else if (p->kind == NODE_ROOT || p->kind == NODE_PASS || p->kind == NODE_CLONE) {
        g_autofree char *real = g_build_filename(p->real, name, NULL);
        const char *who = protected_by(m, real);
        if (who != NULL) {
            err = EBUSY;
            why = g_strdup_printf("rmdir %s/%s: linked clone %s reads a disk in it",
                                  p->path, name, who);
        } else if (p->kind == NODE_ROOT && g_str_equal(name, CLONES_DIR)) {
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
    g_mutex_unlock(&m->ns_lock);
    g_rw_lock_writer_unlock(&m->pass_writes);
    reply_errno(req, err, why);
}

/* rm of a disk name: gone for good; with the clone's last disk name go its
 * stored disks (see clone-store.h), and *GONE gets the clone's info.
 * m->ns_lock held. */
static int unlink_disk_name(VcfMount *m, const char *source, const char *clone,
                            const char *name, char **why, VcfCloneInfo **gone)
{
    int err = 0;
    g_autoptr(VcfCloneInfo) info = clone_at_rest(m, source, clone, "rm", &err, why);
    if (info == NULL)
        return err;
    g_autofree char *dir = g_strdup_printf("%s/%s/%s", CLONES_DIR, source, clone);
    g_autofree char *path = g_strdup_printf("%s/%s", dir, name);
    GError *error = NULL;
    gboolean last = FALSE;
    if (!vcf_clone_unlink_name(info, name, &last, &error)) {
        at_rest_done(m, clone, NULL, FALSE, FALSE);
        *why = g_strdup_printf("rm clones/%s/%s/%s: %s", source, clone, name, error->message);
        err = vcf_error_errno(error);
        g_error_free(error);
        return err;
    }
    if (last) {
        gboolean ok = take_away(m, clone, vcf_clone_drop_disks, &error);
        /* The name is gone either way; with the drop, every disk name. */
        at_rest_done(m, clone, ok ? dir : path, !ok, TRUE);
        if (!ok) {
            *why = g_strdup_printf("rm clones/%s/%s/%s: freeing the clone's disks: %s",
                                   source, clone, name, error->message);
            g_error_free(error);
            return EIO;
        }
        g_message("clone %s: its last disk file is gone, and its stored disks with it", clone);
        *gone = g_steal_pointer(&info);
        return 0;
    }
    g_mutex_lock(&m->lock);
    OpenClone *oc = g_hash_table_lookup(m->clones, clone);
    if (oc != NULL) {
        vcf_clone_info_free(oc->info);
        oc->info = g_steal_pointer(&info);
    }
    g_mutex_unlock(&m->lock);
    at_rest_done(m, clone, path, TRUE, TRUE);
    return 0;
}

void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *why = NULL;
    g_autoptr(VcfCloneInfo) gone = NULL;
    int err = 0;
    guint index;
    gboolean flat;
    /* A disk name may be a clone's last: its snapshot may be taken back,
     * which must not race a write into its VM (as mkdir). Other names are
     * plain unlinks, which need not stop writers. */
    g_mutex_lock(&m->lock);
    Node *p = node_get(&m->nodes, parent);
    gboolean disk = p != NULL && p->kind == NODE_CLONE && clone_disk_name(m, p, name, &index, &flat);
    g_autofree char *config_of = p != NULL && p->kind == NODE_CLONE && !disk
        && g_str_has_suffix(name, ".vmx") && strlen(name) == strlen(p->clone) + 4
        && strncmp(name, p->clone, strlen(p->clone)) == 0 ? g_strdup(p->clone) : NULL;
    g_mutex_unlock(&m->lock);
    if (disk)
        g_rw_lock_writer_lock(&m->pass_writes);
    g_mutex_lock(&m->ns_lock);
    /* The config of a clone others were made from stays, as its disks do
     * (read here, before m->lock: ns_lock keeps new clones out meanwhile). */
    GError *deps = NULL;
    if (config_of != NULL) {
        g_autofree char *act = g_strdup_printf("rm %s", name);
        vcf_clone_check_no_dependents(m->lib, config_of, act, &deps);
    }
    g_mutex_lock(&m->lock);
    p = node_get(&m->nodes, parent);
    if (p == NULL) {
        err = ENOENT;
    } else if (deps != NULL) {
        err = EBUSY;
        why = g_strdup(deps->message);
    } else if (p->kind == NODE_CLONE && g_str_equal(name, STATUS_FILE)) {
        err = EPERM;
        why = g_strdup_printf("rm %s/%s: the status file is the mount's, not a file", p->path,
                              name);
    } else if (disk && p->kind == NODE_CLONE && clone_disk_name(m, p, name, &index, &flat)) {
        g_autofree char *source = g_strdup(p->source);
        g_autofree char *clone = g_strdup(p->clone);
        g_mutex_unlock(&m->lock);
        err = unlink_disk_name(m, source, clone, name, &why, &gone);
        if (gone != NULL)
            release_base_logged(m, gone);
        g_mutex_lock(&m->lock);
    } else if (p->kind == NODE_ROOT || p->kind == NODE_PASS || p->kind == NODE_CLONE) {
        g_autofree char *real = g_build_filename(p->real, name, NULL);
        g_autoptr(VcfCloneInfo) owned = NULL;
        const VcfCloneInfo *info = p->kind == NODE_CLONE ? clone_info_locked(m, p->clone, &owned)
                                                          : NULL;
        OpenClone *oc = info ? g_hash_table_lookup(m->clones, p->clone) : NULL;
        const char *who = protected_by(m, real);
        if (who != NULL) {
            err = EBUSY;
            why = g_strdup_printf("rm %s/%s: linked clone %s reads this file", p->path, name, who);
        } else if (info != NULL && vcf_clone_hides(info, name)) {
            err = ENOENT;
        } else if (info != NULL && vcf_clone_is_config(info, name)
                   && ((oc && oc->handles > 0) || g_hash_table_contains(m->closing, p->clone))) {
            /* rm -r of a clone in use must fail before it loses its config. */
            err = EBUSY;
            why = g_strdup_printf("rm %s/%s: the clone's disk is open; its config stays while "
                                  "it runs", p->path, name);
        } else if (unlink(real) < 0) {
            err = errno;
        }
    } else {
        err = EPERM;
    }
    g_mutex_unlock(&m->lock);
    g_mutex_unlock(&m->ns_lock);
    g_clear_error(&deps);
    if (disk)
        g_rw_lock_writer_unlock(&m->pass_writes);
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
