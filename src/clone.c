#include "config.h"
#include "clone.h"
#include "fileutil.h"
#include "names.h"
#include "parent.h"
#include "snapshot.h"
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
    GPtrArray *disks;         /* VcfDisk */
    GPtrArray *parent_files;  /* char* */
};

/* ---- clone.ini ----------------------------------------------------------- */

void vcf_clone_info_free(VcfCloneInfo *info)
{
    if (info == NULL)
        return;
    g_free(info->name);
    g_free(info->source);
    g_free(info->base_snapshot);
    g_free(info->type);
    g_free(info->dir);
    g_clear_pointer(&info->stems, g_ptr_array_unref);
    g_free(info);
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
    g_autofree char *ini = g_build_filename(info->dir, "clone.ini", NULL);
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
    info->type = g_key_file_get_string(kf, INI_GROUP, "type", NULL);
    gsize n = 0;
    g_auto(GStrv) stems = g_key_file_get_string_list(kf, INI_GROUP, "disks", &n, NULL);
    if (info->source == NULL || stems == NULL || n == 0) {
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
    return g_steal_pointer(&info);
}

static gint str_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

guint vcf_clone_remove_leftovers(VcfLibrary *lib)
{
    guint n = 0;
    GDir *d = g_dir_open(vcf_library_store_root(lib), 0, NULL);
    const char *e;
    while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
        if (!g_str_has_prefix(e, ".creating-") && !g_str_has_prefix(e, ".deleting-"))
            continue;
        g_autofree char *p = g_build_filename(vcf_library_store_root(lib), e, NULL);
        vcf_remove_tree(p);
        n++;
    }
    if (d != NULL)
        g_dir_close(d);
    return n;
}

GPtrArray *vcf_clone_list(VcfLibrary *lib)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    GDir *d = g_dir_open(vcf_library_store_root(lib), 0, NULL);
    const char *e;
    while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
        if (e[0] == '.')
            continue;   /* a clone being made or deleted */
        g_autofree char *ini = g_build_filename(vcf_library_store_root(lib), e, "clone.ini", NULL);
        if (g_file_test(ini, G_FILE_TEST_IS_REGULAR))
            g_ptr_array_add(names, g_strdup(e));
    }
    if (d != NULL)
        g_dir_close(d);
    g_ptr_array_sort(names, str_cmp);
    return names;
}

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

static gboolean write_ini(const char *path, const char *source, const char *snapshot,
                          const char *name, guint n_disks, GError **error)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *created = g_date_time_format_iso8601(now);
    g_autoptr(GPtrArray) stems = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < n_disks; i++)
        g_ptr_array_add(stems, vcf_disk_stem(name, i));
    g_key_file_set_string(kf, INI_GROUP, "source", source);
    g_key_file_set_string(kf, INI_GROUP, "base-snapshot", snapshot);
    g_key_file_set_string(kf, INI_GROUP, "type", "linked");
    g_key_file_set_string(kf, INI_GROUP, "state", "ready");
    g_key_file_set_string(kf, INI_GROUP, "created", created);
    g_key_file_set_string_list(kf, INI_GROUP, "disks",
                               (const char *const *)stems->pdata, stems->len);
    gsize len;
    g_autofree char *data = g_key_file_to_data(kf, &len, NULL);
    return vcf_file_write_atomic(path, data, len, error);
}

static gboolean check_new_name(VcfLibrary *lib, const char *name, GError **error)
{
    if (!vcf_name_check(name, error))
        return FALSE;
    g_autofree char *store = g_build_filename(vcf_library_store_root(lib), name, NULL);
    g_autofree char *vmdir = g_build_filename(vcf_library_root(lib), name, NULL);
    const char *clash = g_file_test(store, G_FILE_TEST_EXISTS) ? "a clone"
        : g_file_test(vmdir, G_FILE_TEST_EXISTS) ? "a library folder"
        : g_str_equal(name, "clones") ? "the clones folder" : NULL;
    if (clash != NULL) {
        g_set_error(error, VCF_ERROR, EEXIST, "cannot make clone \"%s\": %s has that name",
                    name, clash);
        return FALSE;
    }
    return TRUE;
}

/* Resolves SOURCE to its VM and the disks the clone will sit on; for the
 * current state, takes the snapshot that freezes them. */
