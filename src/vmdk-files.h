/* What parent.c needs around libvmdk: libyal's errors as GErrors, and the
 * files of a chain found and checked before they are opened. */
#pragma once
#include <glib.h>
#include <libvmdk.h>

/* CODE with "WHAT: the innermost libvmdk (or libbfio) message"; frees *VERR. */
void vcf_set_vmdk_error(GError **error, int code, libvmdk_error_t **verr,
                        const char *format, ...) G_GNUC_PRINTF(4, 5);
void vcf_set_bfio_error(GError **error, libbfio_error_t **berr,
                        const char *format, ...) G_GNUC_PRINTF(3, 4);
/* realpath of PATH, which must be a regular file inside CONFINE_REAL; WHAT
 * prefixes messages, or NULL for the top disk. */
char *vcf_resolve_disk_file(const char *path, const char *confine_real, const char *what,
                            GError **error);
/* *SPARSE: the file starts with the hosted sparse magic (a single-file disk). */
gboolean vcf_is_sparse_file(const char *path, gboolean *sparse, GError **error);
