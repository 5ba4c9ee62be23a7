#include "config.h"
#include "copier.h"
#include "clone-store.h"
#include "disk.h"
#include "job.h"
#include "vcf-error.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

/* A step ends after this many units or this long, whichever comes first:
 * the cursor is then made durable, and another copy gets its turn.
 * While the guest uses the disk, the copier rests YIELD times as long as
 * each unit took it: the guest keeps most of the disk. */
#define STEP_UNITS 4096u
#define STEP_USEC (G_TIME_SPAN_SECOND)
#define RATE_SAMPLES 8
#define YIELD 3
#define KICK_USEC (4 * G_TIME_SPAN_SECOND)

struct VcfCopyPool {
    GThreadPool *threads;
    guint64 rate;          /* bytes per second per copy, 0: no cap */
};

struct VcfCopier {
    VcfCopyPool *pool;
    VcfLibrary *lib;
    char *name;
    VcfClone *clone;
    VcfCopierNotify notify;
    gpointer user_data;
    /* Guards every field below; never held across disk I/O. */
    GMutex lock;
    GCond cond;            /* signalled when queued or stop change */
    gboolean queued;       /* in the pool's queue or running there */
    gboolean stop;
    gboolean counted;      /* total and done are known */
    gboolean paused_said;  /* the pause was logged; retries are quiet */
    gint64 paused_at;      /* when the last try failed for want of space */
    char *state;
    char *error;
    guint disk;            /* the cursor: where the next step starts */
    guint64 unit;
    guint64 done, total;   /* bytes */
    gint64 sample_at[RATE_SAMPLES];
    guint64 sample_done[RATE_SAMPLES];
    guint n_samples;
};

static void run_step(gpointer data, gpointer user_data);
static gboolean count(VcfCopier *c, GError **error);

VcfCopyPool *vcf_copy_pool_new(guint threads, guint64 rate)
{
    VcfCopyPool *p = g_new0(VcfCopyPool, 1);
    p->rate = rate;
    /* Exclusive: its threads start now, with the termination signals
     * blocked (see vcf_thread_new_quiet), and never exit or move. */
    sigset_t old;
    vcf_block_quit_signals(&old);
    p->threads = g_thread_pool_new(run_step, p, MAX(threads, 1), TRUE, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return p;
}

void vcf_copy_pool_free(VcfCopyPool *p)
{
    if (p == NULL)
        return;
    g_thread_pool_free(p->threads, FALSE, TRUE);
    g_free(p);
}

static void set_state(VcfCopier *c, const char *state, const char *error)
{
    g_mutex_lock(&c->lock);
    g_free(c->state);
    c->state = g_strdup(state);
    g_free(c->error);
    c->error = g_strdup(error);
    g_mutex_unlock(&c->lock);
}

static void push_locked(VcfCopier *c)
{
    c->queued = TRUE;
    g_thread_pool_push(c->pool->threads, c, NULL);
}

VcfCopier *vcf_copier_start(VcfCopyPool *pool, VcfLibrary *lib, const char *name,
                            VcfClone *clone, VcfCopierNotify notify, gpointer user_data,
                            GError **error)
{
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, name, error);
    if (info == NULL)
        return NULL;
    gboolean full = vcf_clone_info_is_standalone(info);
    /* The cursor's file made now, with the folder's other change: the
     * steps then rewrite it in place. */
    if (!full && (!vcf_clone_info_update(lib, name, error, "type", "full", "state", "copying",
                                         "error", NULL, NULL)
                  || !vcf_clone_save_cursor(lib, name, info->copy_disk, info->copy_unit, error)))
        return NULL;
    VcfCopier *c = g_new0(VcfCopier, 1);
    c->pool = pool;
    c->lib = lib;
    c->name = g_strdup(name);
    c->clone = clone;
    c->notify = notify;
    c->user_data = user_data;
    g_mutex_init(&c->lock);
    g_cond_init(&c->cond);
    c->state = g_strdup(full ? "full" : "copying");
    c->disk = info->copy_disk;
    c->unit = info->copy_unit;
    c->counted = full;
    if (full)   /* what the copy passed, as it was when it ended */
        c->done = c->total = info->copy_total;
    /* Resumed: progress goes on from where it stood, not from 0. */
    if (!full && (c->disk > 0 || c->unit > 0)) {
        GError *local = NULL;
        if (!count(c, &local)) {
            g_warning("clone %s: counting what is left to copy: %s", name, local->message);
            g_error_free(local);
        }
    }
    if (!full) {
        g_mutex_lock(&c->lock);
        push_locked(c);
        g_mutex_unlock(&c->lock);
    }
    return c;
}

