#include "config.h"
#include "clone.h"
#include "fileutil.h"
#include "names.h"
#include "parent.h"
#include "snapshot.h"
#include "base-snapshot.h"
#include "source.h"
#include "sparse.h"
#include "vcf-error.h"
#include "vmx.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define INI_GROUP "clone"

struct VcfClone {
    char *name;
    GPtrArray *disks;         /* VcfDisk, one per stem */
    /* Protects parent_files, which a freeze replaces while others read it. */
    GMutex files_lock;
    GPtrArray *parent_files;  /* char*: what the disks' layers read */
};

/* ---- making a clone ------------------------------------------------------- */

static char *random_uuid(void)
{
    /* VMware's format: 16 bytes as "56 4d xx xx xx xx xx xx-xx xx ..." */
    guint8 b[16] = { 0x56, 0x4d };
    for (guint i = 2; i < 16; i++)
        b[i] = g_random_int_range(0, 256);
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < 16; i++)
        g_string_append_printf(s, "%s%02x", i == 0 ? "" : i == 8 ? "-" : " ", b[i]);
    return g_string_free(s, FALSE);
}

/* The clone's config: the source's, with a new identity and its own disks. */
static gboolean write_vmx(const VcfVm *vm, const char *name, GPtrArray *disks,
                          const char *path, GError **error)
{
    g_autoptr(VcfVmx) vmx = vcf_vmx_load(vm->vmx_path, error);
    if (vmx == NULL)
        return FALSE;
    g_autofree char *bios = random_uuid();
    g_autofree char *loc = random_uuid();
    g_autofree char *nvram = g_strconcat(name, ".nvram", NULL);
    g_autofree char *vmxf = g_strconcat(name, ".vmxf", NULL);
    g_autofree char *stats = g_strconcat(name, ".scoreboard", NULL);
    vcf_vmx_set(vmx, "displayName", name);
    vcf_vmx_set(vmx, "uuid.bios", bios);
    vcf_vmx_set(vmx, "uuid.location", loc);
    vcf_vmx_set(vmx, "nvram", nvram);
    vcf_vmx_set(vmx, "extendedConfigFile", vmxf);
    if (vcf_vmx_get(vmx, "vmxstats.filename") != NULL)
        vcf_vmx_set(vmx, "vmxstats.filename", stats);
    vcf_vmx_set(vmx, "checkpoint.vmState", "");
    vcf_vmx_remove(vmx, "vc.uuid");
    vcf_vmx_remove(vmx, "uuid.action");
    vcf_vmx_remove(vmx, "sched.swap.derivedName");
    vcf_vmx_remove(vmx, "migrate.hostLog");
    /* New MACs for generated addresses; a static address is the user's. */
    g_autoptr(GRegex) mac = g_regex_new("^ethernet[0-9]+\\.generatedAddress$",
                                        G_REGEX_CASELESS, 0, NULL);
    g_auto(GStrv) keys = vcf_vmx_keys(vmx);
    for (char **k = keys; *k; k++) {
        if (g_regex_match(mac, *k, 0, NULL)) {
            g_autofree char *addr = g_strdup_printf("00:0c:29:%02x:%02x:%02x",
                                                    g_random_int_range(0, 256),
                                                    g_random_int_range(0, 256),
                                                    g_random_int_range(0, 256));
            g_autofree char *off = g_strdup_printf("%.*sOffset", (int)strlen(*k), *k);
            vcf_vmx_set(vmx, *k, addr);
            vcf_vmx_set(vmx, off, "0");
        }
    }
    /* Disks the base does not have (added after a snapshot) are left out. */
    for (guint i = 0; i < vm->disks->len; i++) {
        const VcfVmDisk *d = g_ptr_array_index(vm->disks, i);
        g_autofree char *present = g_strconcat(d->node, ".present", NULL);
        vcf_vmx_set(vmx, present, "FALSE");
    }
    for (guint i = 0; i < disks->len; i++) {
        const VcfVmDisk *d = g_ptr_array_index(disks, i);
        g_autofree char *present = g_strconcat(d->node, ".present", NULL);
        g_autofree char *file = g_strconcat(d->node, ".fileName", NULL);
        g_autofree char *stem = vcf_disk_stem(name, i);
        g_autofree char *vmdk = g_strconcat(stem, ".vmdk", NULL);
        vcf_vmx_set(vmx, present, "TRUE");
        vcf_vmx_set(vmx, file, vmdk);
    }
    return vcf_vmx_save(vmx, path, error);
}

