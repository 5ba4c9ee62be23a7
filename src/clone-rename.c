#include "config.h"
#include "clone-rename.h"
#include "clone-store.h"
#include "fileutil.h"
#include "names.h"
#include "sparse.h"
#include "vcf-error.h"
#include "vmx.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#define INI_GROUP "clone"

static char *in_dir(const char *dir, const char *a, const char *b)
{
    return g_strconcat(dir, "/", a, b, NULL);
}

static gboolean unlink_if_there(const char *path, GError **error)
{
    if (g_unlink(path) < 0 && errno != ENOENT) {
        vcf_set_errno(error, errno, path);
        return FALSE;
    }
    return TRUE;
}

/* STEM's delta, sums and removed-name markers in DIR. */
static gboolean remove_stem_files(const char *dir, const char *stem, GError **error)
{
    g_autofree char *delta = in_dir(dir, stem, ".vmdk");
    g_autofree char *sums = in_dir(dir, stem, ".vmdk.xxh");
    g_autofree char *m1 = g_strconcat(dir, "/" VCF_UNLINKED_PREFIX, stem, ".vmdk", NULL);
    g_autofree char *m2 = g_strconcat(dir, "/" VCF_UNLINKED_PREFIX, stem, "-flat.vmdk", NULL);
    return unlink_if_there(delta, error) && unlink_if_there(sums, error)
        && unlink_if_there(m1, error) && unlink_if_there(m2, error);
}

static gboolean link_new(const char *from, const char *to, GPtrArray *made, GError **error)
{
    if (link(from, to) < 0) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e, "linking %s as %s: %s", from, to, g_strerror(e));
        return FALSE;
    }
    g_ptr_array_add(made, g_strdup(to));
    return TRUE;
}

/* The clone's .vmx under its new name: displayName and disk names follow. */
static gboolean write_new_vmx(const VcfCloneInfo *info, const char *to, GPtrArray *made,
                              GError **error)
{
    g_autofree char *old = in_dir(info->dir, info->name, ".vmx");
    g_autofree char *new = in_dir(info->dir, to, ".vmx");
    if (!g_file_test(old, G_FILE_TEST_EXISTS))
        return TRUE;    /* the user removed it: nothing to carry over */
    if (g_file_test(new, G_FILE_TEST_EXISTS)) {
        g_set_error(error, VCF_ERROR, EEXIST, "%s is in the clone folder already", new);
        return FALSE;
    }
    g_autoptr(VcfVmx) vmx = vcf_vmx_load(old, error);
    if (vmx == NULL)
        return FALSE;
    vcf_vmx_set(vmx, "displayName", to);
    g_auto(GStrv) keys = vcf_vmx_keys(vmx);
    for (char **k = keys; *k; k++) {
        if (!g_str_has_suffix(*k, ".fileName") && !g_str_has_suffix(*k, ".filename"))
            continue;
        const char *v = vcf_vmx_get(vmx, *k);
        for (guint i = 0; v != NULL && i < info->stems->len; i++) {
            g_autofree char *was = g_strconcat(g_ptr_array_index(info->stems, i), ".vmdk", NULL);
            if (g_str_equal(v, was)) {
                g_autofree char *stem = vcf_disk_stem(to, i);
                g_autofree char *now = g_strconcat(stem, ".vmdk", NULL);
                vcf_vmx_set(vmx, *k, now);
                break;
            }
        }
    }
    if (!vcf_vmx_save(vmx, new, error))
        return FALSE;
    g_ptr_array_add(made, g_steal_pointer(&new));
    return TRUE;
}

/* Markers of removed disk names, under the new stems. */
static gboolean carry_markers(const VcfCloneInfo *info, const char *to, GPtrArray *made,
                              GError **error)
{
    static const char *const suffixes[] = { ".vmdk", "-flat.vmdk" };
    for (guint i = 0; i < info->stems->len; i++) {
        g_autofree char *stem = vcf_disk_stem(to, i);
        for (guint j = 0; j < G_N_ELEMENTS(suffixes); j++) {
            g_autofree char *was = g_strconcat(g_ptr_array_index(info->stems, i), suffixes[j], NULL);
            if (!g_hash_table_contains(info->unlinked, was))
                continue;
            g_autofree char *marker = g_strconcat(info->dir, "/" VCF_UNLINKED_PREFIX, stem,
                                                  suffixes[j], NULL);
            if (!g_file_set_contents(marker, "", 0, NULL)) {
                vcf_set_errno(error, errno ? errno : EIO, marker);
                return FALSE;
            }
            g_ptr_array_add(made, g_steal_pointer(&marker));
        }
    }
    return TRUE;
}

