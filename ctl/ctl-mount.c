/* vmclonefs-ctl: finding the mount and reading what it shows of clones.
 * Everything goes through the mount (paths, mkdir, rmdir, xattrs), so the
 * daemon stays the only writer of a library. */
#include "config.h"
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static char *unescape(const char *s)
{
    GString *out = g_string_new(NULL);
    for (; *s; s++) {
        if (s[0] == '\\' && g_ascii_isdigit(s[1]) && g_ascii_isdigit(s[2]) && g_ascii_isdigit(s[3])) {
            g_string_append_c(out, (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0')));
            s += 3;
        } else {
            g_string_append_c(out, *s);
        }
    }
    return g_string_free(out, FALSE);
}

char *ctl_find_mount(const char *given, GError **error)
{
    if (given != NULL) {
        g_autofree char *clones = g_build_filename(given, "clones", NULL);
        if (!g_file_test(clones, G_FILE_TEST_IS_DIR)) {
            g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                        "%s is not a vmclonefs mount (it has no clones/ folder)", given);
            return NULL;
        }
        return g_strdup(given);
    }
    g_autofree char *info = NULL;
    if (!g_file_get_contents("/proc/self/mountinfo", &info, NULL, error))
        return NULL;
    g_auto(GStrv) lines = g_strsplit(info, "\n", -1);
    g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func(g_free);
    for (char **l = lines; *l != NULL; l++) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - TYPE SOURCE ... */
        g_auto(GStrv) f = g_strsplit(*l, " ", -1);
        const char *dash = strstr(*l, " - ");
        if (g_strv_length(f) < 5 || dash == NULL || !g_str_has_prefix(dash + 3, "fuse.vmclonefs "))
            continue;
        g_ptr_array_add(found, unescape(f[4]));
    }
    if (found->len == 1)
        return g_strdup(found->pdata[0]);
    /* Several: the one the current folder is in. */
    g_autofree char *cwd = g_get_current_dir();
    for (guint i = 0; i < found->len; i++) {
        const char *mnt = found->pdata[i];
        gsize n = strlen(mnt);
        if (strncmp(cwd, mnt, n) == 0 && (cwd[n] == '/' || cwd[n] == '\0'))
            return g_strdup(mnt);
    }
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, found->len == 0
                ? "no vmclonefs mount found; mount one, or name it with -m MOUNTPOINT"
                : "several vmclonefs mounts; name one with -m MOUNTPOINT, or run this inside it");
    return NULL;
}

char *ctl_xattr(const char *path, const char *name)
{
    g_autofree char *full = g_strconcat("user.vmclonefs.", name, NULL);
    for (;;) {
        ssize_t n = getxattr(path, full, NULL, 0);
        if (n < 0)
            return NULL;
        char *buf = g_malloc(n + 1);
        ssize_t got = getxattr(path, full, buf, n);
        if (got >= 0) {
            buf[got] = '\0';
            return buf;
        }
        g_free(buf);
        if (errno != ERANGE)
            return NULL;   /* else it grew meanwhile: again */
    }
}

static gint by_name(gconstpointer a, gconstpointer b)
{
    const CtlClone *x = *(CtlClone *const *)a, *y = *(CtlClone *const *)b;
    return strcmp(x->name, y->name);
}

void ctl_clone_free(CtlClone *c)
{
    g_free(c->name);
    g_free(c->folder);
    g_free(c->source);
    g_free(c->type);
    g_free(c->state);
    g_free(c->error);
    g_free(c);
}

static CtlClone *read_clone(const char *folder, const char *name)
{
    g_autofree char *type = ctl_xattr(folder, "type");
    if (type == NULL)
        return NULL;   /* not a clone folder (a user's folder, say) */
    CtlClone *c = g_new0(CtlClone, 1);
    c->name = g_strdup(name);
    c->folder = g_strdup(folder);
    c->type = g_steal_pointer(&type);
    c->source = ctl_xattr(folder, "source");
    c->state = ctl_xattr(folder, "state");
    c->error = ctl_xattr(folder, "error");
    g_autofree char *progress = ctl_xattr(folder, "progress");
    g_autofree char *rate = ctl_xattr(folder, "rate");
    g_autofree char *store = ctl_xattr(folder, "store_bytes");
    if (progress != NULL)
        sscanf(progress, "%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT, &c->done, &c->total);
    c->rate = rate ? g_ascii_strtoull(rate, NULL, 10) : 0;
    c->store_bytes = store ? g_ascii_strtoull(store, NULL, 10) : 0;
    return c;
}

GPtrArray *ctl_list_clones(const char *mnt, GError **error)
{
    g_autofree char *clones = g_build_filename(mnt, "clones", NULL);
    GDir *top = g_dir_open(clones, 0, error);
    if (top == NULL)
        return NULL;
    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)ctl_clone_free);
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    const char *src;
    while ((src = g_dir_read_name(top)) != NULL) {
        g_autofree char *sdir = g_build_filename(clones, src, NULL);
        GDir *d = g_dir_open(sdir, 0, NULL);
        const char *name;
        while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
            g_autofree char *folder = g_build_filename(sdir, name, NULL);
            if (g_hash_table_contains(seen, name) || !g_file_test(folder, G_FILE_TEST_IS_DIR))
                continue;
            CtlClone *c = read_clone(folder, name);
            if (c != NULL) {
                g_hash_table_add(seen, g_strdup(name));
                g_ptr_array_add(out, c);
            }
        }
        if (d != NULL)
            g_dir_close(d);
    }
    g_dir_close(top);
    g_ptr_array_sort(out, by_name);
    return out;
}

CtlClone *ctl_find_clone(const char *mnt, const char *name, GError **error)
{
    g_autoptr(GPtrArray) all = ctl_list_clones(mnt, error);
    for (guint i = 0; all != NULL && i < all->len; i++) {
        CtlClone *c = all->pdata[i];
        if (g_str_equal(c->name, name))
            return g_ptr_array_steal_index(all, i);
    }
    if (all != NULL)
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "no clone named \"%s\" in %s",
                    name, mnt);
    return NULL;
}
