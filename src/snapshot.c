#include "config.h"
#include "snapshot.h"
#include "names.h"
#include "parent.h"
#include "fileutil.h"
#include "sparse.h"
#include "vcf-error.h"
#include "vmx.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

char *vcf_snapshot_delta_name(const char *dir, const char *file_name)
{
    g_autofree char *base = g_path_get_basename(file_name);
    gsize n = strlen(base);
    if (n > 5 && g_ascii_strcasecmp(base + n - 5, ".vmdk") == 0)
        base[n -= 5] = '\0';
    /* "Ubuntu-000002" continues as "Ubuntu-000003", not "Ubuntu-000002-000001". */
    if (n > 7 && base[n - 7] == '-' && strspn(base + n - 6, "0123456789") == 6)
        base[n - 7] = '\0';
    for (guint i = 1; i < 1000000; i++) {
        char *name = g_strdup_printf("%s-%06u.vmdk", base, i);
        g_autofree char *path = g_build_filename(dir, name, NULL);
        if (!g_file_test(path, G_FILE_TEST_EXISTS))
            return name;
        g_free(name);
    }
    return NULL;
}

static const char *adapter_of(const VcfVmx *vmx, const char *node)
{
    if (g_str_has_prefix(node, "ide"))
        return "ide";
    g_autofree char *ctl = g_strndup(node, strcspn(node, ":"));
    g_autofree char *key = g_strconcat(ctl, ".virtualDev", NULL);
    const char *dev = vcf_vmx_get(vmx, key);
    if (dev != NULL && (g_str_equal(dev, "buslogic") || g_str_equal(dev, "lsisas1068")
                        || g_str_equal(dev, "pvscsi")))
        return dev;
    return "lsilogic";
}

static VcfVmx *load_vmsd(const char *path, GError **error)
{
    if (!g_file_test(path, G_FILE_TEST_EXISTS))
        return vcf_vmx_new();
    return vcf_vmx_load(path, error);
}

/* The next uid: past the .vmsd's lastUID and every snapshot's uid. */
static guint64 next_uid(const VcfVm *vm, const VcfVmx *sd)
{
    const char *last = vcf_vmx_get(sd, "snapshot.lastUID");
    guint64 uid = (last ? g_ascii_strtoull(last, NULL, 10) : 0) + 1;
    for (guint i = 0; i < vm->snapshots->len; i++) {
        const VcfSnapshot *s = g_ptr_array_index(vm->snapshots, i);
        uid = MAX(uid, g_ascii_strtoull(s->uid, NULL, 10) + 1);
    }
    return uid;
}

static gboolean add_to_vmsd(const VcfVm *vm, VcfVmx *sd, const char *path, guint64 uid,
                            const char *display_name, const char *description,
                            GError **error)
{
    /* Workstation leaves an empty .vmsd before the first snapshot. */
    if (vcf_vmx_get(sd, ".encoding") == NULL)
        vcf_vmx_set(sd, ".encoding", "UTF-8");
    guint idx = 0;
    for (;; idx++) {
        g_autofree char *k = g_strdup_printf("snapshot%u.uid", idx);
        if (vcf_vmx_get(sd, k) == NULL)
            break;
    }
    g_autofree char *u = g_strdup_printf("%" G_GUINT64_FORMAT, uid);
    g_autofree char *p = g_strdup_printf("snapshot%u.", idx);
    gint64 now = g_get_real_time();
    struct { const char *key; char *value; } kv[] = {
        { "uid", g_strdup(u) },
        { "filename", g_strdup_printf("%s-Snapshot%" G_GUINT64_FORMAT ".vmsn", vm->name, uid) },
        { "parent", g_strdup(vm->current_snapshot_uid) },
        { "displayName", g_strdup(display_name) },
        { "description", g_strdup(description) },
        { "createTimeHigh", g_strdup_printf("%d", (gint32)(now >> 32)) },
        { "createTimeLow", g_strdup_printf("%d", (gint32)(guint32)now) },
        { "numDisks", g_strdup_printf("%u", vm->disks->len) },
    };
    for (guint i = 0; i < G_N_ELEMENTS(kv); i++) {
        if (kv[i].value != NULL) {
            g_autofree char *k = g_strconcat(p, kv[i].key, NULL);
            vcf_vmx_set(sd, k, kv[i].value);
        }
        g_free(kv[i].value);
    }
    for (guint i = 0; i < vm->disks->len; i++) {
        const VcfVmDisk *d = g_ptr_array_index(vm->disks, i);
        g_autofree char *kf = g_strdup_printf("%sdisk%u.fileName", p, i);
        g_autofree char *kn = g_strdup_printf("%sdisk%u.node", p, i);
        vcf_vmx_set(sd, kf, d->file_name);
        vcf_vmx_set(sd, kn, d->node);
    }
    g_autofree char *n = g_strdup_printf("%u", MAX(idx + 1, vm->snapshots->len + 1));
    vcf_vmx_set(sd, "snapshot.lastUID", u);
    vcf_vmx_set(sd, "snapshot.current", u);
    vcf_vmx_set(sd, "snapshot.numSnapshots", n);
    return vcf_vmx_save(sd, path, error);
}

