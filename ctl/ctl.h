/* vmclonefs-ctl: what its commands share. */
#pragma once
#include <glib.h>

/* A clone as the mount shows it (its folder's xattrs). */
typedef struct {
    char *name;
    char *folder;      /* MOUNT/clones/SOURCE/NAME */
    char *source;
    char *type;        /* "linked" or "full" */
    char *state;       /* "linked", "copying", "paused", "full", "broken" */
    char *error;
    guint64 done, total, rate, store_bytes;
} CtlClone;

void ctl_clone_free(CtlClone *clone);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CtlClone, ctl_clone_free)

/* GIVEN if it is a vmclonefs mount; else the only one mounted, or the one
 * the current folder is in. */
char *ctl_find_mount(const char *given, GError **error);
/* user.vmclonefs.NAME of PATH, or NULL (errno says why). */
char *ctl_xattr(const char *path, const char *name);
/* Every clone of the mount, sorted by name. */
GPtrArray *ctl_list_clones(const char *mnt, GError **error);
CtlClone *ctl_find_clone(const char *mnt, const char *name, GError **error);
