#include "config.h"
#include "vmx-line.h"

#include <string.h>

#define NOT_KEY_VALUE "line is not key = \"value\""

gboolean vcf_vmx_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Liberal on purpose (VMware's keys are ASCII, but a guestinfo key may be
 * anything): only what would make the line ambiguous is refused. */
static gboolean is_key_char(char c)
{
    unsigned char u = (unsigned char)c;
    return u > ' ' && u != 0x7f && c != '=' && c != '"' && c != '#' && c != '|';
}

gboolean vcf_vmx_key_is_valid(const char *key)
{
    if (key == NULL || *key == '\0')
        return FALSE;
    for (const char *p = key; *p; p++)
        if (!is_key_char(*p))
            return FALSE;
    return TRUE;
}

/* VMware writes |XX for a byte it cannot put between quotes. NULL for a
 * broken escape, |00 (it would cut the string), or bytes that are not UTF-8. */
char *vcf_vmx_decode_value(const char *s, gsize n)
{
    g_autoptr(GString) out = g_string_sized_new(n);
    for (gsize i = 0; i < n; i++) {
        if (s[i] != '|') {
            g_string_append_c(out, s[i]);
            continue;
        }
        if (n - i < 3)
            return NULL;
        int hi = g_ascii_xdigit_value(s[i + 1]);
        int lo = g_ascii_xdigit_value(s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return NULL;
        g_string_append_c(out, (char)(hi * 16 + lo));
        i += 2;
    }
    if (!g_utf8_validate(out->str, (gssize)out->len, NULL))
        return NULL;
    return g_string_free(g_steal_pointer(&out), FALSE);
}

char *vcf_vmx_quote_value(const char *value)
{
    g_autoptr(GString) out = g_string_new("\"");
    for (const char *p = value; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || c == '"' || c == '|')
            g_string_append_printf(out, "|%02X", c);
        else
            g_string_append_c(out, *p);
    }
    g_string_append_c(out, '"');
    return g_string_free(g_steal_pointer(&out), FALSE);
}

/* Finds the parts of line S (N bytes); returns why it is malformed, or
 * NULL with *HAS_KEY FALSE for a blank or comment line. Only '"', '=',
 * '#' and blanks are looked at, which no multibyte charset VMware writes
 * uses as a trail byte, so the raw bytes of an unconvertible line split
 * as its text would. */
const char *vcf_vmx_split_line(const char *s, gsize n, VcfVmxSplit *sp, gboolean *has_key)
{
    gsize i = 0;
    *has_key = FALSE;
    while (i < n && vcf_vmx_is_space(s[i]))
        i++;
    if (i == n || s[i] == '#')
        return NULL; /* blank or comment: kept verbatim, no key */

    sp->kstart = i;
    while (i < n && is_key_char(s[i]))
        i++;
    sp->kend = i;
    while (i < n && vcf_vmx_is_space(s[i]))
        i++;
    if (sp->kend == sp->kstart || i == n || s[i] != '=')
        return NOT_KEY_VALUE;
    i++;
    while (i < n && vcf_vmx_is_space(s[i]))
        i++;

    sp->vstart = i;
    if (i < n && s[i] == '"') {
        const char *close = memchr(s + i + 1, '"', n - i - 1);
        if (close == NULL)
            return "unterminated quote";
        sp->rstart = i + 1;
        sp->rend = (gsize)(close - s);
        i = sp->rend + 1;
    } else {
        /* Hand-edited files have key = value with no quotes. */
        sp->rstart = i;
        while (i < n && !vcf_vmx_is_space(s[i]) && s[i] != '#' && s[i] != '"')
            i++;
        sp->rend = i;
        if (i < n && s[i] == '"')
            return NOT_KEY_VALUE;
    }
    sp->vend = i;

    /* After the value only blanks or a comment. */
    while (i < n && vcf_vmx_is_space(s[i]))
        i++;
    if (i < n && s[i] != '#')
        return NOT_KEY_VALUE;
    *has_key = TRUE;
    return NULL;
}