struct VcfSnapshotUndo {
    char *vmx_path;
    GBytes *vmx;        /* the .vmx as it was */
    char *vmsd_path;
    GBytes *vmsd;       /* the .vmsd as it was, NULL if there was none */
    GPtrArray *deltas;  /* the new delta files */
};

void vcf_snapshot_undo_free(VcfSnapshotUndo *u)
{
    if (u == NULL)
        return;
    g_free(u->vmx_path);
    g_free(u->vmsd_path);
    if (u->vmx)
        g_bytes_unref(u->vmx);
    if (u->vmsd)
        g_bytes_unref(u->vmsd);
    g_ptr_array_unref(u->deltas);
    g_free(u);
}

static GBytes *read_bytes(const char *path, GError **error)
{
    char *text;
    gsize len;
    if (!g_file_get_contents(path, &text, &len, error))
        return NULL;
    return g_bytes_new_take(text, len);
}

static gboolean restore(const char *path, GBytes *bytes, GError **error)
{
    if (bytes == NULL) {
        if (g_unlink(path) < 0 && errno != ENOENT) {
            vcf_set_errno(error, errno, path);
            return FALSE;
        }
        return vcf_fsync_dir(path, error);
    }
    gsize len;
    const void *data = g_bytes_get_data(bytes, &len);
    return vcf_file_write_atomic(path, data, len, error);
}

gboolean vcf_snapshot_undo(VcfSnapshotUndo *u, GError **error)
{
    /* The reverse of taking: the .vmsd stops naming the snapshot first, so
     * that no moment lists the live disks as a snapshot's. */
    if (!restore(u->vmsd_path, u->vmsd, error) || !restore(u->vmx_path, u->vmx, error))
        return FALSE;
    for (guint i = 0; i < u->deltas->len; i++)
        g_unlink(g_ptr_array_index(u->deltas, i));
    return TRUE;
}

const char *vcf_snapshot_undo_vmx_path(const VcfSnapshotUndo *u) { return u->vmx_path; }
const char *vcf_snapshot_undo_vmsd_path(const VcfSnapshotUndo *u) { return u->vmsd_path; }
GBytes *vcf_snapshot_undo_vmx(const VcfSnapshotUndo *u) { return u->vmx; }
GBytes *vcf_snapshot_undo_vmsd(const VcfSnapshotUndo *u) { return u->vmsd; }
GPtrArray *vcf_snapshot_undo_deltas(const VcfSnapshotUndo *u) { return u->deltas; }

