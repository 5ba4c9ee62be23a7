/* Names users give and names we derive. */
#pragma once
#include <glib.h>

/* Longest clone name: leaves room for "_NN-flat.vmdk" in NAME_MAX. */
#define VCF_NAME_MAX 200

/* Checks a clone name made with mkdir: not empty, not "." or "..", no "/",
 * no control characters, no leading "." (hidden), no "@" (it separates a VM
 * from a snapshot in clones/VM@SNAPSHOT), valid UTF-8, at most
 * VCF_NAME_MAX bytes. EINVAL with the reason otherwise. */
gboolean vcf_name_check(const char *name, GError **error);

/* The stem of disk I of clone NAME: "NAME" for the first, "NAME_I" after,
 * as VMware names a VM's extra disks. */
char *vcf_disk_stem(const char *name, guint i);

/* PATH relative to folder FROM (both absolute, normalised). */
char *vcf_relative_path(const char *from_dir, const char *path);

/* TRUE if PATH (absolute, normalised) is DIR or lies inside it. */
gboolean vcf_path_is_inside(const char *path, const char *dir);