static VcfVm *resolve_source(VcfLibrary *lib, const char *source, const char *name,
                             GPtrArray **disks, char **snapshot, VcfSnapshotUndo **undo,
                             GError **error)
{
    g_autofree char *vm_name = g_strndup(source, strcspn(source, "@"));
    const char *snap = strchr(source, '@');
    g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, vm_name, error);
    if (vm == NULL)
        return NULL;
    if (snap != NULL) {
        const VcfSnapshot *s = vcf_vm_find_snapshot(vm, snap + 1);
        if (s == NULL) {
            g_set_error(error, VCF_ERROR, ENOENT, "VM %s has no snapshot named \"%s\"",
                        vm->name, snap + 1);
            return NULL;
        }
        guint same = vcf_vm_count_snapshots_named(vm, snap + 1);
        if (same > 1) {
            /* As VixVM_GetNamedSnapshot: VIX_E_SNAPSHOT_NONUNIQUE_NAME. */
            g_set_error(error, VCF_ERROR, EINVAL, "VM %s has %u snapshots named \"%s\"; "
                        "rename all but one in VMware to clone it", vm->name, same, snap + 1);
            return NULL;
        }
        *disks = g_ptr_array_ref(s->disks);
        *snapshot = g_strdup(s->display_name);
        return g_steal_pointer(&vm);
    }
    if (vm->power == VCF_POWER_ON) {
        g_set_error(error, VCF_ERROR, EBUSY,
                    "cannot make a linked clone of the current state of %s: it is powered on (%s); "
                    "power it off, or clone one of its snapshots", vm->name, vm->power_reason);
        return NULL;
    }
    if (vm->power == VCF_POWER_SUSPENDED) {
        g_set_error(error, VCF_ERROR, EBUSY,
                    "cannot make a linked clone of %s: it is suspended (%s); VMware refuses this "
                    "with VIX_E_VM_IS_RUNNING (3007) because the suspended memory state would be lost",
                    vm->name, vm->power_reason);
        return NULL;
    }
    if (vm->disks->len == 0) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s has no virtual disk to clone", vm->vmx_path);
        return NULL;
    }
    /* A name used before (by a deleted clone) gets a number, so that
     * every source stays one folder. */
    g_autofree char *display = g_strdup_printf("vmclonefs: %s", name);
    for (guint i = 2; vcf_vm_find_snapshot(vm, display) != NULL; i++) {
        g_free(display);
        display = g_strdup_printf("vmclonefs: %s (%u)", name, i);
    }
    g_autofree char *desc = g_strdup_printf("Base of linked clone %s, made by vmclonefs", name);
    g_autofree char *uid = NULL;
    if (!vcf_snapshot_take(vm, vcf_library_root(lib), display, desc, &uid, undo, error))
        return NULL;
    *disks = g_ptr_array_ref(vm->disks);
    *snapshot = g_steal_pointer(&display);
    return g_steal_pointer(&vm);
}

/* Fills folder DIR with the clone's deltas, .vmx and clone.ini. */
static gboolean fill_store(VcfLibrary *lib, const char *dir, const char *final,
                           const VcfVm *vm, GPtrArray *disks, const char *source,
                           const char *snapshot, const char *name, GError **error)
{
    for (guint i = 0; i < disks->len; i++) {
        const VcfVmDisk *d = g_ptr_array_index(disks, i);
        g_autoptr(VcfParent) parent = vcf_parent_open(d->path, vcf_library_root(lib), 1, error);
        if (parent == NULL)
            return FALSE;
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
    g_autofree char *ini = g_build_filename(dir, "clone.ini", NULL);
    return write_vmx(vm, name, disks, vmx, error)
        && write_ini(ini, source, snapshot, name, disks->len, error);
}

gboolean vcf_clone_create(VcfLibrary *lib, const char *source, const char *name,
                          GError **error)
{
    if (!check_new_name(lib, name, error))
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
    g_autoptr(GPtrArray) disks = NULL;
    g_autofree char *snapshot = NULL;
    g_autoptr(VcfSnapshotUndo) undo = NULL;
    g_autoptr(VcfVm) vm = resolve_source(lib, source, name, &disks, &snapshot, &undo, error);
    if (vm == NULL) {
        vcf_remove_tree(tmp);
        return FALSE;
    }
    /* Its files' names durable before the folder is renamed into place. */
    gboolean ok = fill_store(lib, tmp, final, vm, disks, source, snapshot, name, error)
                  && vcf_fsync_dir(tmp, error);
    if (ok && g_rename(tmp, final) < 0) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e == ENOTEMPTY ? EEXIST : e,
                    "renaming %s to %s: %s", tmp, final, g_strerror(e));
        ok = FALSE;
    }
    if (!ok) {
        vcf_remove_tree(tmp);
        /* Nothing ran in the new deltas yet: the VM goes back as it was. */
        GError *e = NULL;
        if (undo != NULL && !vcf_snapshot_undo(undo, &e)) {
            if (error != NULL && *error != NULL) {
                char *msg = g_strdup_printf("%s; taking back snapshot \"%s\" of %s failed "
                                            "too: %s", (*error)->message, snapshot, vm->name,
                                            e->message);
                g_free((*error)->message);
                (*error)->message = msg;
            }
            g_error_free(e);
        }
        return FALSE;
    }
    return vcf_fsync_dir(root, error);
}