gboolean vcf_snapshot_take(const VcfVm *vm, const char *confine, VcfLinkCache *cache,
                           const char *display_name, const char *description,
                           VcfSnapshotHook before_commit, gpointer hook_data,
                           char **uid_out, VcfSnapshotUndo **undo_out, GError **error)
{
    if (vm->power != VCF_POWER_OFF) {
        g_set_error(error, VCF_ERROR, EBUSY, "%s is not powered off (%s)", vm->name,
                    vm->power_reason);
        return FALSE;
    }
    g_autoptr(VcfSnapshotUndo) undo = g_new0(VcfSnapshotUndo, 1);
    undo->deltas = g_ptr_array_new_with_free_func(g_free);
    undo->vmx_path = g_strdup(vm->vmx_path);
    g_autofree char *stem = g_strndup(vm->vmx_path, strlen(vm->vmx_path) - 4);
    undo->vmsd_path = g_strconcat(stem, ".vmsd", NULL);
    if ((undo->vmx = read_bytes(undo->vmx_path, error)) == NULL)
        return FALSE;
    if (g_file_test(undo->vmsd_path, G_FILE_TEST_EXISTS)
        && (undo->vmsd = read_bytes(undo->vmsd_path, error)) == NULL)
        return FALSE;
    g_autoptr(VcfVmx) vmx = vcf_vmx_load(vm->vmx_path, error);
    g_autoptr(VcfVmx) sd = vmx ? load_vmsd(undo->vmsd_path, error) : NULL;
    if (sd == NULL)
        return FALSE;
    guint64 uid = next_uid(vm, sd);
    g_autofree char *uid_text = g_strdup_printf("%" G_GUINT64_FORMAT, uid);
    GPtrArray *made = undo->deltas;
    for (guint i = 0; i < vm->disks->len; i++) {
        const VcfVmDisk *d = g_ptr_array_index(vm->disks, i);
        g_autoptr(VcfParent) cur = vcf_parent_open(d->path, confine, cache, 1, error);
        if (cur == NULL)
            goto undo;
        g_autofree char *name = vcf_snapshot_delta_name(vm->dir, d->file_name);
        g_autofree char *path = g_build_filename(vm->dir, name, NULL);
        g_autofree char *hint = vcf_relative_path(vm->dir, d->path);
        /* The guest goes on seeing the disk it saw: the parent's geometry. */
        VcfGeometry geo;
        if (!vcf_geometry_of_disk(&geo, d->path, vcf_parent_get_size(cur),
                                  adapter_of(vmx, d->node), error))
            goto undo;
        VcfSparseParams p = { .capacity = vcf_parent_get_size(cur),
                              .parent_cid = vcf_parent_get_cid(cur),
                              .parent_hint = hint,
                              .geometry = &geo };
        if (!vcf_sparse_create_extent(path, &p, error))
            goto undo;
        g_ptr_array_add(made, g_strdup(path));
        g_autofree char *key = g_strconcat(d->node, ".fileName", NULL);
        vcf_vmx_set(vmx, key, name);
    }
    /* The new deltas' names are durable before the .vmx names them, and
     * whatever the caller records to take the snapshot back. */
    if (!vcf_fsync_dir(vm->dir, error)
        || (before_commit != NULL && !before_commit(undo, uid_text, hook_data, error))
        || !vcf_vmx_save(vmx, vm->vmx_path, error))
        goto undo;
    /* The chain is now correct whatever happens to the .vmsd. */
    if (!add_to_vmsd(vm, sd, undo->vmsd_path, uid, display_name, description, error)) {
        GError *e = NULL;
        if (!vcf_snapshot_undo(undo, &e)) {
            g_prefix_error(error, "(taking the snapshot back failed too: %s) ", e->message);
            g_error_free(e);
        }
        return FALSE;
    }
    *uid_out = g_steal_pointer(&uid_text);
    if (undo_out != NULL)
        *undo_out = g_steal_pointer(&undo);
    return TRUE;
undo:
    for (guint i = 0; i < made->len; i++)
        g_unlink(g_ptr_array_index(made, i));
    return FALSE;
}
