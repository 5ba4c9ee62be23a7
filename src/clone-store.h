/* A clone's stored state: LIBRARY/.vmclonefs/clones/NAME/ and what its
 * clone.ini says; listing, deleting and the names a clone folder reserves.
 *
 * A clone folder shows NAME.vmx, and NAME.vmdk and NAME-flat.vmdk per disk.
 * The two disk names are like two hard links of the clone's disks: `rm`
 * removes a name for good (an empty marker file ".vcf-unlinked-NAME"
 * remembers it, since a marker needs no data block on a full disk), and
 * when the last disk name of the clone goes, its stored disks go with it.
 * That is how `rm -r` of a clone folder deletes the clone. */
#pragma once
#include <glib.h>
#include "library.h"

#define VCF_CLONE_INI "clone.ini"
#define VCF_CLONE_INI_NEXT "clone.ini.next"
#define VCF_UNLINKED_PREFIX ".vcf-unlinked-"
/* A full copy's cursor, rewritten in place: the folder does not change
 * with every step (tar would say it "changed as we read it"). */
#define VCF_COPY_CURSOR ".vcf-copy-cursor"

/* What clone.ini says about a clone. */
typedef struct {
    char *name;
    char *source;          /* "Ubuntu" or "Ubuntu@Snapshot name" */
    char *vm;              /* the VM folder the chain starts in */
    char *base_snapshot;   /* display name of the snapshot the clone is on */
    char *base_uid;        /* its uid in the VM's .vmsd; NULL if not recorded */
    char *type;            /* "linked" or "full" */
    char *state;           /* "ready" (linked), "copying", "paused", "full",
                            * "broken", "no-disks" */
    char *error;           /* why it is paused or broken; NULL otherwise */
    char *parent_changed;  /* why its disks answer EIO for good: a file below it changed
                            * outside the mount (vcf_disk_check_parent); NULL otherwise */
    guint copy_disk;       /* the full copy's cursor, durable: disks before */
    guint64 copy_unit;     /* copy_disk are copied, and its units before this */
    guint64 copy_total;    /* a full clone: the bytes of data its copy passed */
    char *parent_clone;    /* the clone it was made from (its source), or NULL */
    char *dir;             /* its store folder */
    GPtrArray *stems;      /* char*: "NAME", "NAME_1", ... one per disk */
    GHashTable *unlinked;  /* shown disk file names removed with rm */
    gboolean disks_gone;   /* every disk name removed: the clone serves no disk */
    GPtrArray *old_stems;  /* a committed rename not yet tidied: the old stems,
                            * whose files stay hidden until they go */
} VcfCloneInfo;

VcfCloneInfo *vcf_clone_info_load(VcfLibrary *lib, const char *name, GError **error);
/* Sets keys of clone NAME's clone.ini (pairs of key and value, NULL-ended;
 * a NULL value removes the key), rewritten atomically and durably. */
gboolean vcf_clone_info_update(VcfLibrary *lib, const char *name, GError **error,
                               const char *key, ...) G_GNUC_NULL_TERMINATED;
/* Makes the full copy's cursor of clone NAME durable: disks before DISK
 * are copied, and its units before UNIT. A torn record reads as none. */
gboolean vcf_clone_save_cursor(VcfLibrary *lib, const char *name, guint disk, guint64 unit,
                               GError **error);
/* A full clone whose copy is done: it reads nothing of its source. */
gboolean vcf_clone_info_is_standalone(const VcfCloneInfo *info);
void vcf_clone_info_free(VcfCloneInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfCloneInfo, vcf_clone_info_free)

/* Names of all clones, sorted. */
GPtrArray *vcf_clone_list(VcfLibrary *lib);
/* Sources clones were made from that are neither a VM nor a snapshot of
 * one nor a clone any more (full clones outlive them): sorted names. */
GPtrArray *vcf_clone_orphan_sources(VcfLibrary *lib);
/* TRUE if clone NAME exists (its folder holds a clone.ini). */
gboolean vcf_clone_exists(VcfLibrary *lib, const char *name);
/* The clones made from clone NAME, which sit on its frozen layers or name
 * it as their source: sorted names, NULL if none. A clone whose clone.ini
 * cannot be read counts when NAME has frozen layers: it may sit on them. */
GPtrArray *vcf_clone_dependents(VcfLibrary *lib, const char *name);
/* FALSE with EBUSY naming them, for WHAT ("rmdir clones/Ubuntu/web1"),
 * when clone NAME has dependents. */
gboolean vcf_clone_check_no_dependents(VcfLibrary *lib, const char *name, const char *what,
                                       GError **error);

/* EINVAL for a bad name, EEXIST if a clone or library folder has it. */
gboolean vcf_clone_check_new_name(VcfLibrary *lib, const char *name, GError **error);

/* Files in a clone's store folder that the mount never shows. */
gboolean vcf_clone_reserved_name(const char *name);
/* The disk (index into info->stems) that shown name NAME belongs to:
 * TRUE for "STEM.vmdk" and "STEM-flat.vmdk" not removed with rm. */
gboolean vcf_clone_disk_name(const VcfCloneInfo *info, const char *name, guint *index,
                             gboolean *is_flat);
/* TRUE for names in the store folder that are the clone's own state and
 * never a user's file: clone.ini, sums, markers, the deltas. */
gboolean vcf_clone_hides(const VcfCloneInfo *info, const char *name);
/* TRUE for NAME.vmx, the clone's own config. */
gboolean vcf_clone_is_config(const VcfCloneInfo *info, const char *name);
/* Whether the folder holds only what vmclonefs shows (NAME.vmx, the disk
 * names) and keeps (clone.ini, deltas, sums, markers): what rmdir deletes.
 * FALSE sets *OTHER to the first other entry. */
gboolean vcf_clone_folder_is_own(const VcfCloneInfo *info, char **other, GError **error);

/* Removes shown disk name NAME for good. Sets *LAST when no disk name of
 * the clone is left; then vcf_clone_drop_disks frees its stored disks. */
gboolean vcf_clone_unlink_name(VcfCloneInfo *info, const char *name, gboolean *last,
                               GError **error);
/* Deletes the clone's stored disks once all their names are gone (see
 * above); the clone folder stays, with no disks. Idempotent. */
gboolean vcf_clone_drop_disks(VcfLibrary *lib, const char *name, GError **error);

/* Removes clone NAME and everything in its store folder. Works on a full
 * file system: nothing is written before the files go. */
gboolean vcf_clone_delete(VcfLibrary *lib, const char *name, GError **error);

/* Finishes what a crash interrupted: removes half-made (.creating-*) and
 * half-deleted (.deleting-*) folders, rolls renames forward or back, and
 * frees the disks of clones whose disk names are all gone. Returns how
 * many folders it fixed; *PROBLEMS gets a sentence per failure. */
guint vcf_clone_recover(VcfLibrary *lib, GPtrArray *problems);
