#include "config.h"
#include "freeze.h"
#include "fileutil.h"
#include "sparse.h"
#include "vcf-error.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

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
    VcfSparseParams p = { .capacity = capacity, .parent_cid = cid, .parent_hint = hint,
                          .geometry = &geo };
    VcfSparse *fresh = vcf_sparse_create(next, &p, error);
    if (fresh == NULL || !vcf_sparse_close(fresh, error)) {
        g_unlink(next);
        g_unlink(next_sums);
        return FALSE;
    }
    gboolean sums_moved = FALSE, top_moved = FALSE;
    gboolean ok = (sums_moved = move(sums, frozen_sums, error))
                  && (top_moved = move(path, frozen, error))
                  && move(next, path, error);
    if (!ok) {
        /* Back as it was: the old delta stays the top. */
        if (top_moved)
            g_rename(frozen, path);
        if (sums_moved)
            g_rename(frozen_sums, sums);
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

/* Frozen sums whose layer never got its name: the old top's, to go back. */
static gboolean restore_sums(const char *dir, guint index, const char *sums,
                             gboolean *fixed, GError **error)
{
    g_autofree char *prefix = g_strdup_printf(LAYER_PREFIX "%u-", index);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *e;
    gboolean ok = TRUE;
    while (ok && d != NULL && (e = g_dir_read_name(d)) != NULL) {
        if (!g_str_has_prefix(e, prefix) || !g_str_has_suffix(e, ".vmdk.xxh"))
            continue;
        g_autofree char *p = g_build_filename(dir, e, NULL);
        g_autofree char *layer = g_strndup(p, strlen(p) - 4);
        if (exists(layer) || exists(sums))
            continue;
        ok = move(p, sums, error);
        *fixed = TRUE;
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
    gboolean top = exists(path);
    gboolean did = FALSE;
    /* Cut short before the top moved: the old top stays, with its sums. */
    if (top && !restore_sums(dir, index, sums, &did, error))
        return FALSE;
    if (exists(next)) {
        did = TRUE;
        /* The top moved to its frozen name: the next delta takes its place.
         * With the old top still there, it never got in use. */
        if (!top) {
            if (!move(next, path, error))
                return FALSE;
            top = TRUE;
        } else if (g_unlink(next) < 0) {
            vcf_set_errno(error, errno, next);
            return FALSE;
        }
    }
    if (exists(next_sums)) {
        did = TRUE;
        if (top && !exists(sums)) {
            if (!move(next_sums, sums, error))
                return FALSE;
        } else if (g_unlink(next_sums) < 0) {
            vcf_set_errno(error, errno, next_sums);
            return FALSE;
        }
    }
    if (did && !vcf_fsync_dir(dir, error))
        return FALSE;
    *fixed = *fixed || did;
    return TRUE;
}
