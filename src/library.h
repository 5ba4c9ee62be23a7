/* The library: a folder of VMware VM folders, and our state beside them in
 * LIBRARY/.vmclonefs/. A scan reads what is on disk each time it is asked:
 * VMware may change a VM between two calls. */
#pragma once
#include <glib.h>

typedef enum {
    VCF_POWER_OFF,
    VCF_POWER_ON,         /* VMware holds lock folders (*.lck) */
    VCF_POWER_SUSPENDED,  /* checkpoint.vmState or a .vmss file */
} VcfPowerState;

typedef struct {
    char *node;        /* "scsi0:0" */
    char *file_name;   /* as the .vmx or .vmsd writes it */
    char *path;        /* absolute, normalised */
} VcfVmDisk;

/* Frees a VcfVmDisk: the free function of the disk arrays below. */
void vcf_vm_disk_free(gpointer disk);

typedef struct {
    char *uid;
    char *parent_uid;      /* NULL for a root snapshot */
    char *display_name;
    GPtrArray *disks;      /* VcfVmDisk */
} VcfSnapshot;

typedef struct {
    char *name;            /* the folder's name */
    char *dir;             /* absolute folder */
    char *vmx_path;
    GPtrArray *disks;      /* VcfVmDisk, the current state, in .vmx order */
    GPtrArray *snapshots;  /* VcfSnapshot, from the .vmsd */
    char *current_snapshot_uid;
    VcfPowerState power;
    char *power_reason;    /* what showed the power state, for messages */
    /* "file:line: why" for lines of its .vmx and .vmsd that could not be
     * read and are kept as they are (char *, NULL-terminated); the caller
     * logs them. */
    GPtrArray *warnings;
} VcfVm;

typedef struct VcfLibrary VcfLibrary;
typedef struct VcfLinkCache VcfLinkCache;

/* Opens ROOT (which must be a folder) and makes LIBRARY/.vmclonefs/clones. */
VcfLibrary *vcf_library_open(const char *root, GError **error);
void vcf_library_free(VcfLibrary *lib);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfLibrary, vcf_library_free)

/* Takes the library's lock, LIBRARY/.vmclonefs/lock, for as long as LIB is
 * open: one daemon serves a library, on this host or another sharing it.
 * Writes this process's pid and host name into the file. EBUSY, naming the
 * file and (where it has written them) the holder's pid and host, if
 * another holds it. */
gboolean vcf_library_lock(VcfLibrary *lib, GError **error);
/* Writes the pid and host into the locked file again: after a fork, the
 * process that holds the lock now. */
gboolean vcf_library_note_holder(VcfLibrary *lib, GError **error);

const char *vcf_library_root(const VcfLibrary *lib);
/* What libvmdk found in the library's disks, for vcf_parent_open
 * (link-cache.h); lives as long as LIB. */
VcfLinkCache *vcf_library_link_cache(const VcfLibrary *lib);
/* LIBRARY/.vmclonefs/clones */
const char *vcf_library_store_root(const VcfLibrary *lib);

/* Names of the library's VM folders (a folder holding a .vmx), sorted;
 * hidden folders and a folder named "clones" (which the mount's magic
 * folder would shadow) are left out. */
GPtrArray *vcf_library_list_vms(VcfLibrary *lib);
/* Loads VM folder NAME. ENOENT if there is none; EINVAL for a malformed
 * .vmx or .vmsd, naming the file, or for a disk's fileName, present or
 * deviceType line that cannot be read, naming file and line. */
VcfVm *vcf_library_load_vm(VcfLibrary *lib, const char *name, GError **error);

/* Loads the VM in folder DIR (the .vmx named after the folder, or the only
 * one). Disk paths must stay inside CONFINE. */
VcfVm *vcf_vm_load(const char *dir, const char *confine, GError **error);
void vcf_vm_free(VcfVm *vm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfVm, vcf_vm_free)
/* The snapshot with DISPLAY_NAME, or NULL. */
const VcfSnapshot *vcf_vm_find_snapshot(const VcfVm *vm, const char *display_name);
/* How many snapshots have that name: VMware allows several. */
guint vcf_vm_count_snapshots_named(const VcfVm *vm, const char *display_name);
