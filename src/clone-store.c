#include "config.h"
#include "clone-store.h"
#include "clone-rename.h"
#include "descriptor.h"
#include "fileutil.h"
#include "freeze.h"
#include "grain-sums.h"
#include "names.h"
#include "vcf-error.h"

#include <errno.h>
#include <stdlib.h>
#include <stdarg.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#define INI_GROUP "clone"

void vcf_clone_info_free(VcfCloneInfo *info)
{
    if (info == NULL)
        return;
    g_free(info->name);
    g_free(info->source);
    g_free(info->vm);
    g_free(info->base_snapshot);
    g_free(info->base_uid);
    g_free(info->state);
    g_free(info->error);
    g_free(info->parent_changed);
    g_free(info->type);
    g_free(info->parent_clone);
    g_free(info->dir);
    g_clear_pointer(&info->stems, g_ptr_array_unref);
    g_clear_pointer(&info->unlinked, g_hash_table_unref);
    g_clear_pointer(&info->old_stems, g_ptr_array_unref);
    g_free(info);
}

static gboolean all_names_unlinked(const VcfCloneInfo *info)
{
    for (guint i = 0; i < info->stems->len; i++) {
        const char *stem = g_ptr_array_index(info->stems, i);
        g_autofree char *desc = g_strconcat(stem, ".vmdk", NULL);
        g_autofree char *flat = g_strconcat(stem, "-flat.vmdk", NULL);
        if (!g_hash_table_contains(info->unlinked, desc)
            || !g_hash_table_contains(info->unlinked, flat))
            return FALSE;
    }
    return TRUE;
}

static void load_unlinked(VcfCloneInfo *info)
{
    GDir *d = g_dir_open(info->dir, 0, NULL);
    const char *e;
    while (d != NULL && (e = g_dir_read_name(d)) != NULL)
        if (g_str_has_prefix(e, VCF_UNLINKED_PREFIX))
            g_hash_table_add(info->unlinked, g_strdup(e + strlen(VCF_UNLINKED_PREFIX)));
    if (d != NULL)
        g_dir_close(d);
}

/* The cursor record: "DISK UNIT SUM", SUM the xxh3 of the two numbers as
 * written, so that a torn record is seen as one, padded to CURSOR_LEN. */
#define CURSOR_LEN 64

static char *cursor_text(guint disk, guint64 unit)
{
    g_autofree char *nums = g_strdup_printf("%u %" G_GUINT64_FORMAT, disk, unit);
    char *text = g_strdup_printf("%s %016" G_GINT64_MODIFIER "x", nums,
                                 vcf_grain_sum(nums, strlen(nums)));
    return text;
}

static void load_cursor(VcfCloneInfo *info)
{
    g_autofree char *path = g_build_filename(info->dir, VCF_COPY_CURSOR, NULL);
    g_autofree char *text = NULL;
    guint disk;
    guint64 unit;
    if (!g_file_get_contents(path, &text, NULL, NULL)
        || sscanf(text, "%u %" G_GUINT64_FORMAT, &disk, &unit) != 2)
        return;
    g_autofree char *want = cursor_text(disk, unit);
    if (strncmp(text, want, strlen(want)) != 0)
        return;   /* torn: clone.ini's older cursor stands */
    info->copy_disk = disk;
    info->copy_unit = unit;
}

gboolean vcf_clone_save_cursor(VcfLibrary *lib, const char *name, guint disk, guint64 unit,
                               GError **error)
{
    g_autofree char *dir = g_build_filename(vcf_library_store_root(lib), name, NULL);
    g_autofree char *path = g_build_filename(dir, VCF_COPY_CURSOR, NULL);
    gboolean made = !g_file_test(path, G_FILE_TEST_EXISTS);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        vcf_set_errno(error, errno, path);
        return FALSE;
    }
    g_autofree char *text = cursor_text(disk, unit);
    char rec[CURSOR_LEN];
    memset(rec, ' ', sizeof rec);
    memcpy(rec, text, MIN(strlen(text), sizeof rec - 1));
    rec[sizeof rec - 1] = '\n';
    gboolean ok = vcf_pwrite_all(fd, rec, sizeof rec, 0, path, error);
    if (ok && fdatasync(fd) < 0) {
        vcf_set_errno(error, errno, path);
        ok = FALSE;
    }
    close(fd);
    /* Its name durable once; later records change the file, not the folder. */
    return ok && (!made || vcf_fsync_dir(dir, error));
}

