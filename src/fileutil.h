/* Small file helpers shared by the core. */
#pragma once
#include <glib.h>

/* Writes DATA to PATH so that a crash leaves either the old or the new file:
 * a temporary file in the same folder, fsync, rename over PATH, fsync of the
 * folder. Mode 0644 for new files; an existing file keeps its mode. */
gboolean vcf_file_write_atomic(const char *path, const void *data, gsize len,
                               GError **error);

/* fsync of the folder holding PATH (or of PATH itself if it is a folder), so
 * that a create, rename or unlink in it is durable. */
gboolean vcf_fsync_dir(const char *path, GError **error);