static gboolean write_next_ini(const VcfCloneInfo *info, const char *to, GPtrArray *made,
                               GError **error)
{
    g_autofree char *ini = in_dir(info->dir, VCF_CLONE_INI, "");
    g_autoptr(GKeyFile) kf = g_key_file_new();
    if (!g_key_file_load_from_file(kf, ini, G_KEY_FILE_KEEP_COMMENTS, NULL)) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: unreadable", ini);
        return FALSE;
    }
    g_autoptr(GPtrArray) stems = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < info->stems->len; i++)
        g_ptr_array_add(stems, vcf_disk_stem(to, i));
    g_key_file_set_string_list(kf, INI_GROUP, "disks", (const char *const *)stems->pdata,
                               stems->len);
    g_key_file_set_string(kf, INI_GROUP, "renaming-from", info->name);
    g_key_file_set_string(kf, INI_GROUP, "renaming-to", to);
    gsize len;
    g_autofree char *data = g_key_file_to_data(kf, &len, NULL);
    g_autofree char *next = in_dir(info->dir, VCF_CLONE_INI_NEXT, "");
    if (!vcf_file_write_atomic(next, data, len, error))
        return FALSE;
    g_ptr_array_add(made, g_steal_pointer(&next));
    return TRUE;
}

/* After the commit, in folder DIR (now named TO): the old names go, then
 * clone.ini.next becomes clone.ini. Safe to run again after a crash. */
static gboolean finish(const char *dir, GKeyFile *next, GError **error)
{
    g_autofree char *from = g_key_file_get_string(next, INI_GROUP, "renaming-from", NULL);
    g_autofree char *to = g_key_file_get_string(next, INI_GROUP, "renaming-to", NULL);
    gsize n = 0;
    g_auto(GStrv) stems = g_key_file_get_string_list(next, INI_GROUP, "disks", &n, NULL);
    if (from == NULL || to == NULL) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s/%s: not a rename in progress", dir,
                    VCF_CLONE_INI_NEXT);
        return FALSE;
    }
    for (gsize i = 0; i < n; i++) {
        g_autofree char *file = g_strconcat(stems[i], ".vmdk", NULL);
        g_autofree char *path = in_dir(dir, file, "");
        VcfSparse *s = vcf_sparse_open(path, TRUE, error);
        if (s == NULL)
            return FALSE;
        gboolean ok = vcf_sparse_set_extent_name(s, file, error);
        if (!vcf_sparse_close(s, ok ? error : NULL) || !ok)
            return FALSE;
        g_autofree char *old_stem = vcf_disk_stem(from, (guint)i);
        if (!remove_stem_files(dir, old_stem, error))
            return FALSE;
    }
    g_autofree char *old_vmx = in_dir(dir, from, ".vmx");
    g_autofree char *new_vmx = in_dir(dir, to, ".vmx");
    if (g_file_test(new_vmx, G_FILE_TEST_EXISTS) && !unlink_if_there(old_vmx, error))
        return FALSE;
    g_key_file_remove_key(next, INI_GROUP, "renaming-from", NULL);
    g_key_file_remove_key(next, INI_GROUP, "renaming-to", NULL);
    gsize len;
    g_autofree char *data = g_key_file_to_data(next, &len, NULL);
    g_autofree char *ini = in_dir(dir, VCF_CLONE_INI, "");
    g_autofree char *next_path = in_dir(dir, VCF_CLONE_INI_NEXT, "");
    return vcf_file_write_atomic(ini, data, len, error) && unlink_if_there(next_path, error)
        && vcf_fsync_dir(dir, error);
}

static void undo(GPtrArray *made)
{
    for (guint i = made->len; i > 0; i--)
        g_unlink(g_ptr_array_index(made, i - 1));
}

/* The new names must be free in the folder before clone.ini.next claims
 * them: a rollback removes what it names. */
static gboolean new_names_free(const VcfCloneInfo *info, const char *to, GError **error)
{
    static const char *const suffixes[] = { ".vmdk", ".vmdk.xxh" };
    for (guint i = 0; i < info->stems->len; i++) {
        g_autofree char *stem = vcf_disk_stem(to, i);
        for (guint j = 0; j < G_N_ELEMENTS(suffixes); j++) {
            g_autofree char *p = in_dir(info->dir, stem, suffixes[j]);
            if (g_file_test(p, G_FILE_TEST_EXISTS)) {
                g_set_error(error, VCF_ERROR, EEXIST, "%s is in the clone folder already", p);
                return FALSE;
            }
        }
    }
    g_autofree char *vmx = in_dir(info->dir, to, ".vmx");
    if (g_file_test(vmx, G_FILE_TEST_EXISTS)) {
        g_set_error(error, VCF_ERROR, EEXIST, "%s is in the clone folder already", vmx);
        return FALSE;
    }
    return TRUE;
}

