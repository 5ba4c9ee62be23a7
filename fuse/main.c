/* vmclonefs: mount a library of VMware VMs; mkdir clones/VM/NAME clones. */
#include "config.h"
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

typedef struct {
    char *library;
    char *log_file;
    unsigned parent_handles;
    double cache_timeout;
    char *clone_type;
    char *copy_rate;
    int show_help;
    int show_version;
} Options;

#define OPT(t, p) { t, offsetof(Options, p), 1 }
static const struct fuse_opt option_spec[] = {
    OPT("parent_handles=%u", parent_handles),
    OPT("cache_timeout=%lf", cache_timeout),
    OPT("log=%s", log_file),
    OPT("clone_type=%s", clone_type),
    OPT("copy_rate=%s", copy_rate),
    OPT("-h", show_help),
    OPT("--help", show_help),
    OPT("-V", show_version),
    OPT("--version", show_version),
    FUSE_OPT_END
};

static int take_library(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    Options *o = data;
    if (key == FUSE_OPT_KEY_NONOPT && o->library == NULL) {
        o->library = strdup(arg);
        return 0;       /* ours; the mount point goes on to libfuse */
    }
    return 1;
}

static void usage(const char *prog)
{
    printf("usage: %s [options] LIBRARY MOUNTPOINT\n\n"
           "Mounts LIBRARY, a folder of VMware VM folders, at MOUNTPOINT. Beside the\n"
           "VMs the mount shows clones/: mkdir clones/VM/NAME makes NAME, a linked\n"
           "clone of VM's current state (VM must be powered off; a VMware snapshot is\n"
           "taken, or reused while the VM has not changed), and mkdir\n"
           "clones/VM@SNAPSHOT/NAME a linked clone of that snapshot. A clone's folder\n"
           "holds NAME.vmx, NAME.vmdk and NAME-flat.vmdk, the clone's disk, read/write,\n"
           "copy-on-write. rmdir deletes a clone whose folder holds nothing of yours\n"
           "(else ENOTEMPTY; rm -r deletes it all); rm of a disk file removes that name\n"
           "for good, and the last one the clone's stored disks; mv clones/VM/A\n"
           "clones/VM/B renames a clone. A snapshot vmclonefs took goes with its last\n"
           "clone if the VM has not written since. A full clone is usable at once and\n"
           "is then copied in the background until it needs nothing of its source;\n"
           "setfattr -n user.vmclonefs.type -v full CLONE_FOLDER makes a linked clone\n"
           "full; the same on clones/SOURCE makes mkdir there make full clones (the\n"
           "way to clone a suspended VM: its disks as they are, no snapshot). getfattr\n"
           "-d -m - CLONE_FOLDER shows source, snapshot, type, state, progress, rate,\n"
           "error and store_bytes, and cat CLONE_FOLDER/.vmclonefs-status says the same\n"
           "for a person; vmclonefs-ctl(1) lists, clones, promotes and\n"
           "follows copies through the mount. See vmclonefs(1) for every refusal.\n\n"
           "vmclonefs options:\n"
           "    -o parent_handles=N    libvmdk handles per parent disk, for parallel\n"
           "                           reads (default 4)\n"
           "    -o cache_timeout=S     seconds the kernel may cache names and\n"
           "                           attributes (default 1)\n"
           "    -o log=FILE            append log lines to FILE (default: standard error\n"
           "                           with -f, else syslog)\n"
           "    -o clone_type=TYPE     what mkdir makes: linked (default) or full\n"
           "    -o copy_rate=MIB       cap each full clone's copy at MIB MiB/s, a whole\n"
           "                           number (default and 0: no cap)\n\n", prog);
}

/* ---- logging: a sentence per event, to where the user will look -------- */

typedef struct {
    FILE *file;
    gboolean foreground;
    gboolean debug;
} LogTarget;

/* A message is one line whatever names it quotes: a clone name holding a
 * newline must not forge a log line of its own. */