VcfCloneInfo *vcf_clone_info_load(VcfLibrary *lib, const char *name, GError **error)
{
    if (name[0] == '.' || strchr(name, '/') != NULL) {
        g_set_error(error, VCF_ERROR, ENOENT, "no clone named \"%s\"", name);
        return NULL;
    }
    g_autoptr(VcfCloneInfo) info = g_new0(VcfCloneInfo, 1);
    info->name = g_strdup(name);
    info->dir = g_build_filename(vcf_library_store_root(lib), name, NULL);
    info->stems = g_ptr_array_new_with_free_func(g_free);
    info->unlinked = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_autofree char *ini = g_build_filename(info->dir, VCF_CLONE_INI, NULL);
    g_autoptr(GKeyFile) kf = g_key_file_new();
    GError *local = NULL;
    if (!g_key_file_load_from_file(kf, ini, G_KEY_FILE_NONE, &local)) {
        gboolean missing = g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT);
        g_set_error(error, VCF_ERROR, missing ? ENOENT : EINVAL,
                    missing ? "no clone named \"%s\"" : "%s: %s", missing ? name : ini,
                    local->message);
        g_error_free(local);
        return NULL;
    }
    info->source = g_key_file_get_string(kf, INI_GROUP, "source", NULL);
    info->base_snapshot = g_key_file_get_string(kf, INI_GROUP, "base-snapshot", NULL);
    info->base_uid = g_key_file_get_string(kf, INI_GROUP, "base-snapshot-uid", NULL);
    info->type = g_key_file_get_string(kf, INI_GROUP, "type", NULL);
    info->vm = g_key_file_get_string(kf, INI_GROUP, "vm", NULL);
    info->parent_clone = g_key_file_get_string(kf, INI_GROUP, "parent-clone", NULL);
    info->state = g_key_file_get_string(kf, INI_GROUP, "state", NULL);
    info->error = g_key_file_get_string(kf, INI_GROUP, "error", NULL);
    info->parent_changed = g_key_file_get_string(kf, INI_GROUP, "parent-changed", NULL);
    info->copy_disk = (guint) g_key_file_get_uint64(kf, INI_GROUP, "copy-disk", NULL);
    info->copy_unit = g_key_file_get_uint64(kf, INI_GROUP, "copy-unit", NULL);
    info->copy_total = g_key_file_get_uint64(kf, INI_GROUP, "copy-total", NULL);
    load_cursor(info);
    if (info->vm == NULL && info->source != NULL)   /* written before "vm" was */
        info->vm = g_strndup(info->source, strcspn(info->source, "@"));
    /* A rename committed (the folder has the new name) but not tidied yet:
     * clone.ini.next holds the stems the folder's name goes with. */
    g_autofree char *next = g_build_filename(info->dir, VCF_CLONE_INI_NEXT, NULL);
    g_autoptr(GKeyFile) nkf = g_key_file_new();
    g_autofree char *to = NULL;
    if (g_key_file_load_from_file(nkf, next, G_KEY_FILE_NONE, NULL)
        && (to = g_key_file_get_string(nkf, INI_GROUP, "renaming-to", NULL)) != NULL
        && g_str_equal(to, name)) {
        gsize n_old = 0;
        g_auto(GStrv) old = g_key_file_get_string_list(kf, INI_GROUP, "disks", &n_old, NULL);
        info->old_stems = g_ptr_array_new_with_free_func(g_free);
        for (gsize i = 0; i < n_old; i++)
            g_ptr_array_add(info->old_stems, g_strdup(old[i]));
        g_key_file_free(g_steal_pointer(&kf));
        kf = g_steal_pointer(&nkf);
    }
    gsize n = 0;
    g_auto(GStrv) stems = g_key_file_get_string_list(kf, INI_GROUP, "disks", &n, NULL);
    if (info->source == NULL || !g_key_file_has_key(kf, INI_GROUP, "disks", NULL)) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: no source or no disks", ini);
        return NULL;
    }
    for (gsize i = 0; i < n; i++) {
        if (strchr(stems[i], '/') != NULL || stems[i][0] == '.' || stems[i][0] == '\0') {
            g_set_error(error, VCF_ERROR, EINVAL, "%s: bad disk name \"%s\"", ini, stems[i]);
            return NULL;
        }
        g_ptr_array_add(info->stems, g_strdup(stems[i]));
    }
    load_unlinked(info);
    /* Every name gone but the disks not yet freed (a crash in between):
     * the clone has no disks any more. */
    info->disks_gone = info->stems->len > 0 && all_names_unlinked(info);
    return g_steal_pointer(&info);
}

