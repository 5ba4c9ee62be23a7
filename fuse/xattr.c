/* Extended attributes: what a program reads of a clone (user.vmclonefs.*,
 * read-only but for "type", whose "full" starts the copy) and of a source
 * folder (the reason for its last refusal, and "type": what mkdir there
 * makes, which can be set); the library's own files and folders pass
 * theirs through. */
#include "config.h"
#include "fs-internal.h"
#include "vcf-error.h"

#include <errno.h>
#include <string.h>
#include <sys/xattr.h>

#define PREFIX "user.vmclonefs."

static const char *const CLONE_ATTRS[] = {
    "source", "snapshot", "type", "state", "progress", "rate", "error", "store_bytes", NULL
};

/* The value of attribute ATTR (without the prefix) of node N, or NULL
 * (*ERR: ENODATA, or ENOENT for a clone gone). m->lock held. */
static char *value_locked(VcfMount *m, const Node *n, const char *attr, int *err)
{
    *err = ENODATA;
    if (n->kind == NODE_SOURCE) {
        if (g_str_equal(attr, "type"))
            return g_strdup(source_full_locked(m, n->source) ? "full" : "linked");
        if (!g_str_equal(attr, "error"))
            return NULL;
        const char *why = g_hash_table_lookup(m->refusals, n->source);
        return g_strdup(why ? why : "");
    }
    if (n->kind != NODE_CLONE || !g_strv_contains(CLONE_ATTRS, attr))
        return NULL;
    g_autoptr(VcfCloneInfo) owned = NULL;
    const VcfCloneInfo *info = clone_info_locked(m, n->clone, &owned);
    if (info == NULL) {
        *err = ENOENT;
        return NULL;
    }
    if (g_str_equal(attr, "source"))
        return g_strdup(info->source);
    if (g_str_equal(attr, "snapshot"))
        return g_strdup(info->base_snapshot ? info->base_snapshot : "");
    if (g_str_equal(attr, "type"))
        return g_strdup(g_strcmp0(info->type, "full") == 0 ? "full" : "linked");
    if (g_str_equal(attr, "store_bytes"))
        return g_strdup_printf("%" G_GUINT64_FORMAT, clone_store_bytes(info->dir));
    VcfCopyStatus s = { 0 };
    copy_status_locked(m, info, &s);
    char *v = g_str_equal(attr, "state") ? g_strdup(s.state)
        : g_str_equal(attr, "progress") ? g_strdup_printf("%" G_GUINT64_FORMAT " %"
                                                          G_GUINT64_FORMAT, s.done, s.total)
        : g_str_equal(attr, "rate") ? g_strdup_printf("%" G_GUINT64_FORMAT, s.rate)
        : g_strdup(s.error ? s.error : "");
    vcf_copy_status_clear(&s);
    return v;
}

static void reply_value(fuse_req_t req, const char *v, gsize len, size_t size)
{
    /* The exact length: rsync -X checks it against what it reads. */
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (size < len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, v, len);
}

/* The real file behind INO when it is one of the library's own, passed
 * through (its xattrs are its own), else NULL. */
static char *passed_path(VcfMount *m, fuse_ino_t ino)
{
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    char *real = n && (n->kind == NODE_PASS || n->kind == NODE_ROOT) ? g_strdup(n->real) : NULL;
    g_mutex_unlock(&m->lock);
    return real;
}

/* Replies with what a l*xattr call gave: R bytes of BUF, or errno. */
static void reply_passed(fuse_req_t req, ssize_t r, const char *buf, size_t size)
{
    if (r < 0)
        fuse_reply_err(req, errno);
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)r);
    else
        fuse_reply_buf(req, buf, (size_t)r);
}

void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *real = passed_path(m, ino);
    if (real != NULL) {
        g_autofree char *buf = size ? g_malloc(size) : NULL;
        reply_passed(req, lgetxattr(real, name, buf, size), buf, size);
        return;
    }
    if (!g_str_has_prefix(name, PREFIX)) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    int err = ENOENT;
    g_autofree char *v = n ? value_locked(m, n, name + strlen(PREFIX), &err) : NULL;
    g_mutex_unlock(&m->lock);
    if (v == NULL)
        fuse_reply_err(req, err);
    else
        reply_value(req, v, strlen(v), size);
}

void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *real = passed_path(m, ino);
    if (real != NULL) {
        g_autofree char *buf = size ? g_malloc(size) : NULL;
        reply_passed(req, llistxattr(real, buf, size), buf, size);
        return;
    }
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    NodeKind kind = n ? n->kind : NODE_GONE;
    g_mutex_unlock(&m->lock);
    if (n == NULL) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    GString *list = g_string_new(NULL);
    if (kind == NODE_SOURCE) {
        g_string_append_len(list, PREFIX "type", sizeof PREFIX "type");
        g_string_append_len(list, PREFIX "error", sizeof PREFIX "error");
    }
    for (guint i = 0; kind == NODE_CLONE && CLONE_ATTRS[i] != NULL; i++) {
        g_string_append(list, PREFIX);
        g_string_append_len(list, CLONE_ATTRS[i], strlen(CLONE_ATTRS[i]) + 1);
    }
    reply_value(req, list->str, list->len, size);
    g_string_free(list, TRUE);
}

