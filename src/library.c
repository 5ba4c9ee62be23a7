#include "config.h"
#include "library.h"
#include "fileutil.h"
#include "link-cache.h"
#include "names.h"
#include "vcf-error.h"
#include "vmx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct VcfLibrary {
    char *root;         /* realpath of the library */
    char *store_root;   /* root/.vmclonefs/clones */
    char *lock_path;    /* root/.vmclonefs/lock */
    int lock_fd;        /* holds the library's lock; -1 when not locked */
    VcfLinkCache *links; /* what libvmdk found in its disks */
};

VcfLibrary *vcf_library_open(const char *root, GError **error)
{
    g_autofree char *real = realpath(root, NULL);
    if (real == NULL || !g_file_test(real, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, VCF_ERROR, real ? ENOTDIR : errno,
                    "library %s: %s", root, real ? "not a folder" : g_strerror(errno));
        return NULL;
    }
    VcfLibrary *lib = g_new0(VcfLibrary, 1);
    lib->root = g_steal_pointer(&real);
    lib->store_root = g_build_filename(lib->root, ".vmclonefs", "clones", NULL);
    lib->lock_path = g_build_filename(lib->root, ".vmclonefs", "lock", NULL);
    lib->lock_fd = -1;
    lib->links = vcf_link_cache_new(VCF_LINK_SETTLE_US);
    if (g_mkdir_with_parents(lib->store_root, 0755) < 0) {
        g_autofree char *what = g_strdup_printf("making %s", lib->store_root);
        vcf_set_errno(error, errno, what);
        vcf_library_free(lib);
        return NULL;
    }
    return lib;
}

void vcf_library_free(VcfLibrary *lib)
{
    if (lib == NULL)
        return;
    if (lib->lock_fd >= 0)
        close(lib->lock_fd);    /* the kernel drops the lock with it */
    g_free(lib->root);
    g_free(lib->store_root);
    g_free(lib->lock_path);
    vcf_link_cache_unref(lib->links);
    g_free(lib);
}

/* ---- one writer per library --------------------------------------------- */

/* The holder's "pid N" and "host H" lines, as a phrase, or NULL when the
 * file names nobody (the holder has not written yet). Only digits and
 * host-name characters are taken: the file is anyone's to write. */
static char *lock_holder(int fd)
{
    char buf[512];
    gssize n = vcf_pread_all(fd, buf, sizeof buf - 1, 0, "lock", NULL);
    if (n <= 0)
        return NULL;
    buf[n] = 0;
    g_autofree char *pid = NULL;
    g_autofree char *host = NULL;
    g_auto(GStrv) lines = g_strsplit(buf, "\n", 0);
    for (char **l = lines; *l != NULL; l++) {
        guint64 v;
        if (g_str_has_prefix(*l, "pid ")
            && g_ascii_string_to_unsigned(*l + 4, 10, 1, G_MAXINT32, &v, NULL))
            pid = g_strdup_printf("pid %" G_GUINT64_FORMAT, v);
        else if (g_str_has_prefix(*l, "host ") && (*l)[5] != 0 && strlen(*l + 5) <= 255
                 && strspn(*l + 5, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                           "0123456789.-_") == strlen(*l + 5))
            host = g_strdup_printf("host %s", *l + 5);
    }
    if (pid == NULL && host == NULL)
        return NULL;
    return g_strjoin(" ", "vmclonefs", pid ? pid : host, pid && host ? "on" : NULL, host, NULL);
}

