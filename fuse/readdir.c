/* Listings: made whole at opendir (a snapshot the kernel pages through),
 * with m->lock taken only to read the mount's own tables, never across
 * the folder reads and .vmx loads a listing needs. */
#include "config.h"
#include "fs-internal.h"
#include "vcf-error.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

/* A readdir entry's number before lookup gives the real one; libc skips 0. */
#define UNKNOWN_INO 0xffffffffu

typedef struct {
    char *name;
    mode_t type;
} DirEntry;

static void dir_entry_free(gpointer p)
{
    DirEntry *d = p;
    g_free(d->name);
    g_free(d);
}

static void add_entry(GPtrArray *list, const char *name, mode_t type)
{
    DirEntry *d = g_new(DirEntry, 1);
    d->name = g_strdup(name);
    d->type = type;
    g_ptr_array_add(list, d);
}

/* The real folder's entries, less what the mount hides. INFO is the
 * clone's, for a clone folder. */
static gboolean list_real(GPtrArray *list, const Node *n, const VcfCloneInfo *info,
                          GError **error)
{
    DIR *d = opendir(n->real);
    if (d == NULL) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e, "listing %s (%s): %s", n->path[0] ? n->path : "/",
                    n->real, g_strerror(e));
        return FALSE;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (g_str_equal(name, ".") || g_str_equal(name, ".."))
            continue;
        if (n->kind == NODE_ROOT && (g_str_equal(name, STATE_DIR) || g_str_equal(name, CLONES_DIR)))
            continue;
        /* Store deltas are shown as flat descriptors, added after. */
        if (n->kind == NODE_CLONE && info != NULL && vcf_clone_hides(info, name))
            continue;
        add_entry(list, name, (mode_t)DTTOIF(e->d_type));
    }
    closedir(d);
    return TRUE;
}

static void list_sources(VcfMount *m, GPtrArray *list)
{
    g_autoptr(GPtrArray) vms = vcf_library_list_vms(m->lib);
    for (guint i = 0; i < vms->len; i++) {
        const char *name = g_ptr_array_index(vms, i);
        /* Listed only if lookup will find it: a VM whose .vmx does not
         * load is left out (its lookup logs why), like a folder with none. */
        g_autoptr(VcfVm) vm = vcf_library_load_vm(m->lib, name, NULL);
        if (vm != NULL)
            add_entry(list, name, S_IFDIR);
        for (guint j = 0; vm != NULL && j < vm->snapshots->len; j++) {
            const VcfSnapshot *s = g_ptr_array_index(vm->snapshots, j);
            g_autofree char *sn = g_strdup_printf("%s@%s", name, s->display_name);
            /* Snapshots that share a name are one folder (whose mkdir
             * explains why it cannot choose). */
            if (strchr(s->display_name, '/') == NULL && strlen(sn) < 255
                && vcf_vm_find_snapshot(vm, s->display_name) == s)
                add_entry(list, sn, S_IFDIR);
        }
    }
}

/* Clones are sources too, listed after the VMs. */
static void list_clone_sources(VcfMount *m, GPtrArray *list)
{
    g_autoptr(GPtrArray) names = vcf_clone_list(m->lib);
    g_autoptr(GPtrArray) vms = vcf_library_list_vms(m->lib);
    for (guint i = 0; i < names->len; i++) {
        const char *name = g_ptr_array_index(names, i);
        gboolean shadowed = FALSE;
        for (guint j = 0; j < vms->len && !shadowed; j++)
            shadowed = g_str_equal(name, g_ptr_array_index(vms, j));
        if (!shadowed)
            add_entry(list, name, S_IFDIR);
    }
}

/* Sources gone, whose full clones stay. */
static void list_orphan_sources(VcfMount *m, GPtrArray *list)
{
    g_autoptr(GPtrArray) orphans = vcf_clone_orphan_sources(m->lib);
    for (guint i = 0; i < orphans->len; i++)
        add_entry(list, orphans->pdata[i], S_IFDIR);
}

