/* Full clones in the mount: starting, stopping and resuming their copiers
 * (src/copier.h), and what follows a finished copy: the source's files are
 * no longer protected for the clone, and its base snapshot may go. */
#include "config.h"
#include "fs-internal.h"
#include "vcf-error.h"

#include <errno.h>
#include <glib/gstdio.h>

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

gboolean copy_running(VcfMount *m, OpenClone *oc)
{
    g_mutex_lock(&m->lock);
    VcfCopyStatus s = { 0 };
    if (oc->copier != NULL)
        vcf_copier_get_status(oc->copier, &s);
    g_mutex_unlock(&m->lock);
    gboolean running = g_strcmp0(s.state, "copying") == 0 || g_strcmp0(s.state, "paused") == 0;
    vcf_copy_status_clear(&s);
    return running;
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
    oc->promoted = TRUE;
    g_mutex_unlock(&m->lock);
    if (info != NULL)
        release_base_logged(m, info);
}

/* Kicks paused copies (space may be free again) and names the open
 * clones whose copy is done but not yet handled. m->lock held: a copier
 * in m->clones is not stopped meanwhile. */
static GPtrArray *kick_and_list_done_locked(VcfMount *m)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, m->clones);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        OpenClone *oc = v;
        if (oc->copier == NULL || oc->promoted)
            continue;
        VcfCopyStatus s = { 0 };
        vcf_copier_get_status(oc->copier, &s);
        if (g_strcmp0(s.state, "paused") == 0)
            vcf_copier_kick(oc->copier);
        else if (g_strcmp0(s.state, "full") == 0)
            g_ptr_array_add(names, g_strdup(k));
        vcf_copy_status_clear(&s);
    }
    return names;
}

void copy_tick(VcfMount *m)
{
    g_atomic_int_set(&m->copies_changed, FALSE);
    /* Only the end of a copy needs the big locks: most ticks take none. */
    g_mutex_lock(&m->lock);
    g_autoptr(GPtrArray) done = kick_and_list_done_locked(m);
    g_mutex_unlock(&m->lock);
    if (done->len == 0)
        return;
    g_rw_lock_writer_lock(&m->pass_writes);
    g_mutex_lock(&m->ns_lock);
    /* ns_lock keeps these open meanwhile, and their copies done. */
    for (guint i = 0; i < done->len; i++) {
        g_mutex_lock(&m->lock);
        OpenClone *oc = g_hash_table_lookup(m->clones, done->pdata[i]);
        gboolean todo = oc != NULL && oc->copier != NULL && !oc->promoted;
        g_mutex_unlock(&m->lock);
        if (todo)
            promoted(m, done->pdata[i], oc);
    }
    g_mutex_unlock(&m->ns_lock);
    g_rw_lock_writer_unlock(&m->pass_writes);
}

void copy_status_locked(VcfMount *m, const VcfCloneInfo *info, VcfCopyStatus *s)
{
    OpenClone *oc = g_hash_table_lookup(m->clones, info->name);
    const char *broken = oc != NULL && oc->broken != NULL ? oc->broken
        : info->parent_changed != NULL ? info->parent_changed
        : oc == NULL ? g_hash_table_lookup(m->unopenable, info->name) : NULL;
    if (broken != NULL) {
        /* Where the copy stood, if one ran. */
        if (oc != NULL && oc->copier != NULL)
            vcf_copier_get_status(oc->copier, s);
        else
            s->done = s->total = info->copy_total;
        vcf_copy_status_clear(s);
        s->rate = 0;
        s->state = g_strdup("broken");
        s->error = g_strdup(broken);
        return;
    }
    if (oc != NULL && oc->copier != NULL) {
        vcf_copier_get_status(oc->copier, s);
        return;
    }
    const char *state = info->state;
    if (g_strcmp0(info->type, "full") != 0 || state == NULL || g_str_equal(state, "ready"))
        state = "linked";
    s->state = g_strdup(state);
    s->done = s->total = g_str_equal(state, "full") ? info->copy_total : 0;
    s->rate = 0;
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

/* Space the clone's store folder uses. */
guint64 clone_store_bytes(const char *dir)
{
    guint64 n = 0;
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *e;
    while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(dir, e, NULL);
        GStatBuf st;
        if (g_lstat(p, &st) == 0)
            n += (guint64)st.st_blocks * 512;
    }
    if (d != NULL)
        g_dir_close(d);
    return n;
}

static char *mib(guint64 bytes)
{
    return g_strdup_printf("%.1f MiB", bytes / 1048576.0);
}

char *status_text_locked(VcfMount *m, const char *name)
{
    g_autoptr(VcfCloneInfo) owned = NULL;
    const VcfCloneInfo *info = clone_info_locked(m, name, &owned);
    if (info == NULL)
        return NULL;
    VcfCopyStatus s = { 0 };
    copy_status_locked(m, info, &s);
    GString *t = g_string_new(NULL);
    g_string_append_printf(t, "clone:     %s\nsource:    %s\nsnapshot:  %s\n", name,
                           info->source, info->base_snapshot ? info->base_snapshot : "");
    g_string_append_printf(t, "type:      %s\nstate:     %s\n",
                           g_strcmp0(info->type, "full") == 0 ? "full" : "linked", s.state);
    if (s.total > 0 || g_strcmp0(s.state, "copying") == 0) {
        g_autofree char *done = mib(s.done), *total = mib(s.total), *rate = mib(s.rate);
        g_string_append_printf(t, "progress:  %.1f%% (%s of %s to copy)\n",
                               s.total ? 100.0 * s.done / s.total : 0.0, done, total);
        g_string_append_printf(t, "rate:      %s/s\n", rate);
        if (s.rate > 0 && s.total > s.done) {
            guint64 left = (s.total - s.done + s.rate - 1) / s.rate;
            g_string_append_printf(t, "time left: %" G_GUINT64_FORMAT ":%02u:%02u\n",
                                   left / 3600, (guint)(left / 60 % 60), (guint)(left % 60));
        }
    }
    g_autofree char *store = mib(clone_store_bytes(info->dir));
    g_string_append_printf(t, "store:     %s\nerror:     %s\n", store,
                           s.error && *s.error ? s.error : "none");
    vcf_copy_status_clear(&s);
    return g_string_free(t, FALSE);
}
