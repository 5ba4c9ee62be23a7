/* What the kernel caches of a clone's flat disk. A handle opened with
 * O_DIRECT for writing (a VM with cache=none, fio, dd oflag=direct) gets
 * FOPEN_DIRECT_IO: its writes then come straight here, without the
 * getxattr of security.capability that the kernel's cached write path
 * sends before each one (FUSE never marks an inode as having none).
 *
 * Such writes do not drop the pages other handles cached, so the two
 * never meet: a direct writer is given FOPEN_DIRECT_IO only while no
 * cached handle is open (else the kernel's own O_DIRECT path keeps the
 * cache right); while one is open, every other handle bypasses the cache
 * too; and the first cached open after a direct writer starts from an
 * empty cache (no keep_cache), since what the kernel kept may be old. */
#include "config.h"
#include "fs-internal.h"

#include <fcntl.h>

gboolean flat_cache_opened_locked(Node *n, int flags, gboolean *keep)
{
    gboolean writer = (flags & O_ACCMODE) != O_RDONLY;
    *keep = TRUE;
    if ((writer && (flags & O_DIRECT) && n->cached_opens == 0) || n->direct_opens > 0) {
        /* What cached opens kept goes (splice and sendfile on this
         * handle still read through the page cache). */
        *keep = n->direct_opens > 0;
        n->direct_opens++;
        n->direct_written = TRUE;
        return TRUE;
    }
    *keep = !n->direct_written;
    n->direct_written = FALSE;
    n->cached_opens++;
    return FALSE;
}

void flat_cache_closed_locked(Node *n, gboolean direct)
{
    if (n == NULL)
        return;
    guint *count = direct ? &n->direct_opens : &n->cached_opens;
    if (*count > 0)
        (*count)--;
}