gboolean vcf_clone_rename(VcfLibrary *lib, const char *from, const char *to, char **warning,
                          GError **error)
{
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, from, error);
    if (info == NULL || !vcf_clone_check_new_name(lib, to, error))
        return FALSE;
    g_autofree char *pending = in_dir(info->dir, VCF_CLONE_INI_NEXT, "");
    if (g_file_test(pending, G_FILE_TEST_EXISTS)) {
        g_set_error(error, VCF_ERROR, EBUSY, "clone %s: an earlier rename is unfinished (%s); "
                    "remount to finish it", from, pending);
        return FALSE;
    }
    g_autoptr(GPtrArray) made = g_ptr_array_new_with_free_func(g_free);
    /* clone.ini.next first, durable: from then on a crash is undone by
     * vcf_clone_rename_recover, which removes what it names. */
    gboolean ok = new_names_free(info, to, error) && write_next_ini(info, to, made, error);
    for (guint i = 0; ok && i < info->stems->len; i++) {
        const char *stem = g_ptr_array_index(info->stems, i);
        g_autofree char *new_stem = vcf_disk_stem(to, i);
        g_autofree char *a = in_dir(info->dir, stem, ".vmdk");
        g_autofree char *b = in_dir(info->dir, new_stem, ".vmdk");
        g_autofree char *sa = in_dir(info->dir, stem, ".vmdk.xxh");
        g_autofree char *sb = in_dir(info->dir, new_stem, ".vmdk.xxh");
        ok = link_new(a, b, made, error) && link_new(sa, sb, made, error);
    }
    ok = ok && carry_markers(info, to, made, error) && write_new_vmx(info, to, made, error)
         && vcf_fsync_dir(info->dir, error);
    g_autofree char *dest = g_build_filename(vcf_library_store_root(lib), to, NULL);
    if (ok && g_rename(info->dir, dest) < 0) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e == ENOTEMPTY ? EEXIST : e, "renaming %s to %s: %s",
                    info->dir, dest, g_strerror(e));
        ok = FALSE;
    }
    if (!ok) {
        undo(made);
        return FALSE;
    }
    /* Committed: the clone has its new name whatever fails now; the clone
     * loads by clone.ini.next until finished, here or at the next mount. */
    GError *late = NULL;
    g_autofree char *next = in_dir(dest, VCF_CLONE_INI_NEXT, "");
    g_autoptr(GKeyFile) kf = g_key_file_new();
    if (!vcf_fsync_dir(vcf_library_store_root(lib), &late)
        || !g_key_file_load_from_file(kf, next, G_KEY_FILE_KEEP_COMMENTS, &late)
        || !finish(dest, kf, &late)) {
        if (warning != NULL)
            *warning = g_strdup_printf("renamed, but not yet tidied (the next mount finishes): %s",
                                   late->message);
        g_error_free(late);
    }
    return TRUE;
}

gboolean vcf_clone_rename_recover(VcfLibrary *lib, const char *name, gboolean *fixed,
                                  GError **error)
{
    g_autofree char *dir = g_build_filename(vcf_library_store_root(lib), name, NULL);
    g_autofree char *next = in_dir(dir, VCF_CLONE_INI_NEXT, "");
    *fixed = FALSE;
    if (!g_file_test(next, G_FILE_TEST_EXISTS))
        return TRUE;
    *fixed = TRUE;
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autofree char *to = NULL;
    if (g_key_file_load_from_file(kf, next, G_KEY_FILE_KEEP_COMMENTS, NULL))
        to = g_key_file_get_string(kf, INI_GROUP, "renaming-to", NULL);
    if (to == NULL) {   /* cut short before it was whole: nothing depends on it */
        return unlink_if_there(next, error);
    }
    if (g_str_equal(to, name))
        return finish(dir, kf, error);
    /* Never committed: what was made for the new name goes. */
    gsize n = 0;
    g_auto(GStrv) stems = g_key_file_get_string_list(kf, INI_GROUP, "disks", &n, NULL);
    for (gsize i = 0; i < n; i++)
        if (!remove_stem_files(dir, stems[i], error))
            return FALSE;
    g_autofree char *old_vmx = in_dir(dir, name, ".vmx");
    g_autofree char *new_vmx = in_dir(dir, to, ".vmx");
    if (g_file_test(old_vmx, G_FILE_TEST_EXISTS) && !unlink_if_there(new_vmx, error))
        return FALSE;
    return unlink_if_there(next, error) && vcf_fsync_dir(dir, error);
}
