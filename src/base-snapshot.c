#include "config.h"
#include "base-snapshot.h"
#include "clone-store.h"
#include "fileutil.h"
#include "parent.h"
#include "sparse-format.h"
#include "vcf-error.h"
#include "vmx.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP "snapshot"

static char *records_dir(VcfLibrary *lib)
{
    return g_build_filename(vcf_library_root(lib), ".vmclonefs", "snapshots", NULL);
}

/* VM folder names may be long and hold anything but '/': a hash names them. */
static char *record_path(VcfLibrary *lib, const char *vm_name, const char *uid)
{
    g_autofree char *h = g_compute_checksum_for_string(G_CHECKSUM_SHA256, vm_name, -1);
    g_autofree char *dir = records_dir(lib);
    g_autofree char *file = g_strdup_printf("%s-%.16s.ini", uid, h);
    return g_build_filename(dir, file, NULL);
}

static GKeyFile *record_load(VcfLibrary *lib, const char *vm_name, const char *uid)
{
    g_autofree char *path = record_path(lib, vm_name, uid);
    GKeyFile *kf = g_key_file_new();
    g_autofree char *vm = NULL;
    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, NULL)
        || (vm = g_key_file_get_string(kf, GROUP, "vm", NULL)) == NULL
        || !g_str_equal(vm, vm_name)) {
        g_key_file_free(kf);
        return NULL;
    }
    return kf;
}

static gboolean record_save(const char *path, GKeyFile *kf, GError **error)
{
    gsize len;
    g_autofree char *data = g_key_file_to_data(kf, &len, NULL);
    g_autofree char *dir = g_path_get_dirname(path);
    if (g_mkdir_with_parents(dir, 0755) < 0) {
        vcf_set_errno(error, errno, dir);
        return FALSE;
    }
    return vcf_file_write_atomic(path, data, len, error);
}

/* SHA-256 of the file at PATH, "none" if there is no such file. */
static char *file_hash(const char *path)
{
    char *text;
    gsize len;
    if (!g_file_get_contents(path, &text, &len, NULL))
        return g_strdup("none");
    char *h = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)text, len);
    g_free(text);
    return h;
}

static GBytes *record_bytes(GKeyFile *kf, const char *key)
{
    g_autofree char *b64 = g_key_file_get_string(kf, GROUP, key, NULL);
    if (b64 == NULL)
        return NULL;
    gsize len;
    guchar *data = g_base64_decode(b64, &len);
    return g_bytes_new_take(data, len);
}

typedef struct {
    VcfLibrary *lib;
    const VcfVm *vm;
    const char *display;
    char *record;
} TakeCtx;

static void set_bytes(GKeyFile *kf, const char *key, GBytes *bytes)
{
    if (bytes == NULL)
        return;
    gsize len;
    const guchar *data = g_bytes_get_data(bytes, &len);
    g_autofree char *b64 = g_base64_encode(data, len);
    g_key_file_set_string(kf, GROUP, key, b64);
}

/* Before the commit: what it takes to take the snapshot back. */
static gboolean write_record(const VcfSnapshotUndo *undo, const char *uid, gpointer data,
                             GError **error)
{
    TakeCtx *c = data;
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_key_file_set_string(kf, GROUP, "vm", c->vm->name);
    g_key_file_set_string(kf, GROUP, "uid", uid);
    g_key_file_set_string(kf, GROUP, "display-name", c->display);
    GPtrArray *deltas = vcf_snapshot_undo_deltas(undo);
    g_key_file_set_string_list(kf, GROUP, "deltas", (const char *const *)deltas->pdata,
                               deltas->len);
    g_autoptr(GPtrArray) nodes = g_ptr_array_new();
    g_autoptr(GPtrArray) files = g_ptr_array_new();
    for (guint i = 0; i < c->vm->disks->len; i++) {
        const VcfVmDisk *d = g_ptr_array_index(c->vm->disks, i);
        g_ptr_array_add(nodes, d->node);
        g_ptr_array_add(files, d->file_name);
    }
    g_key_file_set_string_list(kf, GROUP, "nodes", (const char *const *)nodes->pdata, nodes->len);
    g_key_file_set_string_list(kf, GROUP, "files", (const char *const *)files->pdata, files->len);
    set_bytes(kf, "vmx-before", vcf_snapshot_undo_vmx(undo));
    set_bytes(kf, "vmsd-before", vcf_snapshot_undo_vmsd(undo));
    c->record = record_path(c->lib, c->vm->name, uid);
    return record_save(c->record, kf, error);
}

