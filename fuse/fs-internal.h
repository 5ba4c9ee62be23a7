/* Shared by the operation files of the mount; not for main.c. */
#pragma once
#include "fs.h"
#include <sys/stat.h>

#define CLONES_DIR "clones"
#define STATE_DIR ".vmclonefs"
/* In every clone folder, not listed (tar, cp -r and rm -r pass it by). */
#define STATUS_FILE ".vmclonefs-status"

#define VCF_MOUNT(req) ((VcfMount *)fuse_req_userdata(req))

/* Logs ERROR's message and replies with its errno. Frees ERROR. */
void reply_gerror(fuse_req_t req, GError *error);
/* Replies with -ERR and logs WHY if given. */
void reply_errno(fuse_req_t req, int err, const char *why);

/* The node's attributes. Called with m->lock held. */
gboolean node_stat(VcfMount *m, const Node *n, struct stat *st, GError **error);
/* Looks NAME up under PARENT and remembers it; fills E. m->lock held. */
gboolean lookup_locked(VcfMount *m, Node *parent, const char *name,
                       struct fuse_entry_param *e, GError **error);
/* The clone's open disks (opening them if need be). m->lock held. */
OpenClone *open_clone_locked(VcfMount *m, const char *name, GError **error);
/* Opens clone NAME unless open, reading its store without m->lock, and
 * returns it. m->ns_lock held, m->lock not. */
OpenClone *open_clone_now(VcfMount *m, const char *name, GError **error);
/* The same, for a clone its maker OPENED already (taken; NULL: open it). */
OpenClone *open_clone_publish(VcfMount *m, const char *name, VcfClone *opened,
                              GError **error);
/* Takes the open clone NAME out of the table (NULL if not open) and drops
 * its protection. m->ns_lock and m->lock held. */
OpenClone *open_clone_steal(VcfMount *m, const char *name);
/* Undoes open_clone_steal after a refusal. m->ns_lock and m->lock held. */
void open_clone_put_back(VcfMount *m, const char *name, OpenClone *oc);
/* Frees a stolen clone without writing anything: its store is gone. */
void open_clone_discard(OpenClone *oc);
/* What clone.ini says of NAME: the open clone's copy, else read now into
 * *OWNED (which the caller frees). NULL if there is no such clone. m->lock held. */
const VcfCloneInfo *clone_info_locked(VcfMount *m, const char *name, VcfCloneInfo **owned);
/* Takes back the clone's base snapshot if nothing needs it; logs what it
 * did. m->pass_writes held for writing and m->ns_lock held. */
void release_base_logged(VcfMount *m, const VcfCloneInfo *info);
/* TRUE if a passed-through file inside folder DIR is open for writing.
 * m->lock held. */
gboolean open_for_writing_under(VcfMount *m, const char *dir);
/* Name of the clone whose parents read REAL (or something under it), or NULL. m->lock held. */
const char *protected_by(VcfMount *m, const char *real);
/* Name of the clone whose parents include the file open as FD (or with
 * ST's device and inode), or NULL. m->lock held. */
const char *protected_fd_by(VcfMount *m, int fd);
const char *protected_id_by(VcfMount *m, const struct stat *st);
/* Watching the files below open clones (watch.c): started in the serving
 * process, stopped before the syncer; a file is watched from when it is
 * protected (m->lock held) until it is not. */
void watch_start(VcfMount *m);
void watch_file_locked(VcfMount *m, const char *path);
/* Drops the watches of files no longer protected. m->lock held. */
void watch_prune_locked(VcfMount *m);
void watch_stop(VcfMount *m);
/* Recomputes the protected set from the open clones. m->lock held. */
void protect_refresh(VcfMount *m);
/* The clone's info when NAME in clone folder N is one of its disk files:
 * returns TRUE and sets *STEM_INDEX and *IS_FLAT. m->lock held. */
gboolean clone_disk_name(VcfMount *m, const Node *clone_dir, const char *name,
                         guint *stem_index, gboolean *is_flat);
/* TRUE if NAME in clone folder N is the clone's own state, never shown nor
 * made through the mount (clone.ini, sums, markers, the deltas). m->lock held. */
gboolean clone_hidden_name(VcfMount *m, const Node *clone_dir, const char *name);
/* Replies with E, or forgets the lookup E counted if the kernel never got
 * it (the request was interrupted). m->lock not held. */
void reply_entry_counted(fuse_req_t req, VcfMount *m, const struct fuse_entry_param *e);
/* The text of the flat descriptor shown beside DISK's flat file. */
char *disk_descriptor(const char *stem, VcfDisk *disk);

/* The real folder behind PARENT for making NAME in it, or NULL with *ERR
 * and *WHY. m->lock held. */
char *real_child(VcfMount *m, const Node *parent, const char *name, int *err, char **why);
/* Claims clone NAME under SOURCE for WHAT ("rmdir", "rm", "mv"): none of
 * its disks is open and no clone depends on it; it joins m->closing so
 * that none is opened until at_rest_done. A fresh copy of its info, or
 * NULL with *ERR and *WHY. m->ns_lock held. */
