/* Who depends on whom among clones: the clones made from a clone, which
 * sit on its frozen layers (so it may not go), and the sources that are
 * gone while clones made from them stay. */
#include "config.h"
#include "clone-store.h"
#include "descriptor.h"
#include "freeze.h"
#include "vcf-error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static gint str_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static gboolean source_exists(VcfLibrary *lib, const char *source)
{
    if (strchr(source, '@') == NULL && vcf_clone_exists(lib, source))
        return TRUE;
    g_autofree char *vm_name = g_strndup(source, strcspn(source, "@"));
    g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, vm_name, NULL);
    const char *snap = strchr(source, '@');
    return vm != NULL && (snap == NULL || vcf_vm_find_snapshot(vm, snap + 1) != NULL);
}

GPtrArray *vcf_clone_orphan_sources(VcfLibrary *lib)
{
    g_autoptr(GPtrArray) names = vcf_clone_list(lib);
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < names->len; i++) {
        g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, names->pdata[i], NULL);
        if (info == NULL || info->source == NULL || strchr(info->source, '/') != NULL
            || g_ptr_array_find_with_equal_func(out, info->source, g_str_equal, NULL)
            || source_exists(lib, info->source))
            continue;
        g_ptr_array_add(out, g_strdup(info->source));
    }
    g_ptr_array_sort(out, str_cmp);
    return out;
}

static gboolean has_layers(VcfLibrary *lib, const char *name)
{
    g_autofree char *dir = g_build_filename(vcf_library_store_root(lib), name, NULL);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *e;
    gboolean found = FALSE;
    while (!found && d != NULL && (e = g_dir_read_name(d)) != NULL)
        found = vcf_freeze_is_layer_name(e);
    if (d != NULL)
        g_dir_close(d);
    return found;
}

/* Whether a frozen layer of clone NAME has its parent in clone ON's folder. */
static gboolean layers_lean_on(VcfLibrary *lib, const char *name, const char *on)
{
    g_autofree char *dir = g_build_filename(vcf_library_store_root(lib), name, NULL);
    g_autofree char *on_dir = g_build_filename(vcf_library_store_root(lib), on, NULL);
    g_autofree char *on_real = realpath(on_dir, NULL);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *e;
    gboolean leans = FALSE;
    while (!leans && d != NULL && (e = g_dir_read_name(d)) != NULL) {
        if (!vcf_freeze_is_layer_name(e))
            continue;
        g_autofree char *path = g_build_filename(dir, e, NULL);
        g_autofree char *text = vcf_descriptor_load(path, NULL);
        g_autofree char *hint = text ? vcf_descriptor_get(text, "parentFileNameHint") : NULL;
        if (hint == NULL)
            continue;
        g_autofree char *parent = g_path_is_absolute(hint) ? g_strdup(hint)
            : g_build_filename(dir, hint, NULL);
        g_autofree char *pdir = g_path_get_dirname(parent);
        g_autofree char *preal = realpath(pdir, NULL);
        /* Unresolvable: it may well be there. */
        leans = preal == NULL || on_real == NULL || g_str_equal(preal, on_real);
    }
    if (d != NULL)
        g_dir_close(d);
    return leans;
}

/* A full clone N's frozen layers sit on clone ON's and some clone of N
 * still reads them. */
static gboolean needs_layers_on(VcfLibrary *lib, const char *n, const char *on)
{
    if (!layers_lean_on(lib, n, on))
        return FALSE;
    g_autoptr(GPtrArray) deps = vcf_clone_dependents(lib, n);
    return deps != NULL;
}

GPtrArray *vcf_clone_dependents(VcfLibrary *lib, const char *name)
{
    g_autoptr(GPtrArray) names = vcf_clone_list(lib);
    GPtrArray *out = NULL;
    int layers = -1;   /* not looked at yet */
    for (guint i = 0; i < names->len; i++) {
        const char *n = g_ptr_array_index(names, i);
        if (g_str_equal(n, name))
            continue;
        g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, n, NULL);
        /* One that cannot be read may sit on NAME's layers, if NAME has any. */
        if (info == NULL && layers < 0)
            layers = has_layers(lib, name);
        /* A full clone whose copy is done needs nothing of NAME, but its
         * own frozen layers, made before, may sit on NAME's. */
        if ((info == NULL && layers > 0)
            || (info && g_strcmp0(info->parent_clone, name) == 0
                && (!vcf_clone_info_is_standalone(info) || needs_layers_on(lib, n, name)))) {
            if (out == NULL)
                out = g_ptr_array_new_with_free_func(g_free);
            g_ptr_array_add(out, g_strdup(n));
        }
    }
    return out;
}

gboolean vcf_clone_check_no_dependents(VcfLibrary *lib, const char *name, const char *what,
                                       GError **error)
{
    g_autoptr(GPtrArray) deps = vcf_clone_dependents(lib, name);
    if (deps == NULL)
        return TRUE;
    g_ptr_array_add(deps, NULL);
    g_autofree char *list = g_strjoinv(", ", (char **)deps->pdata);
    g_set_error(error, VCF_ERROR, EBUSY, "%s: clone %s is the source of linked clone%s %s, "
                "which need%s its disks; delete %s first", what, name,
                deps->len > 2 ? "s" : "", list, deps->len > 2 ? "" : "s",
                deps->len > 2 ? "them" : "it");
    return FALSE;
}
