/* Renaming a clone: its store folder, its disk files, its .vmx and its
 * displayName, in one crash-safe step.
 *
 * Everything the new name needs is made inside the old folder first (hard
 * links of the deltas and sums, NEW.vmx, clone.ini.next); renaming the
 * folder is the commit point; then the old names go. After a crash the
 * folder's name says which side of the commit it was on, and
 * vcf_clone_rename_recover rolls the rename back or forward, so the clone
 * has the old name or the new, never both or neither. */
#pragma once
#include <glib.h>
#include "library.h"

/* Renames clone FROM to TO (a new name: EINVAL if bad, EEXIST if taken).
 * The clone's disks must be closed. FALSE means nothing changed; TRUE
 * with *WARNING means renamed, with tidying left for the next mount. */
gboolean vcf_clone_rename(VcfLibrary *lib, const char *from, const char *to, char **warning,
                          GError **error);
/* Finishes or undoes an interrupted rename of store folder NAME; sets
 * *FIXED if there was one. */
gboolean vcf_clone_rename_recover(VcfLibrary *lib, const char *name, gboolean *fixed,
                                  GError **error);
