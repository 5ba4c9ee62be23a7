/* Reads served from the layers' files without copying them through the
 * daemon: each run of the read is spliced from its file into a pipe of
 * ours, all of it or nothing, and only then is the pipe the reply. Handed
 * to libfuse as they are, the files could give a short reply when one
 * fails or ends early mid-read, which the kernel takes as zeros (and as
 * the end of the disk); here the read is then done the usual way, which
 * answers EIO and says why. */
#include "config.h"
#include "fs-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

typedef struct {
    int fd[2];   /* read end, write end */
} Pipe;

void splice_pipe_free(gpointer data)
{
    Pipe *p = data;
    close(p->fd[0]);
    close(p->fd[1]);
    g_free(p);
}

/* An idle pipe that holds a whole reply, or NULL. */
static Pipe *pipe_take(VcfMount *m)
{
    Pipe *p = g_async_queue_try_pop(m->pipes);
    if (p != NULL)
        return p;
    p = g_new(Pipe, 1);
    if (pipe2(p->fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        g_free(p);
        return NULL;
    }
    if (fcntl(p->fd[1], F_SETPIPE_SZ, VCF_MAX_REQUEST) < VCF_MAX_REQUEST) {
        splice_pipe_free(p);
        return NULL;
    }
    return p;
}

/* Every byte of RUNS into P, or FALSE. */
static gboolean fill(VcfMount *m, Pipe *p, const VcfRun *runs, guint n)
{
    for (guint i = 0; i < n; i++) {
        loff_t at = (loff_t)runs[i].at;
        for (gsize left = runs[i].len; left > 0;) {
            ssize_t r = runs[i].fd >= 0
                ? splice(runs[i].fd, &at, p->fd[1], NULL, left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                : write(p->fd[1], m->zeros, MIN(left, VCF_MAX_REQUEST));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return FALSE;
            left -= (gsize)r;
        }
    }
    return TRUE;
}

gboolean splice_reply(const VcfRun *runs, guint n, gpointer data)
{
    SpliceReply *sr = data;
    gsize len = 0;
    for (guint i = 0; i < n; i++)
        len += runs[i].len;
    if (len > VCF_MAX_REQUEST)
        return FALSE;
    if (n == 1 && runs[0].fd < 0) {   /* nothing to move: zeros */
        fuse_reply_buf(sr->req, (const char *)sr->m->zeros, len);
        return TRUE;
    }
    Pipe *p = pipe_take(sr->m);
    if (p == NULL)
        return FALSE;
    if (!fill(sr->m, p, runs, n)) {
        splice_pipe_free(p);   /* holds part of a read */
        return FALSE;
    }
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
    bv.buf[0].flags = FUSE_BUF_IS_FD;
    bv.buf[0].fd = p->fd[0];
    int r = fuse_reply_data(sr->req, &bv, FUSE_BUF_SPLICE_MOVE);
    int left = 0;
    /* Reused only when the reply took all of it. */
    if (r == 0 && ioctl(p->fd[0], FIONREAD, &left) == 0 && left == 0)
        g_async_queue_push(sr->m->pipes, p);
    else
        splice_pipe_free(p);
    return TRUE;
}