static char *one_line(const char *msg)
{
    GString *out = g_string_sized_new(strlen(msg));
    for (const unsigned char *c = (const unsigned char *)msg; *c; c++) {
        if (*c == '\n')
            g_string_append(out, "\\n");
        else if (*c < 0x20 || *c == 0x7f)
            g_string_append_printf(out, "\\x%02x", *c);
        else
            g_string_append_c(out, (char)*c);
    }
    return g_string_free(out, FALSE);
}

static GLogWriterOutput write_log(GLogLevelFlags level, const GLogField *fields,
                                  gsize n_fields, gpointer data)
{
    LogTarget *t = data;
    if ((level & G_LOG_LEVEL_DEBUG) && !t->debug)
        return G_LOG_WRITER_HANDLED;
    const char *raw = NULL;
    for (gsize i = 0; i < n_fields; i++)
        if (g_str_equal(fields[i].key, "MESSAGE"))
            raw = fields[i].value;
    if (raw == NULL)
        return G_LOG_WRITER_UNHANDLED;
    g_autofree char *msg = one_line(raw);
    const char *what = level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL) ? "error"
        : level & G_LOG_LEVEL_WARNING ? "warning" : level & G_LOG_LEVEL_DEBUG ? "debug" : "info";
    if (t->file != NULL || t->foreground) {
        FILE *f = t->file ? t->file : stderr;
        g_autoptr(GDateTime) now = g_date_time_new_now_local();
        g_autofree char *ts = g_date_time_format(now, "%F %T");
        fprintf(f, "%s vmclonefs[%d] %s: %s\n", ts, (int)getpid(), what, msg);
        fflush(f);
    } else {
        int prio = level & G_LOG_LEVEL_WARNING ? LOG_WARNING
            : level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL) ? LOG_ERR : LOG_INFO;
        syslog(prio, "%s", msg);
    }
    return G_LOG_WRITER_HANDLED;
}

static gboolean mount_inside_library(const char *library, const char *mountpoint)
{
    g_autofree char *lib = realpath(library, NULL);
    g_autofree char *mnt = realpath(mountpoint, NULL);
    if (lib == NULL || mnt == NULL)
        return FALSE;   /* the mount itself will say what is missing */
    gsize n = strlen(lib);
    return g_str_equal(lib, "/") || (strncmp(mnt, lib, n) == 0 && (mnt[n] == '/' || mnt[n] == 0));
}