static gint str_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

GPtrArray *vcf_clone_list(VcfLibrary *lib)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    GDir *d = g_dir_open(vcf_library_store_root(lib), 0, NULL);
    const char *e;
    while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
        if (e[0] == '.')
            continue;   /* a clone being made or deleted */
        g_autofree char *ini = g_build_filename(vcf_library_store_root(lib), e, VCF_CLONE_INI, NULL);
        if (g_file_test(ini, G_FILE_TEST_IS_REGULAR))
            g_ptr_array_add(names, g_strdup(e));
    }
    if (d != NULL)
        g_dir_close(d);
    g_ptr_array_sort(names, str_cmp);
    return names;
}

gboolean vcf_clone_exists(VcfLibrary *lib, const char *name)
{
    if (name[0] == '.' || name[0] == '\0' || strchr(name, '/') != NULL)
        return FALSE;
    g_autofree char *ini = g_build_filename(vcf_library_store_root(lib), name, VCF_CLONE_INI, NULL);
    return g_file_test(ini, G_FILE_TEST_IS_REGULAR);
}

/* Whether clone NAME's folder holds frozen layers, which a clone may sit on. */
gboolean vcf_clone_info_update(VcfLibrary *lib, const char *name, GError **error,
                               const char *key, ...)
{
    g_autofree char *ini = g_build_filename(vcf_library_store_root(lib), name, VCF_CLONE_INI,
                                            NULL);
    g_autoptr(GKeyFile) kf = g_key_file_new();
    GError *local = NULL;
    if (!g_key_file_load_from_file(kf, ini, G_KEY_FILE_KEEP_COMMENTS, &local)) {
        g_set_error(error, VCF_ERROR, EIO, "%s: %s", ini, local->message);
        g_error_free(local);
        return FALSE;
    }
    va_list ap;
    va_start(ap, key);
    for (const char *k = key; k != NULL; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        if (v != NULL)
            g_key_file_set_string(kf, INI_GROUP, k, v);
        else
            g_key_file_remove_key(kf, INI_GROUP, k, NULL);
    }
    va_end(ap);
    gsize len;
    g_autofree char *data = g_key_file_to_data(kf, &len, NULL);
    return vcf_file_write_atomic(ini, data, len, error);
}

gboolean vcf_clone_info_is_standalone(const VcfCloneInfo *info)
{
    return g_strcmp0(info->state, "full") == 0;
}

gboolean vcf_clone_check_new_name(VcfLibrary *lib, const char *name, GError **error)
{
    if (!vcf_name_check(name, error))
        return FALSE;
    g_autofree char *store = g_build_filename(vcf_library_store_root(lib), name, NULL);
    g_autofree char *vmdir = g_build_filename(vcf_library_root(lib), name, NULL);
    const char *clash = g_file_test(store, G_FILE_TEST_EXISTS) ? "a clone"
        : g_file_test(vmdir, G_FILE_TEST_EXISTS) ? "a library folder"
        : g_str_equal(name, "clones") ? "the clones folder" : NULL;
    if (clash != NULL) {
        g_set_error(error, VCF_ERROR, EEXIST, "cannot name a clone \"%s\": %s has that name",
                    name, clash);
        return FALSE;
    }
    return TRUE;
}

gboolean vcf_clone_reserved_name(const char *name)
{
    /* ".clone.ini.XXXXXX": what a crash leaves of an atomic rewrite. */
    return g_str_equal(name, VCF_CLONE_INI) || g_str_equal(name, VCF_CLONE_INI_NEXT)
        || g_str_has_prefix(name, "." VCF_CLONE_INI) || g_str_has_suffix(name, ".xxh")
        || g_str_has_prefix(name, ".vcf-");
}

gboolean vcf_clone_disk_name(const VcfCloneInfo *info, const char *name, guint *index,
                             gboolean *is_flat)
{
    if (info->disks_gone || g_hash_table_contains(info->unlinked, name))
        return FALSE;
    for (guint i = 0; i < info->stems->len; i++) {
        const char *stem = g_ptr_array_index(info->stems, i);
        gsize n = strlen(stem);
        if (strncmp(name, stem, n) != 0)
            continue;
        if (g_str_equal(name + n, ".vmdk") || g_str_equal(name + n, "-flat.vmdk")) {
            *index = i;
            *is_flat = name[n] == '-';
            return TRUE;
        }
    }
    return FALSE;
}

