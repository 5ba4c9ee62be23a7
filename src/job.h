/* Jobs: the shape of VixVM_Clone's asynchronous calls. A job runs a piece
 * of work in its own thread; whoever started it may be called back when it
 * ends, may wait for it, and reads its result (success, or the GError). */
#pragma once
#include <glib.h>
#include <signal.h>

typedef struct VcfJob VcfJob;

/* The work: returns FALSE with ERROR set on failure. */
typedef gboolean (*VcfJobFunc)(gpointer data, GError **error);
/* Called once, in the job's thread, when the work has ended. */
typedef void (*VcfJobCallback)(VcfJob *job, gpointer user_data);

/* Starts FUNC(DATA) in a new thread; FREE_DATA (may be NULL) frees DATA
 * when the job is freed. CALLBACK may be NULL. The caller holds one
 * reference; the running job holds another until it ends. */
VcfJob *vcf_job_start(const char *name, VcfJobFunc func, gpointer data,
                      GDestroyNotify free_data, VcfJobCallback callback,
                      gpointer user_data);
/* Blocks SIGINT, SIGTERM and SIGHUP in this thread (*OLD: the mask before,
 * for pthread_sigmask(SIG_SETMASK, ...)): threads made meanwhile never
 * take them. */
void vcf_block_quit_signals(sigset_t *old);
/* g_thread_new for a worker that never takes the termination signals. */
GThread *vcf_thread_new_quiet(const char *name, GThreadFunc func, gpointer data);
VcfJob *vcf_job_ref(VcfJob *job);
void vcf_job_unref(VcfJob *job);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfJob, vcf_job_unref)

const char *vcf_job_get_name(const VcfJob *job);
gboolean vcf_job_is_done(VcfJob *job);
/* Blocks until the job has ended and its callback has returned (from the
 * callback itself: the result at once); its result, with a copy of its
 * error. */
gboolean vcf_job_wait(VcfJob *job, GError **error);
