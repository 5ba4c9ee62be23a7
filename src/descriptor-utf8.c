#include "config.h"
#include "descriptor-utf8.h"

#include "descriptor.h"
#include "vcf-error.h"
#include "vmx-charset.h"

#include <errno.h>
#include <string.h>

/* Whether LINE is encoding=..., as vcf_descriptor_get reads it. */
static gboolean is_encoding_line(const char *line)
{
    while (*line == ' ' || *line == '\t')
        line++;
    if (g_ascii_strncasecmp(line, "encoding", 8) != 0)
        return FALSE;
    line += 8;
    while (*line == ' ' || *line == '\t')
        line++;
    return *line == '=';
}

gboolean vcf_descriptor_to_utf8(const char *path, char **text, gsize *len, GError **error)
{
    *text = NULL;
    *len = 0;
    g_autofree char *raw = vcf_descriptor_load(path, error);
    if (raw == NULL)
        return FALSE;
    g_autofree char *encoding = vcf_descriptor_get(raw, "encoding");
    if (encoding == NULL || vcf_charset_same(encoding, "UTF-8"))
        return TRUE;
    g_autoptr(GError) cerr = NULL;
    g_autoptr(VcfCharset) cs = vcf_charset_open(encoding, "encoding=", &cerr);
    if (cs == NULL) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: %s", path, cerr->message);
        return FALSE;
    }
    /* Line by line, so that the error names the line, and a line end is
     * never taken into a multibyte character. */
    g_autoptr(GString) out = g_string_new(NULL);
    g_auto(GStrv) lines = g_strsplit(raw, "\n", -1);
    for (guint i = 0; lines[i] != NULL; i++) {
        if (i > 0)
            g_string_append_c(out, '\n');
        if (is_encoding_line(lines[i])) {
            g_string_append(out, "encoding=\"UTF-8\"");
            continue;
        }
        gsize n = 0;
        g_autofree char *one = vcf_charset_decode(cs, lines[i], strlen(lines[i]), &n);
        if (one == NULL) {
            g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: text is not valid %s", path, i + 1,
                        encoding);
            return FALSE;
        }
        g_string_append_len(out, one, (gssize)n);
    }
    *len = out->len;
    *text = g_string_free(g_steal_pointer(&out), FALSE);
    return TRUE;
}