gboolean vcf_library_lock(VcfLibrary *lib, GError **error)
{
    g_return_val_if_fail(lib->lock_fd < 0, FALSE);
    /* O_NOFOLLOW: a symlink planted here must not make us truncate its
     * target. */
    int fd = open(lib->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        g_autofree char *what = g_strdup_printf("opening the library lock %s", lib->lock_path);
        vcf_set_errno(error, errno, what);
        return FALSE;
    }
    /* An OFD lock belongs to the open file description: fuse_daemonize's
     * child keeps it when the parent exits, a close of some other fd of the
     * file does not drop it (a POSIX lock would), it conflicts with a second
     * daemon in this process too, and NFSv4 and CephFS carry it between
     * hosts. Whole file, never waiting. */
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
        int e = errno;
        if (e == EAGAIN || e == EACCES) {
            /* F_OFD_GETLK reports no pid for OFD locks: the holder's own
             * text says who it is. */
            g_autofree char *holder = lock_holder(fd);
            g_set_error(error, VCF_ERROR, EBUSY,
                        "library %s is in use: %s holds its lock %s; one vmclonefs serves a "
                        "library at a time, unmount that one first (one just unmounted exits "
                        "once it has synced its clones and ended a full copy's step: give it "
                        "a few seconds)",
                        lib->root, holder ? holder : "another vmclonefs (not yet named in the file)",
                        lib->lock_path);
        } else {
            g_set_error(error, VCF_ERROR, e,
                        "cannot lock the library: %s: %s (the library's file system must "
                        "support file locks, so that no second vmclonefs can share it)",
                        lib->lock_path, g_strerror(e));
        }
        close(fd);
        return FALSE;
    }
    lib->lock_fd = fd;
    if (!vcf_library_note_holder(lib, error)) {
        close(lib->lock_fd);
        lib->lock_fd = -1;
        return FALSE;
    }
    return TRUE;
}

gboolean vcf_library_note_holder(VcfLibrary *lib, GError **error)
{
    g_return_val_if_fail(lib->lock_fd >= 0, FALSE);
    g_autofree char *text = g_strdup_printf("pid %d\nhost %s\n", (int)getpid(),
                                            g_get_host_name());
    /* Truncate first: a dead holder's longer text must not show through. */
    if (ftruncate(lib->lock_fd, 0) < 0) {
        g_autofree char *what = g_strdup_printf("%s: truncate", lib->lock_path);
        vcf_set_errno(error, errno, what);
        return FALSE;
    }
    if (!vcf_pwrite_all(lib->lock_fd, text, strlen(text), 0, lib->lock_path, error))
        return FALSE;
    /* Another host reads the text through its own NFS or CephFS client,
     * and we never close the file: push it out now. */
    if (fdatasync(lib->lock_fd) < 0) {
        g_autofree char *what = g_strdup_printf("%s: fdatasync", lib->lock_path);
        vcf_set_errno(error, errno, what);
        return FALSE;
    }
    return TRUE;
}

const char *vcf_library_root(const VcfLibrary *lib) { return lib->root; }
const char *vcf_library_store_root(const VcfLibrary *lib) { return lib->store_root; }
VcfLinkCache *vcf_library_link_cache(const VcfLibrary *lib) { return lib->links; }

/* The .vmx of folder DIR: NAME.vmx after the folder, else the only one. */
static char *find_vmx(const char *dir)
{
    g_autofree char *base = g_path_get_basename(dir);
    g_autofree char *named = g_strconcat(base, ".vmx", NULL);
    g_autofree char *path = g_build_filename(dir, named, NULL);
    if (g_file_test(path, G_FILE_TEST_IS_REGULAR))
        return g_steal_pointer(&path);
    GDir *d = g_dir_open(dir, 0, NULL);
    if (d == NULL)
        return NULL;
    char *found = NULL;
    guint n = 0;
    const char *e;
    while ((e = g_dir_read_name(d)) != NULL) {
        if (!g_str_has_suffix(e, ".vmx"))
            continue;
        g_autofree char *p = g_build_filename(dir, e, NULL);
        if (!g_file_test(p, G_FILE_TEST_IS_REGULAR))
            continue;
        if (n++ == 0)
            found = g_steal_pointer(&p);
    }
    g_dir_close(d);
    if (n != 1)
        g_clear_pointer(&found, g_free);
    return found;
}

static gint str_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