static gboolean in_list(char **list, const char *path)
{
    for (char **p = list; p != NULL && *p != NULL; p++)
        if (g_str_equal(*p, path))
            return TRUE;
    return FALSE;
}

/* The vmclonefs snapshot VM's current state sits on with no write since:
 * every current disk is our empty delta over that snapshot's disk. */
static const VcfSnapshot *reusable(VcfLibrary *lib, const VcfVm *vm)
{
    if (vm->current_snapshot_uid == NULL)
        return NULL;
    g_autoptr(GKeyFile) kf = record_load(lib, vm->name, vm->current_snapshot_uid);
    const VcfSnapshot *s = NULL;
    for (guint i = 0; kf != NULL && i < vm->snapshots->len; i++) {
        const VcfSnapshot *t = g_ptr_array_index(vm->snapshots, i);
        if (g_str_equal(t->uid, vm->current_snapshot_uid))
            s = t;
    }
    if (s == NULL || s->disks->len != vm->disks->len)
        return NULL;
    g_auto(GStrv) deltas = g_key_file_get_string_list(kf, GROUP, "deltas", NULL, NULL);
    for (guint i = 0; i < vm->disks->len; i++) {
        const VcfVmDisk *d = g_ptr_array_index(vm->disks, i);
        const VcfVmDisk *base = NULL;
        for (guint j = 0; j < s->disks->len; j++) {
            const VcfVmDisk *b = g_ptr_array_index(s->disks, j);
            if (g_ascii_strcasecmp(b->node, d->node) == 0)
                base = b;
        }
        gboolean has_data = TRUE;
        if (base == NULL || !in_list(deltas, d->path)
            || !vcf_sparse_extent_has_data(d->path, &has_data, NULL) || has_data)
            return NULL;
        /* The delta still sits on that disk, CIDs and all. */
        g_autoptr(VcfParent) chain = vcf_parent_open(d->path, vcf_library_root(lib),
                                                      vcf_library_link_cache(lib), 1, NULL);
        g_autofree char *want = realpath(base->path, NULL);
        const char *const *files = chain ? vcf_parent_get_files(chain) : NULL;
        if (files == NULL || want == NULL || !in_list((char **)files, want))
            return NULL;
    }
    return s;
}

gboolean vcf_base_take(VcfLibrary *lib, const VcfVm *vm, const char *name,
                       GPtrArray **disks, char **display_name, char **uid,
                       gboolean *reused, VcfSnapshotUndo **undo, GError **error)
{
    const VcfSnapshot *s = reusable(lib, vm);
    if (s != NULL) {
        *disks = g_ptr_array_ref(s->disks);
        *display_name = g_strdup(s->display_name);
        *uid = g_strdup(s->uid);
        *reused = TRUE;
        return TRUE;
    }
    /* A name used before (by a deleted clone) gets a number, so that
     * every source stays one folder. */
    g_autofree char *display = g_strdup_printf("vmclonefs: %s", name);
    for (guint i = 2; vcf_vm_find_snapshot(vm, display) != NULL; i++) {
        g_free(display);
        display = g_strdup_printf("vmclonefs: %s (%u)", name, i);
    }
    g_autofree char *desc = g_strdup_printf("Base of linked clones made by vmclonefs "
                                            "(first: %s)", name);
    TakeCtx ctx = { .lib = lib, .vm = vm, .display = display };
    if (!vcf_snapshot_take(vm, vcf_library_root(lib), vcf_library_link_cache(lib), display,
                           desc, write_record, &ctx, uid, undo, error)) {
        if (ctx.record != NULL)
            g_unlink(ctx.record);
        g_free(ctx.record);
        return FALSE;
    }
    /* Hashes of what we wrote: take-back restores the old bytes only if
     * nobody changed these since. Without them it undoes by editing. */
    g_autoptr(GKeyFile) kf = g_key_file_new();
    if (g_key_file_load_from_file(kf, ctx.record, G_KEY_FILE_NONE, NULL)) {
        g_autofree char *stem = g_strndup(vm->vmx_path, strlen(vm->vmx_path) - 4);
        g_autofree char *vmsd = g_strconcat(stem, ".vmsd", NULL);
        g_autofree char *hx = file_hash(vm->vmx_path);
        g_autofree char *hs = file_hash(vmsd);
        g_key_file_set_string(kf, GROUP, "vmx-after", hx);
        g_key_file_set_string(kf, GROUP, "vmsd-after", hs);
        record_save(ctx.record, kf, NULL);
    }
    g_free(ctx.record);
    *disks = g_ptr_array_ref(vm->disks);
    *display_name = g_steal_pointer(&display);
    *reused = FALSE;
    return TRUE;
}

