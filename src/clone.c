#include "config.h"
#include "clone.h"
#include "fileutil.h"
#include "names.h"
#include "parent.h"
#include "snapshot.h"
#include "base-snapshot.h"
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

/* What the clone sits on: a snapshot's disks, and who made it. */
typedef struct {
    GPtrArray *disks;       /* VcfVmDisk */
    char *snapshot;         /* display name */
    char *uid;
    gboolean reused;        /* an earlier clone's base, unchanged since */
    VcfSnapshotUndo *undo;  /* set when this mkdir took the snapshot */
} Base;

static void base_clear(Base *b)
{
    g_clear_pointer(&b->disks, g_ptr_array_unref);
    g_free(b->snapshot);
    g_free(b->uid);
    vcf_snapshot_undo_free(b->undo);
}

static gboolean write_ini(const char *path, const char *source, const VcfVm *vm,
                          const Base *base, const char *name, GError **error)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *created = g_date_time_format_iso8601(now);
    g_autoptr(GPtrArray) stems = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < base->disks->len; i++)
        g_ptr_array_add(stems, vcf_disk_stem(name, i));
    g_key_file_set_string(kf, INI_GROUP, "source", source);
    g_key_file_set_string(kf, INI_GROUP, "vm", vm->name);
    g_key_file_set_string(kf, INI_GROUP, "base-snapshot", base->snapshot);
    if (base->uid != NULL)
        g_key_file_set_string(kf, INI_GROUP, "base-snapshot-uid", base->uid);
    g_key_file_set_string(kf, INI_GROUP, "type", "linked");
    g_key_file_set_string(kf, INI_GROUP, "state", "ready");
    g_key_file_set_string(kf, INI_GROUP, "created", created);
    g_key_file_set_string_list(kf, INI_GROUP, "disks",
                               (const char *const *)stems->pdata, stems->len);
    gsize len;
    g_autofree char *data = g_key_file_to_data(kf, &len, NULL);
    return vcf_file_write_atomic(path, data, len, error);
}

/* Resolves SOURCE to its VM and the disks the clone will sit on; for the
 * current state, takes the snapshot that freezes them, or reuses the one
 * an earlier clone took if the VM has not changed since. */
static VcfVm *resolve_source(VcfLibrary *lib, const char *source, const char *name,
                             Base *base, GError **error)
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
        base->disks = g_ptr_array_ref(s->disks);
        base->snapshot = g_strdup(s->display_name);
        base->uid = g_strdup(s->uid);
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
    if (!vcf_base_take(lib, vm, name, &base->disks, &base->snapshot, &base->uid,
                       &base->reused, &base->undo, error))
        return NULL;
    return g_steal_pointer(&vm);
}

/* Fills folder DIR with the clone's deltas, .vmx and clone.ini. */
static gboolean fill_store(VcfLibrary *lib, const char *dir, const char *final,
                           const VcfVm *vm, const Base *base, const char *source,
                           const char *name, GError **error)
{
    GPtrArray *disks = base->disks;
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
    g_autofree char *ini = g_build_filename(dir, VCF_CLONE_INI, NULL);
    return write_vmx(vm, name, disks, vmx, error)
        && write_ini(ini, source, vm, base, name, error);
}

gboolean vcf_clone_create(VcfLibrary *lib, const char *source, const char *name,
                          GError **error)
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
    Base base = { 0 };
    g_autoptr(VcfVm) vm = resolve_source(lib, source, name, &base, error);
    if (vm == NULL) {
        vcf_remove_tree(tmp, NULL);
        base_clear(&base);
        return FALSE;
    }
    /* Its files' names durable before the folder is renamed into place. */
    gboolean ok = fill_store(lib, tmp, final, vm, &base, source, name, error)
                  && vcf_fsync_dir(tmp, error);
    if (ok && g_rename(tmp, final) < 0) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e == ENOTEMPTY ? EEXIST : e,
                    "renaming %s to %s: %s", tmp, final, g_strerror(e));
        ok = FALSE;
    }
    if (!ok) {
        vcf_remove_tree(tmp, NULL);
        /* Nothing ran in the new deltas yet: the VM goes back as it was. */
        GError *e = NULL;
        if (base.undo != NULL && !vcf_base_undo(lib, base.undo, vm->name, base.uid, &e)) {
            if (error != NULL && *error != NULL) {
                char *msg = g_strdup_printf("%s; taking back snapshot \"%s\" of %s failed "
                                            "too: %s", (*error)->message, base.snapshot,
                                            vm->name, e->message);
                g_free((*error)->message);
                (*error)->message = msg;
            }
            g_error_free(e);
        }
        base_clear(&base);
        return FALSE;
    }
    base_clear(&base);
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
    for (guint i = 0; !info->disks_gone && i < info->stems->len; i++) {
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

void vcf_clone_abandon(VcfClone *c)
{
    if (c == NULL)
        return;
    for (guint i = 0; i < c->disks->len; i++)
        vcf_disk_abandon(g_ptr_array_index(c->disks, i));
    g_ptr_array_unref(c->disks);
    g_ptr_array_unref(c->parent_files);
    g_free(c->name);
    g_free(c);
}

guint vcf_clone_n_disks(const VcfClone *c) { return c->disks->len; }
VcfDisk *vcf_clone_get_disk(VcfClone *c, guint i) { return g_ptr_array_index(c->disks, i); }
GPtrArray *vcf_clone_parent_files(VcfClone *c) { return c->parent_files; }