void vcf_copier_stop(VcfCopier *c)
{
    if (c == NULL)
        return;
    g_mutex_lock(&c->lock);
    c->stop = TRUE;
    g_cond_broadcast(&c->cond);
    while (c->queued)
        g_cond_wait(&c->cond, &c->lock);
    g_mutex_unlock(&c->lock);
    g_mutex_clear(&c->lock);
    g_cond_clear(&c->cond);
    g_free(c->state);
    g_free(c->error);
    g_free(c->name);
    g_free(c);
}

void vcf_copier_kick(VcfCopier *c)
{
    if (c == NULL)
        return;
    g_mutex_lock(&c->lock);
    /* Not more than every few seconds: a full disk fails at once. */
    if (!c->stop && !c->queued && g_strcmp0(c->state, "paused") == 0
        && g_get_monotonic_time() - c->paused_at >= KICK_USEC) {
        g_free(c->state);
        c->state = g_strdup("copying");
        g_clear_pointer(&c->error, g_free);
        push_locked(c);
    }
    g_mutex_unlock(&c->lock);
}

static guint64 rate_locked(const VcfCopier *c)
{
    if (c->n_samples < 2)
        return 0;
    guint last = (c->n_samples - 1) % RATE_SAMPLES;
    guint first = c->n_samples > RATE_SAMPLES ? c->n_samples % RATE_SAMPLES : 0;
    gint64 dt = c->sample_at[last] - c->sample_at[first];
    if (dt <= 0)
        return 0;
    return (c->sample_done[last] - c->sample_done[first]) * G_TIME_SPAN_SECOND / dt;
}

void vcf_copier_get_status(VcfCopier *c, VcfCopyStatus *s)
{
    g_mutex_lock(&c->lock);
    s->state = g_strdup(c->state);
    s->done = c->done;
    s->total = c->total;
    /* Stale once the copy is no longer running. */
    s->rate = g_strcmp0(c->state, "copying") == 0 ? rate_locked(c) : 0;
    s->error = g_strdup(c->error);
    g_mutex_unlock(&c->lock);
}

void vcf_copy_status_clear(VcfCopyStatus *s)
{
    g_clear_pointer(&s->state, g_free);
    g_clear_pointer(&s->error, g_free);
}

static void sample(VcfCopier *c)
{
    g_mutex_lock(&c->lock);
    guint i = c->n_samples % RATE_SAMPLES;
    c->sample_at[i] = g_get_monotonic_time();
    c->sample_done[i] = c->done;
    c->n_samples++;
    g_mutex_unlock(&c->lock);
}

static gboolean stopping(VcfCopier *c)
{
    g_mutex_lock(&c->lock);
    gboolean s = c->stop;
    g_mutex_unlock(&c->lock);
    return s;
}

/* Waits until UNTIL or a stop; TRUE if stopped. */
static gboolean wait_until(VcfCopier *c, gint64 until)
{
    g_mutex_lock(&c->lock);
    while (!c->stop && g_get_monotonic_time() < until)
        g_cond_wait_until(&c->cond, &c->lock, until);
    gboolean s = c->stop;
    g_mutex_unlock(&c->lock);
    return s;
}

/* Scans run in chunks of this many units, the disk's lock let go and a
 * stop looked for in between: guests' syncs and unmounts need not wait. */
#define SCAN_UNITS 65536u

/* Units of disk D in [FROM, TO) held below. FALSE with no ERROR: stopped. */
static gboolean count_range(VcfCopier *c, VcfDisk *d, guint64 from, guint64 to,
                            guint64 *units, GError **error)
{
    *units = 0;
    for (guint64 u = from; u < to; u += SCAN_UNITS) {
        guint64 n;
        if (stopping(c) || !vcf_disk_count_to_copy(d, u, MIN(to, u + SCAN_UNITS), &n, error))
            return FALSE;
        *units += n;
    }
    return TRUE;
}

