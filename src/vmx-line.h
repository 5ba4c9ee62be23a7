/* The syntax of one line of a .vmx or .vmsd file: key = "value", with
 * VMware's |XX escapes inside the quotes. */
#pragma once
#include <glib.h>

/* The blanks between the parts of a line. */
gboolean vcf_vmx_is_space(char c);
/* A key we may write: non-empty, no blank, control character, '=', '"',
 * '#' or '|'. */
gboolean vcf_vmx_key_is_valid(const char *key);

/* Where the parts of a key = value line are: the key [kstart, kend), the
 * value as written [vstart, vend) and between its quotes [rstart, rend). */
typedef struct {
    gsize kstart, kend, vstart, vend, rstart, rend;
} VcfVmxSplit;

/* Finds the parts of line S (N bytes, no end of line); returns why it is
 * malformed, or NULL with *HAS_KEY FALSE for a blank or comment line. */
const char *vcf_vmx_split_line(const char *s, gsize n, VcfVmxSplit *sp, gboolean *has_key);
/* The N bytes between a value's quotes with |XX escapes decoded; NULL for a
 * broken escape, |00 (it would cut the string), or bytes that are not UTF-8. */
char *vcf_vmx_decode_value(const char *s, gsize n);
/* VALUE between quotes, escaped as VMware escapes it. */
char *vcf_vmx_quote_value(const char *value);
