/* The mount's inodes.
 *
 * ID spaces: the kernel names files by fuse_ino_t; we hand out our own
 * numbers (1 is the root), one per Node, and keep a Node while the kernel
 * holds a lookup count on it (lookup adds, forget subtracts). A Node is
 * also found by its mount path ("" for the root, "clones/Ubuntu/web1/
 * web1-flat.vmdk"), which is how a second lookup of the same file gets the
 * same number. Backing files are named by absolute paths in the library;
 * a clone's disks by the clone's name and the disk's index in it.
 *
 * Every field of every Node is protected by VcfMount.lock. */
#pragma once
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <glib.h>

typedef enum {
    NODE_ROOT,      /* the mount's top: library folders and clones/ */
    NODE_CLONES,    /* clones/ */
    NODE_SOURCE,    /* clones/SRC: a VM or VM@SNAPSHOT */
    NODE_CLONE,     /* clones/SRC/NAME: the clone's folder (its store) */
    NODE_DESC,      /* clones/SRC/NAME/STEM.vmdk: flat descriptor, generated */
    NODE_FLAT,      /* clones/SRC/NAME/STEM-flat.vmdk: the served disk */
    NODE_STATUS,    /* clones/SRC/NAME/.vmclonefs-status: generated, read-only */
    NODE_PASS,      /* anything else: a file or folder passed through */
    NODE_GONE,      /* what a deleted or renamed clone left in the kernel's
                     * cache: ENOENT, never another clone's file of that name */
} NodeKind;

typedef struct {
    fuse_ino_t ino;
    NodeKind kind;
    char *path;       /* mount path, key of the path table */
    char *real;       /* NODE_PASS, NODE_CLONE, NODE_ROOT: the backing path */
    char *clone;      /* NODE_CLONE, NODE_DESC, NODE_FLAT: the clone's name */
    char *source;     /* NODE_SOURCE, NODE_CLONE: "VM" or "VM@SNAPSHOT" */
    char *stem;       /* NODE_DESC, NODE_FLAT: "NAME" or "NAME_1" */
    guint disk;       /* NODE_DESC, NODE_FLAT: index in the clone */
    guint64 nlookup;
    /* NODE_FLAT, what the kernel caches of it (flat-cache.c): handles open
     * with its page cache and without (FOPEN_DIRECT_IO), and whether one
     * without was opened since the last cached open. */
    guint cached_opens;
    guint direct_opens;
    gboolean direct_written;
} Node;

typedef struct {
    GHashTable *by_ino;   /* fuse_ino_t -> Node*, owns */
    GHashTable *by_path;  /* mount path -> Node* */
    fuse_ino_t next_ino;
} NodeTable;

void node_table_init(NodeTable *t, const char *root_real);
void node_table_clear(NodeTable *t);
Node *node_get(NodeTable *t, fuse_ino_t ino);
/* The node for TEMPLATE's path, made from TEMPLATE (whose strings it
 * takes) if new; adds one lookup either way. */
Node *node_remember(NodeTable *t, Node *template);
/* Drops N lookups; frees the node when none are left. */
void node_forget(NodeTable *t, fuse_ino_t ino, guint64 n);
/* After a rename: moves FROM (and everything under it) to TO, with the
 * backing paths changed the same way. */
void node_move(NodeTable *t, const char *from, const char *to,
               const char *real_from, const char *real_to);
/* Turns the nodes under PATH (and PATH itself if SELF; only disk nodes if
 * DISKS_ONLY) into NODE_GONE, taken off their paths. */
void node_mark_gone(NodeTable *t, const char *path, gboolean self, gboolean disks_only);
/* The same for a renamed clone folder, which also takes clone name CLONE;
 * its disk nodes (named after the old name) are dropped from the paths. */
void node_move_clone(NodeTable *t, const char *from, const char *to,
                     const char *real_from, const char *real_to, const char *clone);
char *node_child_path(const Node *parent, const char *name);
void node_strings_free(Node *n);
