/* vmclonefs-ctl: lists, makes, deletes and promotes clones of a mounted
 * vmclonefs library, and shows a copy's progress. It works through the
 * mount (see ctl-mount.c); a refusal exits 1 with the daemon's sentence. */
#include "config.h"
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vmclonefs-ctl [-m MOUNTPOINT] COMMAND [ARGS]\n\n"
            "Works on a mounted vmclonefs library through the mount (default: the only\n"
            "one mounted, or the one the current folder is in).\n\n"
            "commands:\n"
            "  list [-H] [--json]      clones with source, type, state, progress and\n"
            "                          store size; -H: tab-separated, no header\n"
            "  clone SRC NAME [--full | --linked]\n"
            "                          make clone NAME of SRC (a VM, VM@SNAPSHOT or a\n"
            "                          clone); --full or --linked: that type, else the\n"
            "                          type the source makes (its user.vmclonefs.type)\n"
            "  delete NAME             delete clone NAME (as rmdir of its folder)\n"
            "  promote NAME            make linked clone NAME full: its copy starts\n"
            "  status NAME [--watch]   the clone's state; --watch follows a copy with a\n"
            "                          progress bar (plain lines when not a terminal)\n"
            "  why SRC                 why the last mkdir, rmdir, mv or setfattr of a\n"
            "                          clone under SRC was refused\n\n"
            "Exit status: 0 on success, 1 when the daemon refused (its sentence is\n"
            "printed), 2 for a bad command line. See vmclonefs-ctl(1).\n");
}

static int refused(const char *what, int err, const char *source_dir)
{
    g_autofree char *why = source_dir ? ctl_xattr(source_dir, "error") : NULL;
    if (why != NULL && *why != '\0')
        fprintf(stderr, "vmclonefs-ctl: %s: %s (%s)\n", what, why, g_strerror(err));
    else
        fprintf(stderr, "vmclonefs-ctl: %s: %s\n", what, g_strerror(err));
    return 1;
}

/* As the status file writes sizes: plain ASCII, whatever the locale. */
static char *human(guint64 bytes)
{
    if (bytes < 1024)
        return g_strdup_printf("%" G_GUINT64_FORMAT " B", bytes);
    if (bytes < 1024 * 1024)
        return g_strdup_printf("%.1f KiB", bytes / 1024.0);
    if (bytes < G_GUINT64_CONSTANT(1) << 30)
        return g_strdup_printf("%.1f MiB", bytes / 1048576.0);
    return g_strdup_printf("%.1f GiB", bytes / 1073741824.0);
}

static char *progress_of(const CtlClone *c)
{
    if (c->total == 0)
        return g_strdup(g_strcmp0(c->state, "full") == 0 ? "100.0%" : "-");
    return g_strdup_printf("%.1f%%", 100.0 * c->done / c->total);
}

static void json_string(GString *out, const char *s)
{
    g_string_append_c(out, '"');
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            g_string_append_printf(out, "\\%c", *p);
        else if (*p < 0x20)
            g_string_append_printf(out, "\\u%04x", *p);
        else
            g_string_append_c(out, (char)*p);
    }
    g_string_append_c(out, '"');
}