/* A store file of one of the clone's disks: STEM.vmdk (the delta, shown
 * as the descriptor) or STEM.vmdk.xxh, for any stem clone.ini lists. */
static gboolean is_disk_file(GPtrArray *stems, const char *name)
{
    for (guint i = 0; i < stems->len; i++) {
        const char *stem = g_ptr_array_index(stems, i);
        gsize n = strlen(stem);
        if (strncmp(name, stem, n) == 0 && g_str_equal(name + n, ".vmdk"))
            return TRUE;
    }
    return FALSE;
}

gboolean vcf_clone_hides(const VcfCloneInfo *info, const char *name)
{
    return vcf_clone_reserved_name(name) || is_disk_file(info->stems, name)
        || (info->old_stems != NULL && is_disk_file(info->old_stems, name));
}

gboolean vcf_clone_is_config(const VcfCloneInfo *info, const char *name)
{
    gsize n = strlen(info->name);
    return strncmp(name, info->name, n) == 0 && g_str_equal(name + n, ".vmx");
}

gboolean vcf_clone_folder_is_own(const VcfCloneInfo *info, char **other, GError **error)
{
    GError *local = NULL;
    GDir *d = g_dir_open(info->dir, 0, &local);
    if (d == NULL) {
        g_set_error(error, VCF_ERROR, EIO, "%s: %s", info->dir, local->message);
        g_error_free(local);
        return FALSE;
    }
    const char *e;
    gboolean own = TRUE;
    while ((e = g_dir_read_name(d)) != NULL) {
        if (vcf_clone_hides(info, e) || vcf_clone_is_config(info, e))
            continue;
        *other = g_strdup(e);
        own = FALSE;
        break;
    }
    g_dir_close(d);
    return own;
}

gboolean vcf_clone_unlink_name(VcfCloneInfo *info, const char *name, gboolean *last,
                               GError **error)
{
    guint index;
    gboolean flat;
    if (!vcf_clone_disk_name(info, name, &index, &flat)) {
        g_set_error(error, VCF_ERROR, ENOENT, "%s: no disk file %s", info->dir, name);
        return FALSE;
    }
    g_autofree char *marker_name = g_strconcat(VCF_UNLINKED_PREFIX, name, NULL);
    g_autofree char *marker = g_build_filename(info->dir, marker_name, NULL);
    /* Empty: an inode and a folder entry, no data block. */
    int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        vcf_set_errno(error, errno, marker);
        return FALSE;
    }
    close(fd);
    if (!vcf_fsync_dir(marker, error)) {
        g_unlink(marker);
        return FALSE;
    }
    g_hash_table_add(info->unlinked, g_strdup(name));
    *last = all_names_unlinked(info);
    return TRUE;
}

gboolean vcf_clone_drop_disks(VcfLibrary *lib, const char *name, GError **error)
{
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, name, error);
    if (info == NULL)
        return FALSE;
    g_autofree char *ini = g_build_filename(info->dir, VCF_CLONE_INI, NULL);
    g_autoptr(GKeyFile) kf = g_key_file_new();
    if (!g_key_file_load_from_file(kf, ini, G_KEY_FILE_KEEP_COMMENTS, NULL)) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: unreadable", ini);
        return FALSE;
    }
    gsize n = 0;
    g_auto(GStrv) stems = g_key_file_get_string_list(kf, INI_GROUP, "disks", &n, NULL);
    /* The data first: that frees space for clone.ini on a full disk. The
     * frozen layers go too: no clone depends on them (the caller checked). */
    GDir *dir = g_dir_open(info->dir, 0, NULL);
    const char *e;
    while (dir != NULL && (e = g_dir_read_name(dir)) != NULL) {
        g_autofree char *p = g_build_filename(info->dir, e, NULL);
        if (vcf_freeze_is_layer_name(e) && g_unlink(p) < 0 && errno != ENOENT) {
            vcf_set_errno(error, errno, p);
            g_dir_close(dir);
            return FALSE;
        }
    }
    if (dir != NULL)
        g_dir_close(dir);
    for (gsize i = 0; i < n; i++) {
        g_autofree char *delta = g_strconcat(info->dir, "/", stems[i], ".vmdk", NULL);
        g_autofree char *sums = g_strconcat(delta, ".xxh", NULL);
        if ((g_unlink(delta) < 0 && errno != ENOENT) || (g_unlink(sums) < 0 && errno != ENOENT)) {
            vcf_set_errno(error, errno, delta);
            return FALSE;
        }
    }
    if (!vcf_fsync_dir(info->dir, error))
        return FALSE;
    g_key_file_set_string_list(kf, INI_GROUP, "disks", NULL, 0);
    g_key_file_set_string(kf, INI_GROUP, "state", "no-disks");
    gsize len;
    g_autofree char *data = g_key_file_to_data(kf, &len, NULL);
    if (!vcf_file_write_atomic(ini, data, len, error))
        return FALSE;
    /* Markers last: until clone.ini lists no disks they keep the names gone. */
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, info->unlinked);
    while (g_hash_table_iter_next(&it, &k, NULL)) {
        g_autofree char *m = g_strconcat(info->dir, "/" VCF_UNLINKED_PREFIX, (char *)k, NULL);
        g_unlink(m);
    }
    return vcf_fsync_dir(info->dir, error);
}

