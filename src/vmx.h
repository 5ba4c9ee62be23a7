/* .vmx and .vmsd files: VMware's "key = "value"" configuration format.
 *
 * Keys are compared case-insensitively; a rewrite keeps the order of lines,
 * comments, blank lines, unknown keys and the original spelling of each key.
 * The text is held as UTF-8; a file whose .encoding names another charset
 * (any VMware writes: see vmx-charset.h) is converted on load, line by
 * line, and written back in that charset on save, each line that did not
 * change as the very bytes it was read as.
 *
 * A line whose value cannot be read (bytes not valid in the charset, a bad
 * |XX escape) does not fail the load: it is kept as it is, its key reads
 * as absent, vcf_vmx_key_unreadable() says so and vcf_vmx_get_warnings()
 * lists it. A caller fails only for keys it needs. */
#pragma once
#include <glib.h>

typedef struct VcfVmx VcfVmx;

VcfVmx *vcf_vmx_new(void);
/* Reads PATH. A malformed file (a line that is neither blank, a comment nor
 * key = value with an ASCII key; an unknown or broken .encoding; over
 * 16 MiB; a NUL byte) is an error in VCF_ERROR/EINVAL naming the file and
 * line. */
VcfVmx *vcf_vmx_load(const char *path, GError **error);
/* Same, from memory; NAME is used in messages. */
VcfVmx *vcf_vmx_parse(const char *data, gsize len, const char *name, GError **error);
void vcf_vmx_free(VcfVmx *vmx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfVmx, vcf_vmx_free)

/* The value of KEY (case-insensitive), unquoted and with VMware's |XX
 * escapes decoded; NULL when absent. Valid until the key is changed. */
const char *vcf_vmx_get(const VcfVmx *vmx, const char *key);
/* Whether the line that counts for KEY is there but its value could not be
 * read (then vcf_vmx_get() gives NULL). */
gboolean vcf_vmx_key_unreadable(const VcfVmx *vmx, const char *key);
/* TRUE unless KEY is unreadable; then FALSE with VCF_ERROR/EINVAL
 * "FILE:LINE: KEY cannot be read: why", for callers that need KEY. */
gboolean vcf_vmx_check_readable(const VcfVmx *vmx, const char *key, GError **error);
/* "FILE:LINE: KEY: why" for every unreadable line as loaded, for callers to
 * log (NULL-terminated, owned by VMX; empty for a clean file). */
const char *const *vcf_vmx_get_warnings(const VcfVmx *vmx);
/* TRUE/FALSE for "TRUE", "true", "1", "yes" / "FALSE", "0", "no"; DFLT when absent or other. */
gboolean vcf_vmx_get_bool(const VcfVmx *vmx, const char *key, gboolean dflt);
/* Replaces the value in place (keeping position and key spelling) or appends
 * KEY. An unreadable line of KEY is replaced by a readable one. */
void vcf_vmx_set(VcfVmx *vmx, const char *key, const char *value);
/* Removes KEY; TRUE if it was there. */
gboolean vcf_vmx_remove(VcfVmx *vmx, const char *key);
/* Removes every key starting with PREFIX (case-insensitive); returns how many. */
guint vcf_vmx_remove_prefix(VcfVmx *vmx, const char *prefix);
/* The keys in file order, as spelled in the file (NULL-terminated; free with g_strfreev). */
char **vcf_vmx_keys(const VcfVmx *vmx);

/* The file's text in its encoding, ready to write. */
char *vcf_vmx_to_data(const VcfVmx *vmx, gsize *len, GError **error);
/* Writes atomically (vcf_file_write_atomic). */
gboolean vcf_vmx_save(const VcfVmx *vmx, const char *path, GError **error);
