#include "config.h"
#include "freeze.h"
#include "fileutil.h"
#include "sparse.h"
#include "vcf-error.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LAYER_PREFIX ".vcf-layer-"
#define NEXT_PREFIX ".vcf-next-"

gboolean vcf_freeze_is_layer_name(const char *name)
{
    return g_str_has_prefix(name, LAYER_PREFIX) || g_str_has_prefix(name, NEXT_PREFIX);
}

static char *next_path(const char *dir, guint index)
{
    return g_strdup_printf("%s/" NEXT_PREFIX "%u.vmdk", dir, index);
}

static gboolean exists(const char *path)
{
    struct stat st;
    return g_lstat(path, &st) == 0;
}

static gboolean move(const char *from, const char *to, GError **error)
{
    if (g_rename(from, to) < 0) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e, "renaming %s to %s: %s", from, to, g_strerror(e));
        return FALSE;
    }
    return TRUE;
}

/* Makes the embedded descriptor of the single-file delta FILE name FILE
 * itself as its extent: libvmdk opens the extent by that name, and a link
 * or rename leaves the old one there. */
static gboolean name_own_extent(const char *file, GError **error)
{
    g_autofree char *base = g_path_get_basename(file);
    VcfSparse *s = vcf_sparse_open(file, FALSE, error);
    if (s == NULL)
        return FALSE;
    g_autofree char *now = vcf_sparse_get_extent_name(s);
    vcf_sparse_free(s);
    if (g_strcmp0(now, base) == 0)
        return TRUE;
    s = vcf_sparse_open(file, TRUE, error);
    if (s == NULL)
        return FALSE;
    gboolean ok = vcf_sparse_set_extent_name(s, base, error);
    return vcf_sparse_close(s, ok ? error : NULL) && ok;
}

gboolean vcf_freeze_store(const char *path, guint index, char **layer, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    VcfSparse *s = vcf_sparse_open(path, FALSE, error);
    if (s == NULL)
        return FALSE;
    guint32 cid = vcf_sparse_get_cid(s);
    guint64 capacity = vcf_sparse_get_capacity(s);
    VcfGeometry geo;
    vcf_sparse_get_geometry(s, &geo);
    vcf_sparse_free(s);

    g_autofree char *frozen = NULL;
    g_autofree char *frozen_sums = NULL;
    for (guint n = 1;; n++) {
        g_free(frozen);
        g_free(frozen_sums);
        frozen = g_strdup_printf("%s/" LAYER_PREFIX "%u-%u.vmdk", dir, index, n);
        frozen_sums = g_strconcat(frozen, ".xxh", NULL);
        if (!exists(frozen) && !exists(frozen_sums))
            break;
    }
    g_autofree char *next = next_path(dir, index);
    g_autofree char *next_sums = g_strconcat(next, ".xxh", NULL);
    g_autofree char *sums = g_strconcat(path, ".xxh", NULL);
    /* What an earlier failure left: never in use (recovery ran at mount). */
    g_unlink(next);
    g_unlink(next_sums);
    g_autofree char *hint = g_path_get_basename(frozen);
    g_autofree char *top_name = g_path_get_basename(path);
    VcfSparseParams p = { .capacity = capacity, .parent_cid = cid, .parent_hint = hint,
                          .geometry = &geo, .extent_name = top_name };
    VcfSparse *fresh = vcf_sparse_create(next, &p, error);
    if (fresh == NULL || !vcf_sparse_close(fresh, error)) {
        g_unlink(next);
        g_unlink(next_sums);
        return FALSE;
    }
    /* The frozen names first, as links: the top's name always holds a
     * whole delta, for qemu-img and VMware too (a rename would leave a
     * moment with none). */
    if (link(sums, frozen_sums) < 0 || link(path, frozen) < 0) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e == EPERM ? EOPNOTSUPP : e,
                    "freezing %s: linking it to %s: %s%s", path, frozen, g_strerror(e),
                    e == EPERM || e == EOPNOTSUPP
                        ? " (cloning a clone needs a file system with hard links)" : "");
        g_unlink(frozen_sums);
        g_unlink(next);
        g_unlink(next_sums);
        return FALSE;
    }
    /* Both names are one file now: the layer's name is its extent's. */
    if (!vcf_fsync_dir(dir, error) || !name_own_extent(frozen, error)
        || !move(next, path, error)) {
        name_own_extent(path, NULL);
        g_unlink(frozen);
        g_unlink(frozen_sums);
        g_unlink(next);
        g_unlink(next_sums);
        vcf_fsync_dir(dir, NULL);
        return FALSE;
    }
    /* The new top is in place; its sums the next mount would put there. */
    if (!move(next_sums, sums, error) || !vcf_fsync_dir(dir, error)) {
        g_prefix_error(error, "freezing %s: ", path);
        return FALSE;
    }
    *layer = g_steal_pointer(&frozen);
    return TRUE;
}

