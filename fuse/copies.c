/* Full clones in the mount: starting, stopping and resuming their copiers
 * (src/copier.h), and what follows a finished copy: the source's files are
 * no longer protected for the clone, and its base snapshot may go. */
#include "config.h"
#include "fs-internal.h"
#include "vcf-error.h"

#include <errno.h>

/* From a copier's worker: wakes the syncer, which does the rest. */
static void copy_changed(VcfCopier *copier, gpointer data)
{
    VcfMount *m = data;
    g_atomic_int_set(&m->copies_changed, TRUE);
    g_mutex_lock(&m->sync_lock);
    g_cond_signal(&m->sync_cond);
    g_mutex_unlock(&m->sync_lock);
}

gboolean copy_start(VcfMount *m, const char *name, OpenClone *oc, GError **error)
{
    if (oc->copier != NULL)
        return TRUE;
    VcfCopier *c = vcf_copier_start(m->copy_pool, m->lib, name, oc->clone, copy_changed, m,
                                    error);
    if (c == NULL)
        return FALSE;
    g_mutex_lock(&m->lock);
    oc->copier = c;   /* getxattr reads it under lock */
    g_mutex_unlock(&m->lock);
    /* clone.ini changed: so does what the mount shows of it. */
    VcfCloneInfo *info = vcf_clone_info_load(m->lib, name, NULL);
    if (info != NULL) {
        g_mutex_lock(&m->lock);
        vcf_clone_info_free(oc->info);
        oc->info = info;
        g_mutex_unlock(&m->lock);
    }
    return TRUE;
}

/* OC is out of m->clones (stolen, or being freed): nobody else reaches
 * its copier. */
void copy_stop(OpenClone *oc)
{
    if (oc == NULL || oc->copier == NULL)
        return;
    vcf_copier_stop(oc->copier);
    oc->copier = NULL;
}

gboolean copy_wanted(const VcfCloneInfo *info)
{
    return g_strcmp0(info->type, "full") == 0 && (g_strcmp0(info->state, "copying") == 0
                                                  || g_strcmp0(info->state, "paused") == 0);
}

void copy_resume_all(VcfMount *m)
{
    g_mutex_lock(&m->ns_lock);
    g_autoptr(GPtrArray) names = vcf_clone_list(m->lib);
    for (guint i = 0; i < names->len; i++) {
        const char *name = names->pdata[i];
        g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(m->lib, name, NULL);
        if (info == NULL || !copy_wanted(info))
            continue;
        GError *error = NULL;
        OpenClone *oc = open_clone_now(m, name, &error);
        if (oc == NULL || !copy_start(m, name, oc, &error)) {
            g_warning("clone %s: the full copy cannot go on: %s", name, error->message);
            g_error_free(error);
            continue;
        }
        g_message("clone %s: the full copy goes on from where it stood", name);
    }
    g_mutex_unlock(&m->ns_lock);
}

/* A finished copy: the clone reads nothing below any more. m->ns_lock and
 * m->pass_writes held. */
static void promoted(VcfMount *m, const char *name, OpenClone *oc)
{
    VcfCloneInfo *info = vcf_clone_info_load(m->lib, name, NULL);
    g_mutex_lock(&m->lock);
    if (info != NULL) {
        vcf_clone_info_free(oc->info);
        oc->info = info;
    }
    protect_refresh(m);
    g_mutex_unlock(&m->lock);
    if (info != NULL)
        release_base_logged(m, info);
}

void copy_tick(VcfMount *m)
{
    gboolean changed = g_atomic_int_exchange(&m->copies_changed, FALSE);
    g_rw_lock_writer_lock(&m->pass_writes);
    g_mutex_lock(&m->ns_lock);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    g_mutex_lock(&m->lock);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, m->clones);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (((OpenClone *)v)->copier != NULL)
            g_ptr_array_add(names, g_strdup(k));
    g_mutex_unlock(&m->lock);
    /* ns_lock keeps these open meanwhile. */
    for (guint i = 0; i < names->len; i++) {
        g_mutex_lock(&m->lock);
        OpenClone *oc = g_hash_table_lookup(m->clones, names->pdata[i]);
        g_mutex_unlock(&m->lock);
        VcfCopyStatus s = { 0 };
        vcf_copier_get_status(oc->copier, &s);
        if (g_strcmp0(s.state, "paused") == 0)
            vcf_copier_kick(oc->copier);   /* space may be free again */
        else if (changed && g_strcmp0(s.state, "full") == 0 && !oc->promoted)
            promoted(m, names->pdata[i], oc);
        if (g_strcmp0(s.state, "full") == 0)
            oc->promoted = TRUE;
        vcf_copy_status_clear(&s);
    }
    g_mutex_unlock(&m->ns_lock);
    g_rw_lock_writer_unlock(&m->pass_writes);
}

void copy_status_locked(VcfMount *m, const VcfCloneInfo *info, VcfCopyStatus *s)
{
    OpenClone *oc = g_hash_table_lookup(m->clones, info->name);
    if (oc != NULL && oc->copier != NULL) {
        vcf_copier_get_status(oc->copier, s);
        return;
    }
    const char *state = info->state;
    if (g_strcmp0(info->type, "full") != 0 || state == NULL || g_str_equal(state, "ready"))
        state = "linked";
    s->state = g_strdup(state);
    s->done = s->total = s->rate = 0;
    s->error = g_strdup(info->error);
}

void copy_stop_if_done(VcfMount *m, OpenClone *oc)
{
    g_mutex_lock(&m->lock);
    VcfCopier *c = oc->copier;
    VcfCopyStatus s = { 0 };
    if (c != NULL)
        vcf_copier_get_status(c, &s);
    gboolean over = c != NULL && g_strcmp0(s.state, "broken") == 0;
    if (over)
        oc->copier = NULL;
    g_mutex_unlock(&m->lock);
    vcf_copy_status_clear(&s);
    if (over)
        vcf_copier_stop(c);
}