/* Whether VALUE is a type; else *WHY names WHAT ("clone web1"). */
static gboolean is_type(const char *what, const char *value, char **why)
{
    if (g_str_equal(value, "full") || g_str_equal(value, "linked"))
        return TRUE;
    *why = g_strdup_printf("%s: type \"%s\": the type is \"full\" or \"linked\"", what, value);
    return FALSE;
}

/* setfattr -n user.vmclonefs.type -v full clones/SOURCE: what mkdir there
 * makes from now on, until unmount (-o clone_type for the others). */
static int set_source_type(VcfMount *m, const char *source, const char *value, char **why)
{
    g_autofree char *what = g_strdup_printf("clones/%s", source);
    if (!is_type(what, value, why))
        return EINVAL;
    g_mutex_lock(&m->lock);
    g_hash_table_insert(m->source_types, g_strdup(source),
                        (gpointer)(g_str_equal(value, "full") ? "full" : "linked"));
    g_mutex_unlock(&m->lock);
    return 0;
}

/* setfattr -n user.vmclonefs.type -v full CLONE: the copy starts. */
static int set_type(VcfMount *m, const char *clone, const char *value, char **why)
{
    g_autofree char *what = g_strdup_printf("clone %s", clone);
    if (!is_type(what, value, why))
        return EINVAL;
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(m->lib, clone, NULL);
    if (info == NULL)
        return ENOENT;
    gboolean is_full = g_strcmp0(info->type, "full") == 0;
    if (g_str_equal(value, "linked")) {
        if (!is_full)
            return 0;
        *why = g_strdup_printf("clone %s is a full clone; it cannot become linked again "
                               "(make a linked clone of its source instead)", clone);
        return EINVAL;
    }
    if (info->disks_gone) {
        *why = g_strdup_printf("clone %s has no disks to copy", clone);
        return EINVAL;
    }
    if (is_full && g_strcmp0(info->state, "full") == 0)
        return 0;   /* done already */
    GError *error = NULL;
    if (!is_full && !full_allowed(m, info->source, &error)) {
        *why = g_strdup_printf("setfattr type full on clone %s: %s", clone, error->message);
        g_error_free(error);
        return EBUSY;
    }
    OpenClone *oc = open_clone_now(m, clone, &error);
    if (oc != NULL) {
        /* A broken copy starts again from its cursor, with a clean state;
         * one that runs goes on (copy_start does nothing then). */
        copy_stop_if_done(m, oc);
        gboolean was = oc->copier != NULL;
        if (copy_start(m, clone, oc, &error)) {
            if (!was)
                g_message("clone %s: full copy started", clone);
            return 0;
        }
    }
    *why = g_strdup_printf("setfattr type full on clone %s: %s", clone, error->message);
    int e = vcf_error_errno(error);
    g_error_free(error);
    return e;
}

void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                 size_t size, int flags)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *real = passed_path(m, ino);
    if (real != NULL) {
        /* An attribute changes no byte of a disk: a parent's may change. */
        fuse_reply_err(req, lsetxattr(real, name, value, size, flags) < 0 ? errno : 0);
        return;
    }
    g_mutex_lock(&m->ns_lock);
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    NodeKind kind = n ? n->kind : NODE_GONE;
    g_autofree char *clone = n && n->kind == NODE_CLONE ? g_strdup(n->clone) : NULL;
    g_autofree char *source = n && (n->kind == NODE_CLONE || n->kind == NODE_SOURCE)
        ? g_strdup(n->source) : NULL;
    g_mutex_unlock(&m->lock);
    int err = 0;
    g_autofree char *why = NULL;
    g_autofree char *v = g_strndup(value, size);
    if (n == NULL) {
        err = ENOENT;
    } else if (!g_str_has_prefix(name, PREFIX) || (kind != NODE_CLONE && kind != NODE_SOURCE)) {
        err = ENOTSUP;
    } else if (!g_str_equal(name, PREFIX "type")) {
        err = EPERM;
        why = g_strdup_printf("setfattr %s: read-only; only %stype of a clone or source folder "
                              "can be set", name, PREFIX);
    } else if (flags & XATTR_CREATE) {
        err = EEXIST;
    } else if (kind == NODE_SOURCE) {
        err = set_source_type(m, source, g_strchomp(v), &why);
    } else {
        err = set_type(m, clone, g_strchomp(v), &why);
        if (err != 0 && source != NULL)
            note_refusal(m, source, why ? why : g_strerror(err));
    }
    g_mutex_unlock(&m->ns_lock);
    reply_errno(req, err, why);
}

void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    VcfMount *m = VCF_MOUNT(req);
    g_autofree char *real = passed_path(m, ino);
    if (real != NULL) {
        fuse_reply_err(req, lremovexattr(real, name) < 0 ? errno : 0);
        return;
    }
    /* A source's type goes back to -o clone_type. */
    g_mutex_lock(&m->lock);
    Node *n = node_get(&m->nodes, ino);
    gboolean source_type = n != NULL && n->kind == NODE_SOURCE
        && g_str_equal(name, PREFIX "type");
    if (source_type)
        g_hash_table_remove(m->source_types, n->source);
    g_mutex_unlock(&m->lock);
    fuse_reply_err(req, source_type ? 0 : g_str_has_prefix(name, PREFIX) ? EPERM : ENOTSUP);
}