/* Total and done, from the layers' maps and the cursor. */
static gboolean count(VcfCopier *c, GError **error)
{
    guint64 total = 0, left = 0;
    for (guint i = 0; i < vcf_clone_n_disks(c->clone); i++) {
        VcfDisk *d = vcf_clone_get_disk(c->clone, i);
        guint64 units = vcf_disk_get_units(d), before = 0, after = 0;
        guint64 cut = i < c->disk ? units : i > c->disk ? 0 : MIN(c->unit, units);
        if (!count_range(c, d, 0, cut, &before, error)
            || !count_range(c, d, cut, units, &after, error))
            return FALSE;
        total += before + after;
        left += after;
    }
    g_mutex_lock(&c->lock);
    c->total = total * VCF_GRAIN_SIZE;
    c->done = (total - left) * VCF_GRAIN_SIZE;
    c->counted = TRUE;
    g_mutex_unlock(&c->lock);
    sample(c);
    return TRUE;
}

/* A source changed behind our back (a suspended VM resumed outside the
 * mount, say) would mix its old and new bytes in the copy: every disk of
 * the clone is looked at, and each whose files below changed is broken. */
static gboolean check_parents(VcfCopier *c, GError **error)
{
    gboolean ok = TRUE;
    for (guint i = 0; i < vcf_clone_n_disks(c->clone); i++) {
        GError *e = NULL;
        if (!vcf_disk_check_parent(vcf_clone_get_disk(c->clone, i), NULL, &e)) {
            if (ok)
                g_propagate_error(error, e);
            else
                g_error_free(e);
            ok = FALSE;
        }
    }
    return ok;
}

/* One step of the copy of disk c->disk from c->unit on. */
static gboolean copy_some(VcfCopier *c, GError **error)
{
    VcfDisk *d = vcf_clone_get_disk(c->clone, c->disk);
    guint64 units = vcf_disk_get_units(d);
    gint64 t0 = g_get_monotonic_time();
    guint64 unit = c->unit, passed = 0;
    guint64 rate = c->pool->rate;
    gboolean ok = TRUE;
    guint ops = vcf_disk_guest_ops(d);
    if (!check_parents(c, error))
        return FALSE;
    for (guint n = 0; n < STEP_UNITS && unit < units; n += VCF_COPY_RUN) {
        if (g_get_monotonic_time() - t0 > STEP_USEC || stopping(c))
            break;
        guint held;
        gsize copied;
        gint64 u0 = g_get_monotonic_time();
        if (!(ok = vcf_disk_copy_units(d, unit, VCF_COPY_RUN, &held, &copied, error)))
            break;
        unit = MIN(unit + VCF_COPY_RUN, units);
        passed += (guint64)held * VCF_GRAIN_SIZE;
        g_mutex_lock(&c->lock);
        c->done += (guint64)held * VCF_GRAIN_SIZE;
        g_mutex_unlock(&c->lock);
        /* The guest is at it: give way. Else the copy's writes go out now,
         * while it reads on (not while the guest is busy: its reads would
         * queue behind them). */
        guint now_ops = vcf_disk_guest_ops(d);
        if (copied > 0 && now_ops != ops
            && wait_until(c, g_get_monotonic_time() + YIELD * (g_get_monotonic_time() - u0)))
            break;
        if (copied > 0 && now_ops == ops)
            vcf_disk_start_writeback(d);
        ops = now_ops;
        /* The cap: this step's bytes at RATE take this long. */
        if (rate > 0 && wait_until(c, t0 + (gint64)(passed * G_TIME_SPAN_SECOND / rate)))
            break;
    }
    /* The cursor goes forward only once what it covers is durable. */
    guint disk = c->disk;
    if (unit >= units) {
        disk++;
        unit = 0;
    }
    if (!ok || !vcf_disk_flush_data(d, error) || !vcf_disk_sync(d, error)
        || !vcf_clone_save_cursor(c->lib, c->name, disk, unit, error)) {
        /* Done again from the cursor: so is its progress. */
        g_mutex_lock(&c->lock);
        c->done -= passed;
        g_mutex_unlock(&c->lock);
        return FALSE;
    }
    c->disk = disk;
    c->unit = unit;
    sample(c);
    return TRUE;
}

/* Every disk checked complete, then made standalone. FALSE with no ERROR:
 * stopped (the check is done again next time). No freeze runs meanwhile:
 * the mount refuses to clone a clone whose copy runs. */
