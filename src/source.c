#include "config.h"
#include "source.h"
#include "base-snapshot.h"
#include "clone-store.h"
#include "vcf-error.h"

#include <errno.h>
#include <string.h>

void vcf_source_clear(VcfSource *s)
{
    g_clear_pointer(&s->vm, vcf_vm_free);
    g_clear_pointer(&s->disks, g_ptr_array_unref);
    g_clear_pointer(&s->vm_name, g_free);
    g_clear_pointer(&s->snapshot, g_free);
    g_clear_pointer(&s->uid, g_free);
    g_clear_pointer(&s->parent_clone, g_free);
    g_clear_pointer(&s->undo, vcf_snapshot_undo_free);
}

/* A current state can only be frozen while nothing runs on it. WHAT is
 * "VM Ubuntu" or "clone web1"; FULL_WORKS: a full clone of it, suspended,
 * is allowed (a VM's). */
static gboolean check_powered_off(const VcfVm *vm, const char *what, gboolean full_works,
                                  GError **error)
{
    if (vm->power == VCF_POWER_ON) {
        g_set_error(error, VCF_ERROR, EBUSY,
                    "cannot make a linked clone of the current state of %s: it is powered on (%s); "
                    "power it off, or clone one of its snapshots", what, vm->power_reason);
        return FALSE;
    }
    if (vm->power == VCF_POWER_SUSPENDED) {
        g_set_error(error, VCF_ERROR, EBUSY,
                    "cannot make a %s of %s: it is suspended (%s); VMware refuses this "
                    "with VIX_E_VM_IS_RUNNING (3007) because the suspended memory state would be "
                    "lost%s", full_works ? "linked clone" : "clone", what, vm->power_reason,
                    full_works ? "; a full clone copies its disks as they are (-o "
                    "clone_type=full, setfattr -n user.vmclonefs.type -v full on the source "
                    "folder, or vmclonefs-ctl clone --full)" : "");
        return FALSE;
    }
    if (vm->disks->len == 0) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s has no virtual disk to clone", vm->vmx_path);
        return FALSE;
    }
    return TRUE;
}

/* A full clone of a suspended VM copies its disks as they are, as
 * VixVM_Clone allows: no snapshot, which would have to carry the memory
 * state along. The copier checks that the disks stay unchanged until the
 * clone no longer needs them (vcf_disk_check_parent). */
static gboolean resolve_suspended(const VcfVm *vm, VcfSource *out, GError **error)
{
    if (vm->disks->len == 0) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s has no virtual disk to clone", vm->vmx_path);
        return FALSE;
    }
    out->disks = g_ptr_array_ref(vm->disks);
    return TRUE;
}

static gboolean resolve_vm(VcfLibrary *lib, const char *source, const char *name,
                           VcfVm *vm, gboolean full, VcfSource *out, GError **error)
{
    const char *snap = strchr(source, '@');
    out->vm_name = g_strdup(vm->name);
    if (snap != NULL) {
        const VcfSnapshot *s = vcf_vm_find_snapshot(vm, snap + 1);
        if (s == NULL) {
            g_set_error(error, VCF_ERROR, ENOENT, "VM %s has no snapshot named \"%s\"",
                        vm->name, snap + 1);
            return FALSE;
        }
        guint same = vcf_vm_count_snapshots_named(vm, snap + 1);
        if (same > 1) {
            /* As VixVM_GetNamedSnapshot: VIX_E_SNAPSHOT_NONUNIQUE_NAME. */
            g_set_error(error, VCF_ERROR, EINVAL, "VM %s has %u snapshots named \"%s\"; "
                        "rename all but one in VMware to clone it", vm->name, same, snap + 1);
            return FALSE;
        }
        out->disks = g_ptr_array_ref(s->disks);
        out->snapshot = g_strdup(s->display_name);
        out->uid = g_strdup(s->uid);
        return TRUE;
    }
    if (full && vm->power == VCF_POWER_SUSPENDED)
        return resolve_suspended(vm, out, error);
    g_autofree char *what = g_strdup_printf("VM %s", vm->name);
    gboolean reused;
    return check_powered_off(vm, what, TRUE, error)
        && vcf_base_take(lib, vm, name, &out->disks, &out->snapshot, &out->uid,
                         &reused, &out->undo, error);
}