static int cmd_list(const char *mnt, int argc, char **argv)
{
    gboolean scripted = FALSE, json = FALSE;
    for (int i = 0; i < argc; i++) {
        if (g_str_equal(argv[i], "-H"))
            scripted = TRUE;
        else if (g_str_equal(argv[i], "--json"))
            json = TRUE;
        else {
            fprintf(stderr, "vmclonefs-ctl list: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    GError *error = NULL;
    g_autoptr(GPtrArray) all = ctl_list_clones(mnt, &error);
    if (all == NULL) {
        fprintf(stderr, "vmclonefs-ctl: %s\n", error->message);
        g_error_free(error);
        return 1;
    }
    if (json) {
        GString *out = g_string_new("[");
        for (guint i = 0; i < all->len; i++) {
            const CtlClone *c = all->pdata[i];
            g_string_append(out, i ? ",\n {" : "\n {");
            g_string_append(out, "\"name\": ");
            json_string(out, c->name);
            g_string_append(out, ", \"source\": ");
            json_string(out, c->source);
            g_string_append(out, ", \"type\": ");
            json_string(out, c->type);
            g_string_append(out, ", \"state\": ");
            json_string(out, c->state);
            g_string_append_printf(out, ", \"done\": %" G_GUINT64_FORMAT ", \"total\": %"
                                   G_GUINT64_FORMAT ", \"rate\": %" G_GUINT64_FORMAT
                                   ", \"store_bytes\": %" G_GUINT64_FORMAT ", \"error\": ",
                                   c->done, c->total, c->rate, c->store_bytes);
            json_string(out, c->error);
            g_string_append_c(out, '}');
        }
        g_string_append(out, all->len ? "\n]\n" : "]\n");
        fputs(out->str, stdout);
        g_string_free(out, TRUE);
        return 0;
    }
    /* Columns as wide as their longest entry, as zfs list makes them. */
    int wn = 4, ws = 6;
    for (guint i = 0; i < all->len; i++) {
        const CtlClone *c = all->pdata[i];
        wn = MAX(wn, (int)strlen(c->name));
        ws = MAX(ws, (int)strlen(c->source ? c->source : ""));
    }
    if (!scripted)
        printf("%-*s  %-*s  %-6s  %-7s  %8s  %10s\n", wn, "NAME", ws, "SOURCE", "TYPE", "STATE",
               "PROGRESS", "USED");
    for (guint i = 0; i < all->len; i++) {
        const CtlClone *c = all->pdata[i];
        g_autofree char *p = progress_of(c);
        if (scripted) {
            printf("%s\t%s\t%s\t%s\t%s\t%" G_GUINT64_FORMAT "\n", c->name, c->source, c->type,
                   c->state, p, c->store_bytes);
        } else {
            g_autofree char *used = human(c->store_bytes);
            printf("%-*s  %-*s  %-6s  %-7s  %8s  %10s\n", wn, c->name, ws, c->source, c->type,
                   c->state, p, used);
        }
    }
    return 0;
}

static int set_full(const char *folder, const char *name, const char *source_dir)
{
    if (setxattr(folder, "user.vmclonefs.type", "full", 4, 0) == 0)
        return 0;
    g_autofree char *what = g_strdup_printf("promote %s", name);
    return refused(what, errno, source_dir);
}

/* mkdir of FOLDER in source folder SDIR making a WANT ("full", "linked")
 * clone, or what the source makes when WANT is NULL. The source's type is
 * set for the mkdir and put back after (a full clone of a suspended VM
 * must be full from its mkdir on). */
static int make_typed(const char *sdir, const char *folder, const char *want, int *err)
{
    g_autofree char *was = want ? ctl_xattr(sdir, "type") : NULL;
    gboolean set = want != NULL && g_strcmp0(was, want) != 0;
    if (set && setxattr(sdir, "user.vmclonefs.type", want, strlen(want), 0) < 0) {
        *err = errno;
        return -1;
    }
    int r = mkdir(folder, 0755);
    *err = errno;
    /* Put back unless someone else set it meanwhile. */
    g_autofree char *now = set ? ctl_xattr(sdir, "type") : NULL;
    if (set && was != NULL && g_strcmp0(now, want) == 0)
        setxattr(sdir, "user.vmclonefs.type", was, strlen(was), 0);
    return r;
}

static int cmd_clone(const char *mnt, int argc, char **argv)
{
    const char *want = NULL;
    const char *args[2] = { NULL, NULL };
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (g_str_equal(argv[i], "--full") || g_str_equal(argv[i], "--linked")) {
            if (want != NULL && !g_str_equal(want, argv[i] + 2)) {
                fprintf(stderr, "vmclonefs-ctl clone: --full and --linked exclude each other\n");
                return 2;
            }
            want = argv[i] + 2;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "vmclonefs-ctl clone: unknown option %s\n", argv[i]);
            return 2;
        } else if (n < 2) {
            args[n++] = argv[i];
        } else {
            n = 3;
        }
    }
    if (n != 2) {
        fprintf(stderr, "usage: vmclonefs-ctl clone SRC NAME [--full | --linked]\n");
        return 2;
    }
    g_autofree char *sdir = g_build_filename(mnt, "clones", args[0], NULL);
    g_autofree char *folder = g_build_filename(sdir, args[1], NULL);
    g_autofree char *what = g_strdup_printf("clone %s %s", args[0], args[1]);
    int err;
    if (make_typed(sdir, folder, want, &err) < 0)
        return refused(what, err, g_file_test(sdir, G_FILE_TEST_IS_DIR) ? sdir : NULL);
    g_autofree char *type = ctl_xattr(folder, "type");
    if (want != NULL && g_strcmp0(type, want) != 0) {
        /* Another client set the source's type meanwhile: a refused
         * command changes nothing. */
        fprintf(stderr, "vmclonefs-ctl: clone %s: made %s, not %s (the source's type changed "
                "meanwhile); deleting it\n", args[1], type ? type : "?", want);
        if (rmdir(folder) < 0)
            fprintf(stderr, "vmclonefs-ctl: clone %s stays: %s\n", args[1], g_strerror(errno));
        return 1;
    }
    return 0;
}

static CtlClone *find_or_say(const char *mnt, const char *name)
{
    GError *error = NULL;
    CtlClone *c = ctl_find_clone(mnt, name, &error);
    if (c == NULL) {
        fprintf(stderr, "vmclonefs-ctl: %s\n", error->message);
        g_error_free(error);
    }
    return c;
}

static int cmd_delete(const char *mnt, const char *name)
{
    g_autoptr(CtlClone) c = find_or_say(mnt, name);
    if (c == NULL)
        return 1;
    if (rmdir(c->folder) == 0)
        return 0;
    g_autofree char *what = g_strdup_printf("delete %s", name);
    g_autofree char *sdir = g_path_get_dirname(c->folder);
    return refused(what, errno, sdir);
}

static int cmd_promote(const char *mnt, const char *name)
{
    g_autoptr(CtlClone) c = find_or_say(mnt, name);
    if (c == NULL)
        return 1;
    g_autofree char *sdir = g_path_get_dirname(c->folder);
    return set_full(c->folder, name, sdir);
}

static void bar(const CtlClone *c, gboolean tty)
{
    double frac = c->total ? (double)c->done / c->total : 0;
    g_autofree char *rate = human(c->rate);
    g_autofree char *eta = NULL;
    if (c->rate > 0 && c->total > c->done) {
        guint64 s = (c->total - c->done) / c->rate;
        eta = g_strdup_printf("%" G_GUINT64_FORMAT ":%02u:%02u", s / 3600, (guint)(s / 60 % 60),
                              (guint)(s % 60));
    }
    if (!tty) {
        printf("%s %s %.1f%% %s/s eta %s\n", c->name, c->state, frac * 100, rate,
               eta ? eta : "-");
        fflush(stdout);   /* a line a second, also into a pipe */
        return;
    }
    char cells[31];
    int filled = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        cells[i] = i < filled ? '#' : '.';
    cells[30] = '\0';
    printf("\r%s [%s] %5.1f%%  %s/s  ETA %s  %s\033[K", c->name, cells, frac * 100, rate,
           eta ? eta : "-", c->state);
    fflush(stdout);
}

static int cmd_status(const char *mnt, const char *name, gboolean watch)
{
    g_autoptr(CtlClone) c = find_or_say(mnt, name);
    if (c == NULL)
        return 1;
    if (!watch) {
        g_autofree char *path = g_build_filename(c->folder, ".vmclonefs-status", NULL);
        g_autofree char *text = NULL;
        GError *error = NULL;
        if (!g_file_get_contents(path, &text, NULL, &error)) {
            fprintf(stderr, "vmclonefs-ctl: %s\n", error->message);
            g_error_free(error);
            return 1;
        }
        fputs(text, stdout);
        return 0;
    }
    gboolean tty = isatty(STDOUT_FILENO);
    for (;;) {
        g_autoptr(CtlClone) now = find_or_say(mnt, name);
        if (now == NULL)
            return 1;
        bar(now, tty);
        if (g_strcmp0(now->state, "copying") != 0) {
            if (tty)
                printf("\n");
            if (now->error != NULL && *now->error != '\0')
                fprintf(stderr, "vmclonefs-ctl: %s: %s\n", name, now->error);
            return g_strcmp0(now->state, "broken") == 0 ? 1 : 0;
        }
        g_usleep(tty ? G_USEC_PER_SEC / 2 : G_USEC_PER_SEC);
    }
}

static int cmd_why(const char *mnt, const char *source)
{
    g_autofree char *sdir = g_build_filename(mnt, "clones", source, NULL);
    g_autofree char *why = ctl_xattr(sdir, "error");
    if (why == NULL) {
        fprintf(stderr, "vmclonefs-ctl: no source named \"%s\" in %s\n", source, mnt);
        return 1;
    }
    printf("%s\n", *why ? why : "nothing was refused there");
    return 0;
}

int main(int argc, char **argv)
{
    const char *given = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (g_str_equal(argv[i], "-h") || g_str_equal(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (g_str_equal(argv[i], "-V") || g_str_equal(argv[i], "--version")) {
            printf("vmclonefs-ctl %s\n", PACKAGE_VERSION);
            return 0;
        } else if (g_str_equal(argv[i], "-m")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vmclonefs-ctl: -m needs a mount point\n");
                return 2;
            }
            given = argv[++i];
        } else {
            fprintf(stderr, "vmclonefs-ctl: unknown option %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **args = argv + i;
    GError *error = NULL;
    g_autofree char *mnt = ctl_find_mount(given, &error);
    if (mnt == NULL) {
        fprintf(stderr, "vmclonefs-ctl: %s\n", error->message);
        g_error_free(error);
        return 1;
    }
    if (g_str_equal(cmd, "list"))
        return cmd_list(mnt, rest, args);
    if (g_str_equal(cmd, "clone"))
        return cmd_clone(mnt, rest, args);
    if (g_str_equal(cmd, "delete") && rest == 1)
        return cmd_delete(mnt, args[0]);
    if (g_str_equal(cmd, "promote") && rest == 1)
        return cmd_promote(mnt, args[0]);
    if (g_str_equal(cmd, "status") && (rest == 1 || (rest == 2 && g_str_equal(args[1], "--watch"))))
        return cmd_status(mnt, args[0], rest == 2);
    if (g_str_equal(cmd, "why") && rest == 1)
        return cmd_why(mnt, args[0]);
    fprintf(stderr, "vmclonefs-ctl: bad command \"%s\" or arguments (see --help)\n", cmd);
    return 2;
}