/* A free ".deleting-NAME[.N]" beside the clone: renamed onto in one step,
 * with nothing made first (mkdir needs a block a full disk lacks). */
static char *deleting_name(const char *root, const char *name)
{
    for (guint i = 0;; i++) {
        char *p = i == 0 ? g_strdup_printf("%s/.deleting-%s", root, name)
                         : g_strdup_printf("%s/.deleting-%s.%u", root, name, i);
        if (!g_file_test(p, G_FILE_TEST_EXISTS))
            return p;
        g_free(p);
    }
}

gboolean vcf_clone_delete(VcfLibrary *lib, const char *name, GError **error)
{
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, name, error);
    if (info == NULL)
        return FALSE;
    const char *root = vcf_library_store_root(lib);
    g_autofree char *gone = deleting_name(root, name);
    if (g_rename(info->dir, gone) < 0) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e, "renaming %s to %s: %s", info->dir, gone,
                    g_strerror(e));
        return FALSE;
    }
    /* Gone from here on, whatever fails: what is left of it the next
     * mount removes (vcf_clone_recover). */
    vcf_remove_tree(gone, NULL);
    vcf_fsync_dir(root, NULL);
    return TRUE;
}

/* What a crash leaves of an atomic rewrite of clone.ini or clone.ini.next. */
static void remove_temporaries(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *e;
    while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
        if (g_str_has_prefix(e, "." VCF_CLONE_INI ".")) {
            g_autofree char *p = g_build_filename(dir, e, NULL);
            g_unlink(p);
        }
    }
    if (d != NULL)
        g_dir_close(d);
}

guint vcf_clone_recover(VcfLibrary *lib, GPtrArray *problems)
{
    guint n = 0;
    const char *root = vcf_library_store_root(lib);
    GDir *d = g_dir_open(root, 0, NULL);
    const char *e;
    while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(root, e, NULL);
        GError *error = NULL;
        gboolean fixed = FALSE, ok = TRUE;
        if (g_str_has_prefix(e, ".creating-") || g_str_has_prefix(e, ".deleting-")) {
            ok = vcf_remove_tree(p, &error);
            fixed = TRUE;
        } else if (e[0] != '.') {
            remove_temporaries(p);
            ok = vcf_clone_rename_recover(lib, e, &fixed, &error);
            g_autoptr(VcfCloneInfo) info = ok ? vcf_clone_info_load(lib, e, NULL) : NULL;
            for (guint i = 0; info != NULL && ok && i < info->stems->len; i++) {
                g_autofree char *top = g_strconcat(info->dir, "/",
                                                   (char *)info->stems->pdata[i], ".vmdk", NULL);
                ok = vcf_freeze_recover(top, i, &fixed, &error);
            }
            if (ok) {
                if (info != NULL && info->disks_gone) {
                    ok = vcf_clone_drop_disks(lib, e, &error);
                    fixed = TRUE;
                }
            }
        }
        if (!ok && problems != NULL)
            g_ptr_array_add(problems, g_strdup(error->message));
        g_clear_error(&error);
        n += fixed;
    }
    if (d != NULL)
        g_dir_close(d);
    return n;
}