gboolean vcf_base_undo(VcfLibrary *lib, VcfSnapshotUndo *undo, const char *vm_name,
                       const char *uid, GError **error)
{
    if (!vcf_snapshot_undo(undo, error))
        return FALSE;
    g_autofree char *path = record_path(lib, vm_name, uid);
    g_unlink(path);
    return TRUE;
}

static gboolean used_by_a_clone(VcfLibrary *lib, const char *vm_name, const char *uid,
                                const char *display, char **why)
{
    g_autoptr(GPtrArray) names = vcf_clone_list(lib);
    for (guint i = 0; i < names->len; i++) {
        g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, names->pdata[i], NULL);
        /* Unreadable: it may be based on this snapshot, so keep it. */
        if (info == NULL) {
            *why = g_strdup_printf("clone %s cannot be read", (char *)names->pdata[i]);
            return TRUE;
        }
        if (info->stems->len == 0 || info->disks_gone || vcf_clone_info_is_standalone(info)
            || g_strcmp0(info->vm, vm_name) != 0)
            continue;
        if (info->base_uid ? g_str_equal(info->base_uid, uid)
                           : g_strcmp0(info->base_snapshot, display) == 0) {
            *why = g_strdup_printf("clone %s is based on it", info->name);
            return TRUE;
        }
    }
    return FALSE;
}

static gboolean restore_or_edit(const char *path, GKeyFile *kf, const char *before_key,
                                const char *after_key, VcfVmx *edited, GError **error)
{
    g_autofree char *after = g_key_file_get_string(kf, GROUP, after_key, NULL);
    g_autofree char *now = file_hash(path);
    g_autoptr(GBytes) before = record_bytes(kf, before_key);
    g_autofree char *was = before ? g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, before)
                                  : g_strdup("none");
    /* Already as it was: a take-back cut short after this file, or a take
     * cut short before it. */
    if (g_str_equal(was, now))
        return TRUE;
    if (after != NULL && g_str_equal(after, now)) {
        if (before == NULL)
            return (g_unlink(path) == 0 || errno == ENOENT) && vcf_fsync_dir(path, error);
        gsize len;
        const void *data = g_bytes_get_data(before, &len);
        return vcf_file_write_atomic(path, data, len, error);
    }
    return edited == NULL || vcf_vmx_save(edited, path, error);
}

/* The .vmsd without snapshot UID, for when somebody edited it since. */
static VcfVmx *vmsd_without(const char *path, const char *uid, const char *parent,
                            GError **error)
{
    if (!g_file_test(path, G_FILE_TEST_EXISTS))
        return NULL;
    VcfVmx *sd = vcf_vmx_load(path, error);
    if (sd == NULL)
        return NULL;
    g_auto(GStrv) keys = vcf_vmx_keys(sd);
    guint left = 0;
    for (char **k = keys; *k; k++) {
        if (!g_str_has_suffix(*k, ".uid") || !g_str_has_prefix(*k, "snapshot")
            || g_str_has_prefix(*k, "snapshot.") || g_str_has_prefix(*k, "snapshot.mru"))
            continue;
        if (g_strcmp0(vcf_vmx_get(sd, *k), uid) != 0) {
            left++;
            continue;
        }
        g_autofree char *group = g_strndup(*k, strlen(*k) - 3);
        vcf_vmx_remove_prefix(sd, group);
    }
    if (parent != NULL)
        vcf_vmx_set(sd, "snapshot.current", parent);
    else
        vcf_vmx_remove(sd, "snapshot.current");
    g_autofree char *n = g_strdup_printf("%u", left);
    vcf_vmx_set(sd, "snapshot.numSnapshots", n);
    return sd;
}