static gboolean promote(VcfCopier *c, GError **error)
{
    if (!check_parents(c, error))
        return FALSE;
    for (guint i = 0; i < vcf_clone_n_disks(c->clone); i++) {
        VcfDisk *d = vcf_clone_get_disk(c->clone, i);
        for (guint64 u = 0; u < vcf_disk_get_units(d); u += SCAN_UNITS)
            if (stopping(c) || !vcf_disk_check_copied(d, u, u + SCAN_UNITS, error))
                return FALSE;
    }
    /* Again: nothing may have changed below while the check read it. */
    if (!check_parents(c, error))
        return FALSE;
    gboolean ok = TRUE;
    for (guint i = 0; ok && i < vcf_clone_n_disks(c->clone); i++)
        ok = vcf_disk_promote(vcf_clone_get_disk(c->clone, i), error);
    vcf_clone_update_parent_files(c->clone);
    g_autofree char *total = g_strdup_printf("%" G_GUINT64_FORMAT, c->total);
    g_autofree char *cursor = g_build_filename(vcf_library_store_root(c->lib), c->name,
                                               VCF_COPY_CURSOR, NULL);
    if (!ok || !vcf_clone_info_update(c->lib, c->name, error, "state", "full", "error", NULL,
                                      "copy-disk", NULL, "copy-unit", NULL,
                                      "copy-total", total, NULL))
        return FALSE;
    g_unlink(cursor);   /* what is left of it is ignored once full */
    return TRUE;
}

/* A failure: out of space pauses, anything else breaks the copy. The
 * state is kept in clone.ini where it can be (a full disk may refuse).
 * FALSE for a pause that goes on (said before): nothing new to tell. */
static gboolean failed(VcfCopier *c, GError *error)
{
    gboolean nospace = vcf_error_errno(error) == ENOSPC;
    g_autofree char *why = nospace
        ? g_strdup_printf("out of space: %s; the copy goes on once space is free, and the "
                          "clone works as a linked clone meanwhile", error->message)
        : g_strdup_printf("%s; the copy stopped, and the clone goes on as a linked clone",
                          error->message);
    /* A broken disk (a file below changed) is never served again. */
    gboolean gone = !nospace && !check_parents(c, NULL);
    if (gone) {
        g_free(why);
        why = g_strdup_printf("%s; the copy stopped, and the clone's disks answer EIO from "
                              "now on", error->message);
    }
    const char *state = nospace ? "paused" : "broken";
    g_mutex_lock(&c->lock);
    gboolean quiet = nospace && c->paused_said;
    c->paused_said = nospace;
    c->paused_at = g_get_monotonic_time();
    g_mutex_unlock(&c->lock);
    set_state(c, state, why);
    if (quiet) {
        g_debug("clone %s: full copy still paused: %s", c->name, why);
        return FALSE;
    }
    g_warning("clone %s: full copy %s: %s", c->name, state, why);
    /* When not gone, the list ends before "parent-changed". */
    vcf_clone_info_update(c->lib, c->name, NULL, "state", state, "error", why,
                          gone ? "parent-changed" : NULL, why, NULL);
    return TRUE;
}

static void run_step(gpointer data, gpointer user_data)
{
    VcfCopier *c = data;
    GError *error = NULL;
    gboolean again = FALSE, changed = FALSE;
    if (!stopping(c)) {
        gboolean ok = c->counted || count(c, &error);
        if (ok && c->disk < vcf_clone_n_disks(c->clone))
            ok = copy_some(c, &error);
        if (ok) {
            g_mutex_lock(&c->lock);
            gboolean resumed = c->paused_said;
            c->paused_said = FALSE;
            g_mutex_unlock(&c->lock);
            if (resumed) {
                g_message("clone %s: full copy goes on: there is space again", c->name);
                vcf_clone_info_update(c->lib, c->name, NULL, "state", "copying", "error", NULL,
                                      NULL);
            }
        }
        if (ok && c->disk >= vcf_clone_n_disks(c->clone)) {
            ok = promote(c, &error);
            if (ok) {
                g_message("clone %s: full copy done, %" G_GUINT64_FORMAT " bytes: the clone "
                          "no longer needs its source", c->name, c->total);
                set_state(c, "full", NULL);
                changed = TRUE;
            }
        } else if (ok) {
            again = TRUE;
        }
        if (!ok && error == NULL) {
            again = FALSE;   /* stopped in a scan */
        } else if (!ok) {
            changed = failed(c, error);
            g_error_free(error);
        }
    }
    if (changed && c->notify != NULL)
        c->notify(c, c->user_data);
    g_mutex_lock(&c->lock);
    if (again && !c->stop)
        g_thread_pool_push(c->pool->threads, c, NULL);
    else
        c->queued = FALSE;
    g_cond_broadcast(&c->cond);
    g_mutex_unlock(&c->lock);
}