static gboolean write_ini(const char *path, const char *source, const VcfSource *base,
                          const char *name, gboolean full, GError **error)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *created = g_date_time_format_iso8601(now);
    g_autoptr(GPtrArray) stems = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < base->disks->len; i++)
        g_ptr_array_add(stems, vcf_disk_stem(name, i));
    g_key_file_set_string(kf, INI_GROUP, "source", source);
    g_key_file_set_string(kf, INI_GROUP, "vm", base->vm_name);
    if (base->parent_clone != NULL)
        g_key_file_set_string(kf, INI_GROUP, "parent-clone", base->parent_clone);
    if (base->snapshot != NULL)
        g_key_file_set_string(kf, INI_GROUP, "base-snapshot", base->snapshot);
    if (base->uid != NULL)
        g_key_file_set_string(kf, INI_GROUP, "base-snapshot-uid", base->uid);
    /* Full from the start: a crash before its copier starts must not
     * leave a linked clone of what may be a suspended VM's disks. */
    g_key_file_set_string(kf, INI_GROUP, "type", full ? "full" : "linked");
    g_key_file_set_string(kf, INI_GROUP, "state", full ? "copying" : "ready");
    g_key_file_set_string(kf, INI_GROUP, "created", created);
    g_key_file_set_string_list(kf, INI_GROUP, "disks",
                               (const char *const *)stems->pdata, stems->len);
    gsize len;
    g_autofree char *data = g_key_file_to_data(kf, &len, NULL);
    return vcf_file_write_atomic(path, data, len, error);
}

/* Fills folder DIR with the clone's deltas, .vmx and clone.ini. PARENTS
 * gets each disk's parent chain, opened with N_CHAINS. */
static gboolean fill_store(VcfLibrary *lib, const char *dir, const char *final,
                           const VcfSource *base, const char *source, const char *name,
                           gboolean full, guint n_chains, GPtrArray *parents, GError **error)
{
    GPtrArray *disks = base->disks;
    for (guint i = 0; i < disks->len; i++) {
        const VcfVmDisk *d = g_ptr_array_index(disks, i);
        VcfParent *parent = vcf_parent_open(d->path, vcf_library_root(lib),
                                            vcf_library_link_cache(lib), n_chains, error);
        if (parent == NULL)
            return FALSE;
        g_ptr_array_add(parents, parent);
        g_autofree char *stem = vcf_disk_stem(name, i);
        g_autofree char *file = g_strconcat(stem, ".vmdk", NULL);
        g_autofree char *path = g_build_filename(dir, file, NULL);
        /* Relative to the final folder, which sits beside this one. */
        g_autofree char *hint = vcf_relative_path(final, d->path);
        VcfGeometry geo;
        if (!vcf_geometry_of_disk(&geo, d->path, vcf_parent_get_size(parent), "lsilogic", error))
            return FALSE;
        VcfSparseParams p = { .capacity = vcf_parent_get_size(parent),
                              .parent_cid = vcf_parent_get_cid(parent),
                              .parent_hint = hint,
                              .geometry = &geo };
        VcfSparse *s = vcf_sparse_create(path, &p, error);
        if (s == NULL || !vcf_sparse_close(s, error))
            return FALSE;
    }
    g_autofree char *vmx_name = g_strconcat(name, ".vmx", NULL);
    g_autofree char *vmx = g_build_filename(dir, vmx_name, NULL);
    g_autofree char *ini = g_build_filename(dir, VCF_CLONE_INI, NULL);
    return write_vmx(base->vm, name, disks, vmx, error)
        && write_ini(ini, source, base, name, full, error);
}

static GPtrArray *collect_parent_files(VcfClone *c)
{
    GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < c->disks->len; i++)
        vcf_disk_add_parent_files(g_ptr_array_index(c->disks, i), files);
    return files;
}

/* The clone just made in FINAL, served over the PARENTS its store was made
 * on (taken), so that opening it does not walk their chains again. */
/* A clone being opened, no disk yet. */
static VcfClone *clone_alloc(const char *name)
{
    VcfClone *c = g_new0(VcfClone, 1);
    c->name = g_strdup(name);
    c->disks = g_ptr_array_new();
    g_mutex_init(&c->files_lock);
    return c;
}

/* Ends an opening: C with its disks, or NULL (C freed) if one failed. */
static VcfClone *clone_opened(VcfClone *c, gboolean ok)
{
    c->parent_files = ok ? collect_parent_files(c) : g_ptr_array_new();
    if (ok)
        return c;
    vcf_clone_close(c, NULL);
    return NULL;
}