typedef struct {
    VcfLibrary *lib;
    char *source;
    char *name;
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
    return vcf_clone_create(a->lib, a->source, a->name, error);
}

VcfJob *vcf_clone_create_job(VcfLibrary *lib, const char *source, const char *name,
                             VcfJobCallback callback, gpointer user_data)
{
    CreateArgs *a = g_new0(CreateArgs, 1);
    a->lib = lib;
    a->source = g_strdup(source);
    a->name = g_strdup(name);
    return vcf_job_start("vcf-clone", create_job_main, a, create_args_free,
                         callback, user_data);
}

gboolean vcf_clone_delete(VcfLibrary *lib, const char *name, GError **error)
{
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, name, error);
    if (info == NULL)
        return FALSE;
    /* Out of sight first, in one step; then the files. */
    g_autofree char *tmpl = g_build_filename(vcf_library_store_root(lib), ".deleting-XXXXXX", NULL);
    if (g_mkdtemp(tmpl) == NULL || g_rename(info->dir, tmpl) < 0) {
        vcf_set_errno(error, errno, info->dir);
        return FALSE;
    }
    vcf_remove_tree(tmpl);
    return vcf_fsync_dir(vcf_library_store_root(lib), error);
}

/* ---- serving a clone -------------------------------------------------------- */

VcfClone *vcf_clone_open(VcfLibrary *lib, const char *name, guint n_chains,
                         GError **error)
{
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, name, error);
    if (info == NULL)
        return NULL;
    VcfClone *c = g_new0(VcfClone, 1);
    c->name = g_strdup(name);
    c->disks = g_ptr_array_new();
    c->parent_files = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < info->stems->len; i++) {
        g_autofree char *file = g_strconcat(g_ptr_array_index(info->stems, i), ".vmdk", NULL);
        g_autofree char *path = g_build_filename(info->dir, file, NULL);
        VcfSparse *store = vcf_sparse_open(path, TRUE, error);
        if (store == NULL)
            goto fail;
        const char *hint = vcf_sparse_get_parent_hint(store);
        VcfParent *parent = NULL;
        if (hint != NULL) {
            g_autofree char *ppath = g_path_is_absolute(hint) ? g_strdup(hint)
                : g_build_filename(info->dir, hint, NULL);
            parent = vcf_parent_open(ppath, vcf_library_root(lib), n_chains, error);
            if (parent == NULL) {
                g_prefix_error(error, "clone %s is broken: ", name);
                vcf_sparse_free(store);
                goto fail;
            }
            for (const char *const *f = vcf_parent_get_files(parent); *f; f++)
                g_ptr_array_add(c->parent_files, g_strdup(*f));
        }
        VcfDisk *disk = vcf_disk_new(store, parent, error);
        if (disk == NULL)
            goto fail;
        g_ptr_array_add(c->disks, disk);
    }
    return c;
fail:
    vcf_clone_close(c, NULL);
    return NULL;
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
    g_free(c->name);
    g_free(c);
    return ok;
}

guint vcf_clone_n_disks(const VcfClone *c) { return c->disks->len; }
VcfDisk *vcf_clone_get_disk(VcfClone *c, guint i) { return g_ptr_array_index(c->disks, i); }
GPtrArray *vcf_clone_parent_files(VcfClone *c) { return c->parent_files; }