static gboolean same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return g_lstat(a, &sa) == 0 && g_lstat(b, &sb) == 0 && sa.st_dev == sb.st_dev
           && sa.st_ino == sb.st_ino;
}

/* A freeze cut short before its new top got the name: the frozen names
 * are still links of the top (and its sums), and go. */
static gboolean unlink_early_links(const char *dir, guint index, const char *path,
                                   const char *sums, GError **error)
{
    g_autofree char *prefix = g_strdup_printf(LAYER_PREFIX "%u-", index);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *e;
    gboolean ok = TRUE;
    while (ok && d != NULL && (e = g_dir_read_name(d)) != NULL) {
        if (!g_str_has_prefix(e, prefix))
            continue;
        g_autofree char *p = g_build_filename(dir, e, NULL);
        if ((same_file(p, path) || same_file(p, sums)) && g_unlink(p) < 0) {
            vcf_set_errno(error, errno, p);
            ok = FALSE;
        }
    }
    if (d != NULL)
        g_dir_close(d);
    return ok;
}

gboolean vcf_freeze_recover(const char *path, guint index, gboolean *fixed, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *sums = g_strconcat(path, ".xxh", NULL);
    g_autofree char *next = next_path(dir, index);
    g_autofree char *next_sums = g_strconcat(next, ".xxh", NULL);
    gboolean did = FALSE;
    if (exists(next)) {
        /* The top kept its delta: undone. */
        did = TRUE;
        if (!unlink_early_links(dir, index, path, sums, error))
            return FALSE;
        if (g_unlink(next) < 0) {
            vcf_set_errno(error, errno, next);
            return FALSE;
        }
        if (g_unlink(next_sums) < 0 && errno != ENOENT) {
            vcf_set_errno(error, errno, next_sums);
            return FALSE;
        }
    } else if (exists(next_sums)) {
        /* The new top is in place, not yet its sums: done. */
        did = TRUE;
        if (!move(next_sums, sums, error))
            return FALSE;
    }
    if (did && !vcf_fsync_dir(dir, error))
        return FALSE;
    *fixed = *fixed || did;
    /* Each delta names itself as its extent, whatever step was cut. */
    if (exists(path) && !name_own_extent(path, error))
        return FALSE;
    g_autofree char *prefix = g_strdup_printf(LAYER_PREFIX "%u-", index);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *e;
    gboolean ok = TRUE;
    while (ok && d != NULL && (e = g_dir_read_name(d)) != NULL) {
        if (g_str_has_prefix(e, prefix) && g_str_has_suffix(e, ".vmdk")) {
            g_autofree char *p = g_build_filename(dir, e, NULL);
            ok = name_own_extent(p, error);
        }
    }
    if (d != NULL)
        g_dir_close(d);
    return ok;
}

gboolean vcf_freeze_undo(const char *path, const char *layer, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *sums = g_strconcat(path, ".xxh", NULL);
    g_autofree char *layer_sums = g_strconcat(layer, ".xxh", NULL);
    return move(layer_sums, sums, error) && move(layer, path, error)
        && name_own_extent(path, error) && vcf_fsync_dir(dir, error);
}