GPtrArray *vcf_library_list_vms(VcfLibrary *lib)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    GDir *d = g_dir_open(lib->root, 0, NULL);
    if (d == NULL)
        return names;
    const char *e;
    while ((e = g_dir_read_name(d)) != NULL) {
        if (e[0] == '.' || strcmp(e, "clones") == 0)
            continue;
        g_autofree char *dir = g_build_filename(lib->root, e, NULL);
        struct stat st;
        if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
            continue;
        g_autofree char *vmx = find_vmx(dir);
        if (vmx != NULL)
            g_ptr_array_add(names, g_strdup(e));
    }
    g_dir_close(d);
    g_ptr_array_sort(names, str_cmp);
    return names;
}

VcfVm *vcf_library_load_vm(VcfLibrary *lib, const char *name, GError **error)
{
    if (name[0] == '.' || strchr(name, '/') != NULL || strcmp(name, "clones") == 0) {
        g_set_error(error, VCF_ERROR, ENOENT, "no VM named \"%s\" in the library", name);
        return NULL;
    }
    g_autofree char *dir = g_build_filename(lib->root, name, NULL);
    struct stat st;
    if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        g_set_error(error, VCF_ERROR, ENOENT, "no VM named \"%s\" in the library", name);
        return NULL;
    }
    return vcf_vm_load(dir, lib->root, error);
}

/* ---- one VM ------------------------------------------------------------- */

void vcf_vm_disk_free(gpointer p)
{
    VcfVmDisk *d = p;
    g_free(d->node);
    g_free(d->file_name);
    g_free(d->path);
    g_free(d);
}

static void snapshot_free(gpointer p)
{
    VcfSnapshot *s = p;
    g_free(s->uid);
    g_free(s->parent_uid);
    g_free(s->display_name);
    g_ptr_array_unref(s->disks);
    g_free(s);
}

void vcf_vm_free(VcfVm *vm)
{
    if (vm == NULL)
        return;
    g_free(vm->name);
    g_free(vm->dir);
    g_free(vm->vmx_path);
    g_clear_pointer(&vm->disks, g_ptr_array_unref);
    g_clear_pointer(&vm->snapshots, g_ptr_array_unref);
    g_free(vm->current_snapshot_uid);
    g_free(vm->power_reason);
    g_clear_pointer(&vm->warnings, g_ptr_array_unref);
    g_free(vm);
}

/* A disk named FILE_NAME by a config in DIR, resolved and confined. */
static VcfVmDisk *disk_new(const char *dir, const char *confine, const char *node,
                           const char *file_name, const char *config, GError **error)
{
    g_autofree char *joined = g_path_is_absolute(file_name)
        ? g_strdup(file_name) : g_build_filename(dir, file_name, NULL);
    g_autofree char *path = realpath(joined, NULL);
    if (path == NULL)
        path = g_canonicalize_filename(joined, NULL);
    if (!vcf_path_is_inside(path, confine)) {
        g_set_error(error, VCF_ERROR, EINVAL,
                    "%s: disk %s of %s lies outside the library", config, file_name, node);
        return NULL;
    }
    VcfVmDisk *d = g_new0(VcfVmDisk, 1);
    d->node = g_strdup(node);
    d->file_name = g_strdup(file_name);
    d->path = g_steal_pointer(&path);
    return d;
}

/* Whether NODE is a hard disk, in *HARD; FALSE with EINVAL when a key that
 * decides it could not be read (a guess either way would be wrong). */
static gboolean is_hard_disk(const VcfVmx *vmx, const char *node, gboolean *hard,
                             GError **error)
{
    g_autofree char *present = g_strconcat(node, ".present", NULL);
    g_autofree char *type_key = g_strconcat(node, ".deviceType", NULL);
    *hard = FALSE;
    if (!vcf_vmx_check_readable(vmx, present, error))
        return FALSE;
    if (!vcf_vmx_get_bool(vmx, present, FALSE))
        return TRUE;
    if (!vcf_vmx_check_readable(vmx, type_key, error))
        return FALSE;
    const char *type = vcf_vmx_get(vmx, type_key);
    *hard = type == NULL || g_ascii_strcasecmp(type, "disk") == 0
        || g_str_has_suffix(type, "hardDisk") || g_ascii_strcasecmp(type, "scsi-nonpassthru-rdm") == 0;
    return TRUE;
}

