#include "config.h"
#include "inode.h"

#include <stdlib.h>
#include <string.h>

void node_strings_free(Node *n)
{
    g_free(n->path);
    g_free(n->real);
    g_free(n->clone);
    g_free(n->source);
    g_free(n->stem);
}

static void node_free(gpointer p)
{
    node_strings_free(p);
    g_free(p);
}

void node_table_init(NodeTable *t, const char *root_real)
{
    t->by_ino = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, node_free);
    t->by_path = g_hash_table_new(g_str_hash, g_str_equal);
    Node *root = g_new0(Node, 1);
    root->ino = FUSE_ROOT_ID;
    root->kind = NODE_ROOT;
    root->path = g_strdup("");
    root->real = g_strdup(root_real);
    root->nlookup = 1;    /* the kernel never forgets the root */
    g_hash_table_insert(t->by_ino, &root->ino, root);
    g_hash_table_insert(t->by_path, root->path, root);
    t->next_ino = FUSE_ROOT_ID + 1;
}

void node_table_clear(NodeTable *t)
{
    g_hash_table_destroy(t->by_path);
    g_hash_table_destroy(t->by_ino);
}

Node *node_get(NodeTable *t, fuse_ino_t ino)
{
    guint64 key = ino;
    return g_hash_table_lookup(t->by_ino, &key);
}

Node *node_remember(NodeTable *t, Node *tmpl)
{
    Node *n = g_hash_table_lookup(t->by_path, tmpl->path);
    if (n != NULL && (n->kind != tmpl->kind || g_strcmp0(n->real, tmpl->real) != 0)) {
        /* The name now means something else (a clone replaced, a file
         * recreated as a folder): the old node lives on under no path. */
        g_hash_table_remove(t->by_path, n->path);
        n = NULL;
    }
    if (n != NULL) {
        node_strings_free(tmpl);
    } else {
        n = g_new0(Node, 1);
        *n = *tmpl;
        n->ino = t->next_ino++;
        n->nlookup = 0;
        g_hash_table_insert(t->by_ino, &n->ino, n);
        g_hash_table_insert(t->by_path, n->path, n);
    }
    memset(tmpl, 0, sizeof *tmpl);
    n->nlookup++;
    return n;
}

void node_forget(NodeTable *t, fuse_ino_t ino, guint64 count)
{
    Node *n = node_get(t, ino);
    if (n == NULL || ino == FUSE_ROOT_ID)
        return;
    if (count > n->nlookup)
        abort();    /* the kernel and we disagree: nothing is safe after this */
    n->nlookup -= count;
    if (n->nlookup > 0)
        return;
    if (g_hash_table_lookup(t->by_path, n->path) == n)
        g_hash_table_remove(t->by_path, n->path);
    g_hash_table_remove(t->by_ino, &n->ino);
}

static char *replace_prefix(const char *s, const char *from, const char *to)
{
    return g_strconcat(to, s + strlen(from), NULL);
}

static gboolean under(const char *s, const char *prefix)
{
    gsize n = strlen(prefix);
    return strncmp(s, prefix, n) == 0 && (s[n] == '\0' || s[n] == '/');
}

void node_move(NodeTable *t, const char *from, const char *to,
               const char *real_from, const char *real_to)
{
    /* Whatever was at TO is replaced by the rename. */
    Node *old = g_hash_table_lookup(t->by_path, to);
    if (old != NULL)
        g_hash_table_remove(t->by_path, to);
    GHashTableIter it;
    gpointer v;
    GPtrArray *moved = g_ptr_array_new();
    g_hash_table_iter_init(&it, t->by_ino);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        Node *n = v;
        if (!under(n->path, from) || g_hash_table_lookup(t->by_path, n->path) != n)
            continue;
        g_hash_table_remove(t->by_path, n->path);
        g_ptr_array_add(moved, n);
    }
    for (guint i = 0; i < moved->len; i++) {
        Node *n = g_ptr_array_index(moved, i);
        char *p = replace_prefix(n->path, from, to);
        g_free(n->path);
        n->path = p;
        if (n->real != NULL && real_from != NULL && under(n->real, real_from)) {
            char *r = replace_prefix(n->real, real_from, real_to);
            g_free(n->real);
            n->real = r;
        }
        g_hash_table_insert(t->by_path, n->path, n);
    }
    g_ptr_array_unref(moved);
}

void node_mark_gone(NodeTable *t, const char *path, gboolean self, gboolean disks_only)
{
    gsize n_len = strlen(path);
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, t->by_ino);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        Node *n = v;
        if (n->ino == FUSE_ROOT_ID || !under(n->path, path) || (!self && n->path[n_len] == '\0'))
            continue;
        if (disks_only && n->kind != NODE_DESC && n->kind != NODE_FLAT)
            continue;
        if (g_hash_table_lookup(t->by_path, n->path) == n)
            g_hash_table_remove(t->by_path, n->path);
        n->kind = NODE_GONE;
    }
}

void node_move_clone(NodeTable *t, const char *from, const char *to,
                     const char *real_from, const char *real_to, const char *clone)
{
    /* Disk nodes under it name the old stems: they are gone (what the
     * kernel still holds of them says ENOENT, and cannot reach a new clone
     * of the old name); a lookup of the new names makes new ones. */
    node_mark_gone(t, from, FALSE, TRUE);
    node_move(t, from, to, real_from, real_to);
    Node *c = g_hash_table_lookup(t->by_path, to);
    if (c != NULL && c->kind == NODE_CLONE) {
        g_free(c->clone);
        c->clone = g_strdup(clone);
    }
}

char *node_child_path(const Node *parent, const char *name)
{
    return parent->path[0] ? g_strconcat(parent->path, "/", name, NULL) : g_strdup(name);
}