/* Each parent chain holds a file per link and extent, per handle. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    Options opts = { .parent_handles = 4, .cache_timeout = 1.0 };
    struct fuse_cmdline_opts cmd = { 0 };
    struct fuse_session *se = NULL;
    struct fuse_loop_config *loop = NULL;
    VcfMount m = { 0 };
    LogTarget log = { 0 };
    GError *error = NULL;
    int ret = 1;

    if (fuse_opt_parse(&args, &opts, option_spec, take_library) == -1)
        goto out_args;
    if (opts.show_help) {
        usage(argv[0]);
        /* libfuse's list describes -h and -V: ours would repeat them. */
        printf("General options:\n");
        fuse_cmdline_help();
        fuse_lowlevel_help();
        ret = 0;
        goto out_args;
    }
    if (opts.show_version) {
        printf("vmclonefs %s\nFUSE library %s\n", PACKAGE_VERSION, fuse_pkgversion());
        ret = 0;
        goto out_args;
    }
    if (fuse_parse_cmdline(&args, &cmd) != 0)
        goto out_args;
    if (opts.library == NULL || cmd.mountpoint == NULL) {
        fprintf(stderr, "usage: %s [options] LIBRARY MOUNTPOINT (see --help)\n", argv[0]);
        ret = 2;
        goto out_cmd;
    }
    if (opts.clone_type != NULL && strcmp(opts.clone_type, "linked") != 0
        && strcmp(opts.clone_type, "full") != 0) {
        fprintf(stderr, "vmclonefs: -o clone_type=%s: the type is linked or full\n",
                opts.clone_type);
        ret = 2;
        goto out_cmd;
    }
    guint64 rate_mib = 0;
    if (opts.copy_rate != NULL
        && (!g_ascii_string_to_unsigned(opts.copy_rate, 10, 0, 1 << 20, &rate_mib, NULL))) {
        fprintf(stderr, "vmclonefs: -o copy_rate=%s: give whole MiB per second, 1 to %u "
                "(0: no cap)\n", opts.copy_rate, 1 << 20);
        ret = 2;
        goto out_cmd;
    }
    if (mount_inside_library(opts.library, cmd.mountpoint)) {
        fprintf(stderr, "vmclonefs: the mount point %s is inside the library %s; mount it "
                "elsewhere (the mount would have to list itself)\n", cmd.mountpoint,
                opts.library);
        ret = 2;
        goto out_cmd;
    }
    log.foreground = cmd.foreground;
    log.debug = cmd.debug;
    if (opts.log_file != NULL && (log.file = fopen(opts.log_file, "ae")) == NULL) {
        fprintf(stderr, "vmclonefs: cannot open log %s: %s\n", opts.log_file, strerror(errno));
        goto out_cmd;
    }
    /* The kernel has masked the modes mkdir and create bring with the
     * caller's umask (we do not ask for FUSE_CAP_DONT_MASK): ours must not
     * mask them again. The core gives its own files explicit modes; the log
     * was opened above, under the user's umask. */
    umask(0);
    if (!cmd.foreground && log.file == NULL)
        openlog("vmclonefs", LOG_PID, LOG_DAEMON);
    g_log_set_writer_func(write_log, &log, NULL);
    raise_fd_limit();

    if (!vcf_mount_init(&m, opts.library, opts.parent_handles, opts.cache_timeout, &error)) {
        fprintf(stderr, "vmclonefs: %s\n", error->message);
        g_error_free(error);
        goto out_log;
    }
    m.full_default = opts.clone_type != NULL && strcmp(opts.clone_type, "full") == 0;
    m.copy_rate = rate_mib * 1024 * 1024;
    se = fuse_session_new(&args, &vcf_fs_ops, sizeof vcf_fs_ops, &m);
    if (se == NULL)
        goto out_mount;
    m.se = se;
    if (fuse_set_signal_handlers(se) != 0)
        goto out_session;
    if (fuse_session_mount(se, cmd.mountpoint) != 0)
        goto out_signals;
    g_message("mounted %s at %s", opts.library, cmd.mountpoint);
    /* In the background the parent returns now, with the mount in place. */
    fuse_daemonize(cmd.foreground);
    if (!cmd.foreground && !vcf_library_note_holder(m.lib, &error)) {
        /* The lock itself came through the fork; only its label is stale. */
        g_warning("the lock file will name the launcher's pid: %s", error->message);
        g_clear_error(&error);
    }
    if (cmd.singlethread) {
        ret = fuse_session_loop(se);
    } else {
        loop = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(loop, cmd.clone_fd);
        /* libfuse 3.14 leaves max_idle_threads at UINT_MAX when the option
         * is not given, and warns if handed that back. */
        if (cmd.max_threads > 0 && cmd.max_threads <= 100000)
            fuse_loop_cfg_set_max_threads(loop, cmd.max_threads);
        if (cmd.max_idle_threads <= 100000)
            fuse_loop_cfg_set_idle_threads(loop, cmd.max_idle_threads);
        ret = fuse_session_loop_mt(se, loop);
        fuse_loop_cfg_destroy(loop);
    }
    /* The loop returns 0 after an unmount, -errno on a failure, and the
     * number of the signal that our handlers (fuse_set_signal_handlers)
     * caught: that is a clean unmount too. */
    ret = !(ret == 0 || ret == SIGHUP || ret == SIGINT || ret == SIGTERM);
    fuse_session_unmount(se);
    g_message("unmounted %s", cmd.mountpoint);
out_signals:
    fuse_remove_signal_handlers(se);
out_session:
    fuse_session_destroy(se);
out_mount:
    vcf_mount_clear(&m);
out_log:
    if (log.file != NULL) {
        /* The writer stays installed (GLib allows one): send it to stderr. */
        fclose(log.file);
        log.file = NULL;
        log.foreground = TRUE;
    }
out_cmd:
    free(cmd.mountpoint);
out_args:
    free(opts.library);
    free(opts.log_file);
    free(opts.clone_type);
    free(opts.copy_rate);
    fuse_opt_free_args(&args);
    return ret;
}