static gboolean load_disks(VcfVm *vm, const VcfVmx *vmx, const char *confine, GError **error)
{
    g_autoptr(GRegex) re = g_regex_new("^((scsi|sata|ide|nvme)[0-9]+:[0-9]+)\\.fileName$",
                                       G_REGEX_CASELESS, 0, NULL);
    g_auto(GStrv) keys = vcf_vmx_keys(vmx);
    for (char **k = keys; *k; k++) {
        g_autoptr(GMatchInfo) m = NULL;
        if (!g_regex_match(re, *k, 0, &m))
            continue;
        g_autofree char *fetched = g_match_info_fetch(m, 1);
        g_autofree char *node = g_ascii_strdown(fetched, -1);
        gboolean hard = FALSE;
        if (!is_hard_disk(vmx, node, &hard, error))
            return FALSE;
        if (!hard)
            continue;
        /* An unreadable name would silently drop the disk from the clone. */
        if (!vcf_vmx_check_readable(vmx, *k, error))
            return FALSE;
        const char *file = vcf_vmx_get(vmx, *k);
        if (file == NULL || !g_str_has_suffix(file, ".vmdk"))
            continue;
        VcfVmDisk *d = disk_new(vm->dir, confine, node, file, vm->vmx_path, error);
        if (d == NULL)
            return FALSE;
        g_ptr_array_add(vm->disks, d);
    }
    return TRUE;
}

/* Lines of VMX kept unread, for the caller to log. */
static void add_warnings(VcfVm *vm, const VcfVmx *vmx)
{
    for (const char *const *w = vcf_vmx_get_warnings(vmx); *w; w++)
        g_ptr_array_add(vm->warnings, g_strdup(*w));
}

static gboolean load_snapshots(VcfVm *vm, const VcfVmx *vmx, const char *confine,
                               GError **error)
{
    const char *vmsd_name = vcf_vmx_get(vmx, "vmsd.fileName");  /* rarely set */
    g_autofree char *stem = g_strndup(vm->vmx_path, strlen(vm->vmx_path) - 4);
    g_autofree char *vmsd = vmsd_name && !strchr(vmsd_name, '/')
        ? g_build_filename(vm->dir, vmsd_name, NULL) : g_strconcat(stem, ".vmsd", NULL);
    if (!g_file_test(vmsd, G_FILE_TEST_EXISTS))
        return TRUE;
    g_autoptr(VcfVmx) sd = vcf_vmx_load(vmsd, error);
    if (sd == NULL)
        return FALSE;
    add_warnings(vm, sd);
    vm->current_snapshot_uid = g_strdup(vcf_vmx_get(sd, "snapshot.current"));
    g_autoptr(GRegex) re = g_regex_new("^snapshot([0-9]+)\\.uid$", G_REGEX_CASELESS, 0, NULL);
    g_auto(GStrv) keys = vcf_vmx_keys(sd);
    for (char **k = keys; *k; k++) {
        g_autoptr(GMatchInfo) m = NULL;
        if (!g_regex_match(re, *k, 0, &m))
            continue;
        g_autofree char *n = g_match_info_fetch(m, 1);
        VcfSnapshot *s = g_new0(VcfSnapshot, 1);
        s->disks = g_ptr_array_new_with_free_func(vcf_vm_disk_free);
        g_ptr_array_add(vm->snapshots, s);
        s->uid = g_strdup(vcf_vmx_get(sd, *k));
        g_autofree char *kp = g_strdup_printf("snapshot%s.parent", n);
        g_autofree char *kn = g_strdup_printf("snapshot%s.displayName", n);
        g_autofree char *kd = g_strdup_printf("snapshot%s.numDisks", n);
        s->parent_uid = g_strdup(vcf_vmx_get(sd, kp));
        s->display_name = g_strdup(vcf_vmx_get(sd, kn) ? vcf_vmx_get(sd, kn) : s->uid);
        const char *nd = vcf_vmx_get(sd, kd);
        guint64 n_disks = nd ? g_ascii_strtoull(nd, NULL, 10) : 0;
        for (guint64 i = 0; i < MIN(n_disks, 256u); i++) {
            g_autofree char *kf = g_strdup_printf("snapshot%s.disk%" G_GUINT64_FORMAT ".fileName", n, i);
            g_autofree char *ko = g_strdup_printf("snapshot%s.disk%" G_GUINT64_FORMAT ".node", n, i);
            const char *f = vcf_vmx_get(sd, kf), *o = vcf_vmx_get(sd, ko);
            if (f == NULL || o == NULL) {
                g_set_error(error, VCF_ERROR, EINVAL, "%s: snapshot %s lists %" G_GUINT64_FORMAT
                            " disks but disk %" G_GUINT64_FORMAT " has no fileName or node",
                            vmsd, s->uid, n_disks, i);
                return FALSE;
            }
            VcfVmDisk *d = disk_new(vm->dir, confine, o, f, vmsd, error);
            if (d == NULL)
                return FALSE;
            g_ptr_array_add(s->disks, d);
        }
    }
    return TRUE;
}