gboolean vcf_base_release(VcfLibrary *lib, const char *vm_name, const char *uid,
                          char **why, GError **error)
{
    g_autoptr(GKeyFile) kf = record_load(lib, vm_name, uid);
    g_autofree char *record = record_path(lib, vm_name, uid);
    if (kf == NULL) {
        *why = g_strdup("vmclonefs did not take it");
        return FALSE;
    }
    g_autofree char *display = g_key_file_get_string(kf, GROUP, "display-name", NULL);
    if (used_by_a_clone(lib, vm_name, uid, display, why))
        return FALSE;
    GError *local = NULL;
    g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, vm_name, &local);
    if (vm == NULL) {
        *why = g_strdup_printf("VM %s does not load: %s", vm_name, local->message);
        g_error_free(local);
        return FALSE;
    }
    if (vm->power != VCF_POWER_OFF) {
        *why = g_strdup_printf("VM %s is not powered off (%s)", vm_name, vm->power_reason);
        return FALSE;
    }
    g_auto(GStrv) deltas = g_key_file_get_string_list(kf, GROUP, "deltas", NULL, NULL);
    gboolean committed = deltas != NULL && vm->disks->len == g_strv_length(deltas);
    for (guint i = 0; committed && i < vm->disks->len; i++)
        committed = in_list(deltas, ((VcfVmDisk *)vm->disks->pdata[i])->path);
    if (!committed) {
        g_autoptr(GBytes) before = record_bytes(kf, "vmx-before");
        g_autofree char *now = file_hash(vm->vmx_path);
        g_autofree char *was = before ? g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, before)
                                      : NULL;
        if (was != NULL && g_str_equal(was, now)) {
            /* A crash before the commit: the deltas were never used. */
            for (char **d = deltas; d != NULL && *d != NULL; d++)
                g_unlink(*d);
            g_unlink(record);
            return TRUE;
        }
        *why = g_strdup_printf("VM %s has moved on from it (its disks are others now)", vm_name);
        g_unlink(record);   /* the snapshot is the VM's own from now on */
        return FALSE;
    }
    for (char **d = deltas; *d != NULL; d++) {
        gboolean has_data = TRUE;
        if (!vcf_sparse_extent_has_data(*d, &has_data, NULL) || has_data) {
            *why = g_strdup_printf("VM %s has written to %s since", vm_name, *d);
            return FALSE;
        }
    }
    const VcfSnapshot *s = NULL;
    for (guint i = 0; i < vm->snapshots->len; i++)
        if (g_str_equal(((VcfSnapshot *)vm->snapshots->pdata[i])->uid, uid))
            s = vm->snapshots->pdata[i];
    g_autofree char *stem = g_strndup(vm->vmx_path, strlen(vm->vmx_path) - 4);
    g_autofree char *vmsd = g_strconcat(stem, ".vmsd", NULL);
    /* As the undo of a take: the .vmsd stops naming it first. */
    /* Not listed any more (a take-back cut short): the .vmsd stays as is. */
    g_autoptr(VcfVmx) sd = s ? vmsd_without(vmsd, uid, s->parent_uid, error) : NULL;
    if (s != NULL && sd == NULL && error != NULL && *error != NULL)
        return FALSE;
    if (!restore_or_edit(vmsd, kf, "vmsd-before", "vmsd-after", sd, error))
        return FALSE;
    g_autoptr(VcfVmx) vmx = vcf_vmx_load(vm->vmx_path, error);
    if (vmx == NULL)
        return FALSE;
    g_auto(GStrv) nodes = g_key_file_get_string_list(kf, GROUP, "nodes", NULL, NULL);
    g_auto(GStrv) files = g_key_file_get_string_list(kf, GROUP, "files", NULL, NULL);
    for (guint i = 0; nodes && files && nodes[i] && files[i]; i++) {
        g_autofree char *key = g_strconcat(nodes[i], ".fileName", NULL);
        vcf_vmx_set(vmx, key, files[i]);
    }
    if (!restore_or_edit(vm->vmx_path, kf, "vmx-before", "vmx-after", vmx, error))
        return FALSE;
    for (char **d = deltas; *d != NULL; d++)
        g_unlink(*d);
    if (!vcf_fsync_dir(vm->dir, error))
        return FALSE;
    g_unlink(record);
    return TRUE;
}

void vcf_base_release_unused(VcfLibrary *lib, GPtrArray *taken_back, GPtrArray *problems)
{
    g_autofree char *dir = records_dir(lib);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *e;
    while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
        if (!g_str_has_suffix(e, ".ini") || e[0] == '.')
            continue;
        g_autofree char *path = g_build_filename(dir, e, NULL);
        g_autoptr(GKeyFile) kf = g_key_file_new();
        if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, NULL))
            continue;
        g_autofree char *vm = g_key_file_get_string(kf, GROUP, "vm", NULL);
        g_autofree char *uid = g_key_file_get_string(kf, GROUP, "uid", NULL);
        g_autofree char *display = g_key_file_get_string(kf, GROUP, "display-name", NULL);
        if (vm == NULL || uid == NULL)
            continue;
        g_autofree char *why = NULL;
        GError *error = NULL;
        if (vcf_base_release(lib, vm, uid, &why, &error)) {
            if (taken_back != NULL)
                g_ptr_array_add(taken_back, g_strdup_printf("\"%s\" of %s", display, vm));
        } else if (error != NULL) {
            if (problems != NULL)
                g_ptr_array_add(problems, g_strdup(error->message));
            g_error_free(error);
        }
    }
    if (d != NULL)
        g_dir_close(d);
}
