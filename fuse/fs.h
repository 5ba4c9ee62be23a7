/* The mount: its context and the libfuse low-level operations. */
#pragma once
#include "inode.h"
#include "clone.h"
#include "copier.h"
#include "library.h"

/* A clone whose disks are open. Every field: VcfMount.lock. */
typedef struct {
    VcfClone *clone;
    VcfCloneInfo *info;  /* its clone.ini and removed names, kept current */
    guint handles;       /* open file handles on its disks */
    /* A full clone's copy; started and stopped under VcfMount.ns_lock. */
    VcfCopier *copier;
    gboolean promoted;   /* set under ns_lock and lock: the end of its copy was handled */
    char *broken;        /* why its disks answer EIO (a file below changed), or NULL */
} OpenClone;

typedef struct {
    VcfLibrary *lib;
    char *root;            /* the library's realpath */
    guint n_chains;        /* libvmdk chains per parent disk */
    double timeout;        /* attribute and entry cache, seconds */
    gboolean full_default; /* -o clone_type=full: mkdir makes full clones */
    guint64 copy_rate;     /* -o copy_rate: bytes per second per copy, 0 no cap */
    VcfCopyPool *copy_pool; /* made with the syncer, after the fork */
    gint copies_changed;   /* atomic: a copier finished, paused or broke (wakes the syncer) */

    /* Lock order: pass_writes, ns_lock, lock, then a VcfDisk's own lock.
     * ns_lock serialises what makes, deletes, renames or syncs clones:
     * mkdir, rmdir, rename and unlink of clone files, and the syncer. It is
     * held across their disk I/O, and never taken by lookup, getattr, open,
     * read or write; an OpenClone leaves m->clones only under it, so its
     * holder may use one without lock. lock guards the tables below and is
     * never held across fsync or clone creation. */
    GMutex ns_lock;
    GMutex lock;
    NodeTable nodes;       /* lock */
    GHashTable *clones;    /* lock: name -> OpenClone* */
    GHashTable *closing;   /* lock: clones rmdir, rm or mv is taking away: not reopened */
    GHashTable *protected; /* lock: realpath -> name of a clone reading it */
    GHashTable *protected_ids; /* lock: "dev:ino" of those files -> the same */
    GHashTable *open_files; /* lock: the file handles the kernel holds */
    GHashTable *open_dirs;  /* lock: the folder listings the kernel holds */
    GHashTable *refusals;   /* lock: source -> why its last mkdir was refused */
    GAsyncQueue *pipes;     /* its own lock: idle pipes for spliced replies (splice-reply.c) */
    guint8 *zeros;          /* VCF_MAX_REQUEST zero bytes, never written */
    GHashTable *unopenable; /* lock: clone -> why it did not open (EIO: broken), until it does */
    GHashTable *source_types; /* lock: source -> "full" or "linked", what mkdir there makes
                               * (its user.vmclonefs.type); absent: full_default */
    gint protect_gen;      /* atomic: bumped whenever protected grows */
    /* Writes to passed-through files hold it for reading, mkdir for
     * writing: no write lands in a disk between its freezing by a snapshot
     * and its protection. Taken before lock. */
    GRWLock pass_writes;

    struct fuse_session *se; /* set once, before serving: for cache invalidations */
    GThread *syncer;       /* syncs open disks every few seconds */
    GThread *warmer;       /* checks the library's disks once, at mount */
    gint warm_stop;        /* atomic: the warmer stops at the next disk */
    GThread *watcher;      /* reads watch_fd (watch.c) */
    int watch_fd;          /* inotify: the files below open clones; -1: none; set
                            * and closed under lock */
    GHashTable *watched;   /* lock: path -> its inotify watch (a protected file) */
    int watch_stop;        /* eventfd: the watcher ends */
    GMutex sync_lock;
    GCond sync_cond;
    gboolean stopping;     /* sync_lock */
    gboolean recheck;      /* sync_lock: a watched file changed; check parents now */
} VcfMount;

extern const struct fuse_lowlevel_ops vcf_fs_ops;

/* Fills the mount's state; FALSE with ERROR if the library is unusable. */
gboolean vcf_mount_init(VcfMount *m, const char *library, guint n_chains,
                        double timeout, GError **error);
void vcf_mount_clear(VcfMount *m);