/* The disk of the clone's config that stem STEM is, or NULL. */
static const VcfVmDisk *config_disk(const VcfVm *vm, const char *stem)
{
    g_autofree char *file = g_strconcat(stem, ".vmdk", NULL);
    for (guint i = 0; i < vm->disks->len; i++) {
        const VcfVmDisk *d = g_ptr_array_index(vm->disks, i);
        if (g_str_equal(d->file_name, file))
            return d;
    }
    return NULL;
}

static gboolean resolve_clone(VcfLibrary *lib, const char *source, VcfClone *open,
                              VcfSource *out, GError **error)
{
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, source, error);
    if (info == NULL)
        return FALSE;
    if (info->disks_gone || info->stems->len == 0) {
        g_set_error(error, VCF_ERROR, EINVAL, "clone %s has no disk to clone: its disk files "
                    "were removed", source);
        return FALSE;
    }
    g_autoptr(VcfVm) vm = vcf_vm_load(info->dir, vcf_library_root(lib), error);
    g_autofree char *what = g_strdup_printf("clone %s", source);
    if (vm == NULL) {
        g_prefix_error(error, "%s: ", what);
        return FALSE;
    }
    if (!check_powered_off(vm, what, FALSE, error))
        return FALSE;
    /* Made of a suspended VM's disks as they were, with no snapshot to
     * keep them: nothing may sit on them but its own copy. */
    if (info->parent_clone == NULL && info->base_snapshot == NULL
        && !vcf_clone_info_is_standalone(info)) {
        g_set_error(error, VCF_ERROR, EBUSY, "cannot clone %s yet: it was made from the disks "
                    "of suspended VM %s as they were, and is not full (state %s); clone it "
                    "once its copy is done", what, info->vm, info->state ? info->state : "?");
        return FALSE;
    }
    /* Its config names its stored disks; one VMware snapshotted (a delta
     * of VMware's over them) is not a state we can freeze. */
    for (guint i = 0; i < info->stems->len; i++) {
        const char *stem = g_ptr_array_index(info->stems, i);
        if (config_disk(vm, stem) == NULL || vm->disks->len != info->stems->len) {
            g_set_error(error, VCF_ERROR, EINVAL, "cannot clone %s: its config %s does not "
                        "name its disks %s.vmdk... as vmclonefs made them (snapshots taken in "
                        "VMware are not supported here)", what, vm->vmx_path, stem);
            return FALSE;
        }
    }
    VcfClone *c = open != NULL ? open : vcf_clone_open(lib, source, 1, error);
    if (c == NULL)
        return FALSE;
    g_autoptr(GPtrArray) layers = NULL;
    gboolean ok = vcf_clone_freeze(c, &layers, error);
    if (open == NULL)
        ok = vcf_clone_close(c, ok ? error : NULL) && ok;
    if (!ok)
        return FALSE;
    out->disks = g_ptr_array_new_with_free_func(vcf_vm_disk_free);
    for (guint i = 0; i < layers->len; i++) {
        VcfVmDisk *d = g_new0(VcfVmDisk, 1);
        d->node = g_strdup(config_disk(vm, g_ptr_array_index(info->stems, i))->node);
        d->path = g_strdup(g_ptr_array_index(layers, i));
        d->file_name = g_path_get_basename(d->path);
        g_ptr_array_add(out->disks, d);
    }
    out->vm = g_steal_pointer(&vm);
    out->vm_name = g_strdup(info->vm);
    out->snapshot = g_strdup(info->base_snapshot);
    out->uid = g_strdup(info->base_uid);
    out->parent_clone = g_strdup(source);
    return TRUE;
}

gboolean vcf_source_resolve(VcfLibrary *lib, const char *source, const char *name,
                            VcfClone *open, gboolean full, VcfSource *out, GError **error)
{
    memset(out, 0, sizeof *out);
    g_autofree char *vm_name = g_strndup(source, strcspn(source, "@"));
    GError *local = NULL;
    g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, vm_name, &local);
    gboolean ok;
    if (vm == NULL && strchr(source, '@') == NULL
        && g_error_matches(local, VCF_ERROR, ENOENT)
        && vcf_clone_exists(lib, source)) {
        g_clear_error(&local);
        ok = resolve_clone(lib, source, open, out, error);
    } else if (vm == NULL) {
        g_propagate_error(error, local);
        ok = FALSE;
    } else {
        ok = resolve_vm(lib, source, name, vm, full, out, error);
        if (ok)
            out->vm = g_steal_pointer(&vm);
    }
    if (!ok)
        vcf_source_clear(out);
    return ok;
}
