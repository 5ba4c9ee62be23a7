#include "config.h"
#include "job.h"

#include <pthread.h>
#include <signal.h>

struct VcfJob {
    gint refs;
    char *name;
    VcfJobFunc func;
    gpointer data;
    GDestroyNotify free_data;
    VcfJobCallback callback;
    gpointer user_data;
    GMutex lock;
    GCond done_cond;
    gboolean done;      /* lock: the result is set */
    gboolean settled;   /* lock: ... and the callback has returned */
    GThread *runner;    /* lock: the job's thread, while it calls back */
    gboolean ok;        /* lock; valid once done */
    GError *error;      /* lock; valid once done */
};

static gpointer job_main(gpointer p)
{
    VcfJob *job = p;
    GError *error = NULL;
    gboolean ok = job->func(job->data, &error);
    g_mutex_lock(&job->lock);
    job->ok = ok;
    job->error = error;
    job->done = TRUE;
    job->runner = g_thread_self();
    g_mutex_unlock(&job->lock);
    /* Waiters return only once the callback has run: whoever waits sees
     * everything the callback did (VixJob_Wait after the callback). */
    if (job->callback != NULL)
        job->callback(job, job->user_data);
    g_mutex_lock(&job->lock);
    job->settled = TRUE;
    job->runner = NULL;
    g_cond_broadcast(&job->done_cond);
    g_mutex_unlock(&job->lock);
    vcf_job_unref(job);
    return NULL;
}

VcfJob *vcf_job_start(const char *name, VcfJobFunc func, gpointer data,
                      GDestroyNotify free_data, VcfJobCallback callback,
                      gpointer user_data)
{
    VcfJob *job = g_new0(VcfJob, 1);
    job->refs = 2;     /* the caller's and the thread's */
    job->name = g_strdup(name);
    job->func = func;
    job->data = data;
    job->free_data = free_data;
    job->callback = callback;
    job->user_data = user_data;
    g_mutex_init(&job->lock);
    g_cond_init(&job->done_cond);
    g_thread_unref(vcf_thread_new_quiet(name, job_main, job));
    return job;
}

void vcf_block_quit_signals(sigset_t *old)
{
    /* A handler of SIGINT, SIGTERM or SIGHUP run on a worker would wake
     * none of the threads that wait to end the program (libfuse's loop is
     * one). New threads inherit the mask. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, old);
}

GThread *vcf_thread_new_quiet(const char *name, GThreadFunc func, gpointer data)
{
    sigset_t old;
    vcf_block_quit_signals(&old);
    GThread *t = g_thread_new(name, func, data);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return t;
}

VcfJob *vcf_job_ref(VcfJob *job)
{
    g_atomic_int_inc(&job->refs);
    return job;
}

void vcf_job_unref(VcfJob *job)
{
    if (job == NULL || !g_atomic_int_dec_and_test(&job->refs))
        return;
    if (job->free_data != NULL)
        job->free_data(job->data);
    g_clear_error(&job->error);
    g_mutex_clear(&job->lock);
    g_cond_clear(&job->done_cond);
    g_free(job->name);
    g_free(job);
}

const char *vcf_job_get_name(const VcfJob *job) { return job->name; }

gboolean vcf_job_is_done(VcfJob *job)
{
    g_mutex_lock(&job->lock);
    gboolean done = job->done;
    g_mutex_unlock(&job->lock);
    return done;
}

gboolean vcf_job_wait(VcfJob *job, GError **error)
{
    g_mutex_lock(&job->lock);
    /* The callback itself may ask for the result: it is there already. */
    while (!job->settled && !(job->done && job->runner == g_thread_self()))
        g_cond_wait(&job->done_cond, &job->lock);
    gboolean ok = job->ok;
    if (!ok && job->error != NULL)
        g_propagate_error(error, g_error_copy(job->error));
    g_mutex_unlock(&job->lock);
    return ok;
}