VcfCloneInfo *clone_at_rest(VcfMount *m, const char *source, const char *name,
                            const char *what, int *err, char **why);
/* Ends a clone_at_rest claim; the nodes under GONE_PATH (if given) are
 * gone, and with SELF the node of GONE_PATH too (DISKS_ONLY: just its disk
 * names). */
void at_rest_done(VcfMount *m, const char *name, const char *gone_path, gboolean self,
                  gboolean disks_only);

/* Frees the handles the kernel never released (at unmount). */
void open_files_free_all(VcfMount *m);

/* Operations, by file. */
void fs_init(void *userdata, struct fuse_conn_info *conn);
void fs_destroy(void *userdata);
void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                struct fuse_file_info *fi);
void fs_readlink(fuse_req_t req, fuse_ino_t ino);
void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info *fi);
void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_statfs(fuse_req_t req, fuse_ino_t ino);
void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                 size_t size, int flags);
void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
               fuse_ino_t newparent, const char *newname, unsigned int flags);
void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);

void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi);
void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
             struct fuse_file_info *fi);
void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
              off_t off, struct fuse_file_info *fi);
void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi);

/* Keeps WHY as the last refusal of a clone change under SOURCE (mkdir,
 * rmdir, mv, setfattr), for the source's user.vmclonefs.error. m->lock not
 * held. */
void note_refusal(VcfMount *m, const char *source, const char *why);
/* Whether mkdir in clones/SOURCE makes a full clone: its type attribute
 * if set, else -o clone_type. m->lock held. */
gboolean source_full_locked(VcfMount *m, const char *source);
/* VixVM_Clone refuses a full clone of a powered-on VM, whatever its
 * snapshot (its disks are in use): EBUSY saying so. */
gboolean full_allowed(VcfMount *m, const char *source, GError **error);

/* ---- replies spliced from the layers' files (splice-reply.c) ---- */
/* The largest request: see fs_init. */
#define VCF_MAX_REQUEST (512 * 1024)
#define SPLICE_MAX_RUNS 32
typedef struct {
    VcfMount *m;
    fuse_req_t req;
} SpliceReply;
/* A VcfDiskRunsFunc: replies to the read with RUNS (DATA: a SpliceReply)
 * when all of their bytes could be moved into a pipe; FALSE, with nothing
 * replied, when a file failed or ended early: the read is then done the
 * usual way, which says why. */
gboolean splice_reply(const VcfRun *runs, guint n, gpointer data);
/* Frees an idle pipe of m->pipes. */
void splice_pipe_free(gpointer pipe);

/* ---- what the kernel caches of flat disks (flat-cache.c) ---- */
/* A handle on flat disk N opened with FLAGS: whether it bypasses the
 * kernel's page cache (FOPEN_DIRECT_IO), and *KEEP: whether the kernel may
 * keep the pages it has. m->lock held. */
gboolean flat_cache_opened_locked(Node *n, int flags, gboolean *keep);
/* Its release (N may be NULL: forgotten). m->lock held. */
void flat_cache_closed_locked(Node *n, gboolean direct);

/* ---- full clones (copies.c) ---- */
/* Starts (or resumes) the copy of open clone NAME. m->ns_lock held. */
gboolean copy_start(VcfMount *m, const char *name, OpenClone *oc, GError **error);
/* Stops OC's copy, if any; it resumes from its cursor when started again.
 * OC is out of m->clones (stolen or being freed); m->lock not held. */
void copy_stop(OpenClone *oc);
/* Stops OC's copier if it broke, so that copy_start makes a new one.
 * m->ns_lock held, m->lock not. */
void copy_stop_if_done(VcfMount *m, OpenClone *oc);
/* Whether OC's copy runs or waits for space. m->ns_lock held. */
gboolean copy_running(VcfMount *m, OpenClone *oc);
/* Whether clone.ini says a copy is to run (a full clone not done yet). */
gboolean copy_wanted(const VcfCloneInfo *info);
/* At mount: opens every full clone whose copy is not done and resumes it. */
void copy_resume_all(VcfMount *m);
/* From the syncer: goes on with paused copies, and ends finished ones
 * (protection dropped, base snapshot taken back if unused). Takes
 * m->pass_writes and m->ns_lock. */
void copy_tick(VcfMount *m);
/* The status of clone NAME's copy, from its copier or from clone.ini
 * (INFO): what xattrs show. m->lock held. */
void copy_status_locked(VcfMount *m, const VcfCloneInfo *info, VcfCopyStatus *status);
/* What the clone folder's status file says of clone NAME, or NULL if
 * there is no such clone. m->lock held. */
char *status_text_locked(VcfMount *m, const char *name);
/* Space the clone's store folder DIR uses, in bytes. */
guint64 clone_store_bytes(const char *dir);