/* The clone just made in FINAL, served over the PARENTS its store was made
 * on (taken), so that opening it does not walk their chains again. */
static VcfClone *open_made(const char *name, const char *final, GPtrArray *parents,
                           GError **error)
{
    VcfClone *c = clone_alloc(name);
    gboolean ok = TRUE;
    for (guint i = 0; ok && i < parents->len; i++) {
        g_autofree char *stem = vcf_disk_stem(name, i);
        g_autofree char *file = g_strconcat(stem, ".vmdk", NULL);
        g_autofree char *path = g_build_filename(final, file, NULL);
        VcfDisk *disk = vcf_disk_open_over(path, g_steal_pointer(&parents->pdata[i]), error);
        if ((ok = disk != NULL))
            g_ptr_array_add(c->disks, disk);
    }
    return clone_opened(c, ok);
}

static gboolean create(VcfLibrary *lib, const char *source, const char *name,
                       VcfClone *open_source, gboolean full, guint n_chains,
                       VcfClone **opened, GError **error)
{
    if (!vcf_clone_check_new_name(lib, name, error))
        return FALSE;
    /* Made out of sight, then renamed into place in one step; made first,
     * so that a store that cannot be written fails before the VM changes. */
    const char *root = vcf_library_store_root(lib);
    g_autofree char *final = g_build_filename(root, name, NULL);
    g_autofree char *tmp = g_build_filename(root, ".creating-XXXXXX", NULL);
    if (g_mkdtemp_full(tmp, 0755) == NULL) {
        vcf_set_errno(error, errno, root);
        return FALSE;
    }
    VcfSource base;
    if (!vcf_source_resolve(lib, source, name, open_source, full, &base, error)) {
        vcf_remove_tree(tmp, NULL);
        return FALSE;
    }
    /* Its files' names durable before the folder is renamed into place. */
    g_autoptr(GPtrArray) parents = g_ptr_array_new_with_free_func((GDestroyNotify)vcf_parent_free);
    gboolean ok = fill_store(lib, tmp, final, &base, source, name, full, n_chains, parents,
                             error)
                  && vcf_fsync_dir(tmp, error);
    if (ok && g_rename(tmp, final) < 0) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e == ENOTEMPTY ? EEXIST : e,
                    "renaming %s to %s: %s", tmp, final, g_strerror(e));
        ok = FALSE;
    }
    if (!ok) {
        vcf_remove_tree(tmp, NULL);
        /* Nothing ran in the new deltas yet: the VM goes back as it was.
         * A clone's frozen layer stays: its content is the clone's. */
        GError *e = NULL;
        if (base.undo != NULL && !vcf_base_undo(lib, base.undo, base.vm_name, base.uid, &e)) {
            if (error != NULL && *error != NULL) {
                char *msg = g_strdup_printf("%s; taking back snapshot \"%s\" of %s failed "
                                            "too: %s", (*error)->message, base.snapshot,
                                            base.vm_name, e->message);
                g_free((*error)->message);
                (*error)->message = msg;
            }
            g_error_free(e);
        }
        vcf_source_clear(&base);
        return FALSE;
    }
    vcf_source_clear(&base);
    if (!vcf_fsync_dir(root, error))
        return FALSE;
    /* The clone exists: one that does not open is the opener's to report
     * (vcf_clone_open says why). */
    if (opened != NULL)
        *opened = open_made(name, final, parents, NULL);
    return TRUE;
}

gboolean vcf_clone_create(VcfLibrary *lib, const char *source, const char *name,
                          GError **error)
{
    return create(lib, source, name, NULL, FALSE, 1, NULL, error);
}

typedef struct {
    VcfLibrary *lib;
    char *source;
    char *name;
    VcfClone *open_source;
    gboolean full;
    guint n_chains;
    VcfClone **opened;
} CreateArgs;

static void create_args_free(gpointer p)
{
    CreateArgs *a = p;
    g_free(a->source);
    g_free(a->name);
    g_free(a);
}

static gboolean create_job_main(gpointer p, GError **error)
{
    CreateArgs *a = p;
    return create(a->lib, a->source, a->name, a->open_source, a->full, a->n_chains, a->opened,
                  error);
}