static void list_clones_of(VcfMount *m, GPtrArray *list, const char *source)
{
    g_autoptr(GPtrArray) names = vcf_clone_list(m->lib);
    for (guint i = 0; i < names->len; i++) {
        g_autoptr(VcfCloneInfo) owned = NULL;
        g_mutex_lock(&m->lock);
        const VcfCloneInfo *info = clone_info_locked(m, g_ptr_array_index(names, i), &owned);
        if (info != NULL && g_strcmp0(info->source, source) == 0)
            add_entry(list, info->name, S_IFDIR);
        g_mutex_unlock(&m->lock);
    }
}

static void list_disks(GPtrArray *list, const VcfCloneInfo *info)
{
    for (guint i = 0; info != NULL && i < info->stems->len; i++) {
        const char *stem = g_ptr_array_index(info->stems, i);
        g_autofree char *desc = g_strconcat(stem, ".vmdk", NULL);
        g_autofree char *flat = g_strconcat(stem, "-flat.vmdk", NULL);
        guint index;
        gboolean is_flat;
        if (vcf_clone_disk_name(info, desc, &index, &is_flat))
            add_entry(list, desc, S_IFREG);
        if (vcf_clone_disk_name(info, flat, &index, &is_flat))
            add_entry(list, flat, S_IFREG);
    }
}

/* N is a copy of the node, taken under m->lock. */
static GPtrArray *list_node(VcfMount *m, const Node *n, GError **error)
{
    g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func(dir_entry_free);
    add_entry(list, ".", S_IFDIR);
    add_entry(list, "..", S_IFDIR);
    switch (n->kind) {
    case NODE_ROOT:
        add_entry(list, CLONES_DIR, S_IFDIR);
        if (!list_real(list, n, NULL, error))
            return NULL;
        break;
    case NODE_PASS:
        if (!list_real(list, n, NULL, error))
            return NULL;
        break;
    case NODE_CLONES:
        list_sources(m, list);
        list_clone_sources(m, list);
        list_orphan_sources(m, list);
        break;
    case NODE_SOURCE:
        list_clones_of(m, list, n->source);
        break;
    case NODE_CLONE: {
        /* Read afresh, not the open clone's copy: that may change while
         * the folder is read. */
        g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(m->lib, n->clone, NULL);
        if (!list_real(list, n, info, error))
            return NULL;
        list_disks(list, info);
        break;
    }
    default:
        break;
    }
    return g_steal_pointer(&list);
}

void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VcfMount *m = VCF_MOUNT(req);
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    Node copy = { 0 };
    if (n != NULL) {
        copy.kind = n->kind;
        copy.path = g_strdup(n->path);
        copy.real = g_strdup(n->real);
        copy.clone = g_strdup(n->clone);
        copy.source = g_strdup(n->source);
    }
    g_mutex_unlock(&m->lock);
    if (n == NULL) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    GError *error = NULL;
    GPtrArray *list = list_node(m, &copy, &error);
    node_strings_free(&copy);
    if (list == NULL) {
        reply_gerror(req, error);   /* never an empty folder that is not */
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)list;
    g_mutex_lock(&m->lock);
    g_hash_table_add(m->open_dirs, list);
    g_mutex_unlock(&m->lock);
    if (fuse_reply_open(req, fi) == -ENOENT) {
        g_mutex_lock(&m->lock);
        g_hash_table_remove(m->open_dirs, list);
        g_mutex_unlock(&m->lock);
    }
}

void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info *fi)
{
    GPtrArray *list = (GPtrArray *)(uintptr_t)fi->fh;
    g_autofree char *buf = g_malloc(size);
    size_t used = 0;
    for (guint i = off; i < list->len; i++) {
        DirEntry *d = g_ptr_array_index(list, i);
        /* The real number comes with lookup; a non-zero one keeps libc happy. */
        struct stat st = { .st_ino = UNKNOWN_INO, .st_mode = d->type };
        size_t need = fuse_add_direntry(req, buf + used, size - used, d->name, &st, i + 1);
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
}

void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    VcfMount *m = VCF_MOUNT(req);
    g_mutex_lock(&m->lock);
    g_hash_table_remove(m->open_dirs, (gpointer)(uintptr_t)fi->fh);   /* frees it */
    g_mutex_unlock(&m->lock);
    fuse_reply_err(req, 0);
}