static void load_power(VcfVm *vm, const VcfVmx *vmx)
{
    const char *state = vcf_vmx_get(vmx, "checkpoint.vmState");
    if (state != NULL && *state) {
        vm->power = VCF_POWER_SUSPENDED;
        vm->power_reason = g_strdup_printf("checkpoint.vmState = \"%s\" in %s", state, vm->vmx_path);
    }
    GDir *d = g_dir_open(vm->dir, 0, NULL);
    const char *e;
    while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(vm->dir, e, NULL);
        if (g_str_has_suffix(e, ".lck") && g_file_test(p, G_FILE_TEST_IS_DIR)) {
            vm->power = VCF_POWER_ON;
            g_free(vm->power_reason);
            vm->power_reason = g_strdup_printf("lock folder %s exists", p);
            break;
        }
        if (vm->power == VCF_POWER_OFF && g_str_has_suffix(e, ".vmss")) {
            vm->power = VCF_POWER_SUSPENDED;
            vm->power_reason = g_strdup_printf("suspend file %s exists", p);
        }
    }
    if (d != NULL)
        g_dir_close(d);
}

VcfVm *vcf_vm_load(const char *dir, const char *confine, GError **error)
{
    g_autoptr(VcfVm) vm = g_new0(VcfVm, 1);
    vm->dir = g_strdup(dir);
    vm->name = g_path_get_basename(dir);
    vm->vmx_path = find_vmx(dir);
    vm->disks = g_ptr_array_new_with_free_func(vcf_vm_disk_free);
    vm->snapshots = g_ptr_array_new_with_free_func(snapshot_free);
    if (vm->vmx_path == NULL) {
        g_set_error(error, VCF_ERROR, ENOENT, "%s: no .vmx file (or more than one)", dir);
        return NULL;
    }
    vm->warnings = g_ptr_array_new_null_terminated(0, g_free, TRUE);
    g_autoptr(VcfVmx) vmx = vcf_vmx_load(vm->vmx_path, error);
    if (vmx != NULL)
        add_warnings(vm, vmx);
    if (vmx == NULL || !load_disks(vm, vmx, confine, error)
        || !load_snapshots(vm, vmx, confine, error))
        return NULL;
    load_power(vm, vmx);
    return g_steal_pointer(&vm);
}

const VcfSnapshot *vcf_vm_find_snapshot(const VcfVm *vm, const char *display_name)
{
    for (guint i = 0; i < vm->snapshots->len; i++) {
        const VcfSnapshot *s = g_ptr_array_index(vm->snapshots, i);
        if (g_strcmp0(s->display_name, display_name) == 0)
            return s;
    }
    return NULL;
}

guint vcf_vm_count_snapshots_named(const VcfVm *vm, const char *display_name)
{
    guint n = 0;
    for (guint i = 0; i < vm->snapshots->len; i++) {
        const VcfSnapshot *s = g_ptr_array_index(vm->snapshots, i);
        n += g_strcmp0(s->display_name, display_name) == 0;
    }
    return n;
}