VcfJob *vcf_clone_create_job(VcfLibrary *lib, const char *source, const char *name,
                             VcfClone *open_source, gboolean full, guint n_chains,
                             VcfClone **opened, VcfJobCallback callback, gpointer user_data)
{
    CreateArgs *a = g_new0(CreateArgs, 1);
    a->full = full;
    a->n_chains = n_chains;
    a->opened = opened;
    if (opened != NULL)
        *opened = NULL;
    a->open_source = open_source;
    a->lib = lib;
    a->source = g_strdup(source);
    a->name = g_strdup(name);
    return vcf_job_start("vcf-clone", create_job_main, a, create_args_free,
                         callback, user_data);
}

/* ---- serving a clone -------------------------------------------------------- */

VcfClone *vcf_clone_open(VcfLibrary *lib, const char *name, guint n_chains,
                         GError **error)
{
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, name, error);
    if (info == NULL)
        return NULL;
    /* Its parent changed under it once: what it holds may mix old bytes
     * with new, so it is never served again. */
    if (info->parent_changed != NULL) {
        g_set_error(error, VCF_ERROR, EIO, "clone %s is broken: %s", name, info->parent_changed);
        return NULL;
    }
    VcfClone *c = clone_alloc(name);
    gboolean ok = TRUE;
    for (guint i = 0; ok && !info->disks_gone && i < info->stems->len; i++) {
        g_autofree char *file = g_strconcat(g_ptr_array_index(info->stems, i), ".vmdk", NULL);
        g_autofree char *path = g_build_filename(info->dir, file, NULL);
        VcfDisk *disk = vcf_disk_open(path, vcf_library_root(lib), vcf_library_link_cache(lib),
                                      n_chains, error);
        if (!(ok = disk != NULL))
            g_prefix_error(error, "clone %s is broken: ", name);
        else
            g_ptr_array_add(c->disks, disk);
    }
    return clone_opened(c, ok);
}

void vcf_clone_update_parent_files(VcfClone *c)
{
    GPtrArray *files = collect_parent_files(c);
    g_mutex_lock(&c->files_lock);
    GPtrArray *old = c->parent_files;
    c->parent_files = files;
    g_mutex_unlock(&c->files_lock);
    g_ptr_array_unref(old);
}

gboolean vcf_clone_freeze(VcfClone *c, GPtrArray **layers, GError **error)
{
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
    gboolean ok = TRUE;
    for (guint i = 0; ok && i < c->disks->len; i++) {
        char *layer = NULL;
        ok = vcf_disk_freeze(g_ptr_array_index(c->disks, i), i, &layer, error);
        if (ok)
            g_ptr_array_add(out, layer);
    }
    /* Disks frozen before a failure stay so: a layer more, the same bytes. */
    vcf_clone_update_parent_files(c);
    if (ok)
        *layers = g_steal_pointer(&out);
    return ok;
}

gboolean vcf_clone_close(VcfClone *c, GError **error)
{
    gboolean ok = TRUE;
    for (guint i = 0; i < c->disks->len; i++) {
        GError *local = NULL;
        if (!vcf_disk_close(g_ptr_array_index(c->disks, i), &local)) {
            if (ok)
                g_propagate_error(error, local);
            else
                g_error_free(local);
            ok = FALSE;
        }
    }
    g_ptr_array_unref(c->disks);
    g_ptr_array_unref(c->parent_files);
    g_mutex_clear(&c->files_lock);
    g_free(c->name);
    g_free(c);
    return ok;
}

void vcf_clone_abandon(VcfClone *c)
{
    if (c == NULL)
        return;
    for (guint i = 0; i < c->disks->len; i++)
        vcf_disk_abandon(g_ptr_array_index(c->disks, i));
    g_ptr_array_unref(c->disks);
    g_ptr_array_unref(c->parent_files);
    g_mutex_clear(&c->files_lock);
    g_free(c->name);
    g_free(c);
}

guint vcf_clone_n_disks(const VcfClone *c) { return c->disks->len; }
VcfDisk *vcf_clone_get_disk(VcfClone *c, guint i) { return g_ptr_array_index(c->disks, i); }
GPtrArray *vcf_clone_parent_files(VcfClone *c)
{
    g_mutex_lock(&c->files_lock);
    GPtrArray *copy = g_ptr_array_new_full(c->parent_files->len, g_free);
    for (guint i = 0; i < c->parent_files->len; i++)
        g_ptr_array_add(copy, g_strdup(g_ptr_array_index(c->parent_files, i)));
    g_mutex_unlock(&c->files_lock);
    return copy;
}
