/* What the two parts of the iorecord shim share (iorecord.c logs writes,
 * syncs and creations, iorecord-names.c changes of names). Hidden: the
 * shim is loaded into the daemon, whose symbols must not meet these. */
#pragma once
#include <pthread.h>
#include <stddef.h>

#define IOREC_HIDDEN __attribute__((visibility("hidden")))

/* Held across every recorded change and its log record. */
IOREC_HIDDEN extern pthread_mutex_t iorec_lock;
/* Reads the environment and opens the log, once. */
IOREC_HIDDEN void iorec_ensure_init(void);
/* Logs a record with paths P1 and P2 (NULL for none), no data. Lock held. */
IOREC_HIDDEN void iorec_append(char type, long long a, const char *p1, const char *p2);
/* PATH relative to DIRFD, as a path relative to the recorded folder in
 * OUT: 1 if it lies in that folder, 0 if not (or recording is off). */
IOREC_HIDDEN int iorec_at_path(int dirfd, const char *path, char *out, size_t size);
