#include "config.h"
#include "vmx-charset.h"

#include "vcf-error.h"

#include <errno.h>
#include <string.h>

struct VcfCharset {
    char *name;          /* as the file writes it */
    const char *iconv;   /* as iconv knows it: a table entry or name */
    GIConv to_utf8;      /* (GIConv)-1 for UTF-8 itself */
    GIConv from_utf8;
};

/* VMware's names that glibc's iconv lacks or reads differently; see the
 * header for why each maps where it does. */
static const struct {
    const char *vmware;
    const char *iconv;
} names[] = {
    { "UTF-8", "UTF-8" },
    { "UTF8", "UTF-8" },
    { "Shift_JIS", "CP932" },
    { "Shift-JIS", "CP932" },
    { "SJIS", "CP932" },
    { "MS_Kanji", "CP932" },
    { "windows-932", "CP932" },
    { "windows-949-2000", "CP949" },
    { "windows-949", "CP949" },
    { "ks_c_5601-1987", "CP949" },
    { "UHC", "CP949" },
    { "windows-936-2000", "CP936" },
    { "windows-936", "CP936" },
    { "GBK", "CP936" },
    { "windows-950-2000", "CP950" },
    { "windows-950", "CP950" },
    { "Big5", "CP950" },
    { "windows-874-2000", "CP874" },
    { "windows-874", "CP874" },
};

/* A plain charset name. Refusing anything else keeps iconv suffixes such as
 * "//IGNORE" (which would silently drop bytes) out of a hostile file. */
static gboolean name_ok(const char *name)
{
    gsize n = strlen(name);
    if (n == 0 || n > 64)
        return FALSE;
    for (const char *p = name; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_' && *p != '.' && *p != ':')
            return FALSE;
    return TRUE;
}

static const char *iconv_name(const char *name)
{
    for (gsize i = 0; i < G_N_ELEMENTS(names); i++)
        if (g_ascii_strcasecmp(name, names[i].vmware) == 0)
            return names[i].iconv;
    return name;
}

gboolean vcf_charset_same(const char *a, const char *b)
{
    return g_ascii_strcasecmp(iconv_name(a ? a : "UTF-8"), iconv_name(b ? b : "UTF-8")) == 0;
}

VcfCharset *vcf_charset_open(const char *name, const char *what, GError **error)
{
    g_return_val_if_fail(name != NULL && what != NULL, NULL);
    if (!name_ok(name)) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s is not a charset name", what);
        return NULL;
    }
    g_autoptr(VcfCharset) cs = g_new0(VcfCharset, 1);
    cs->name = g_strdup(name);
    cs->iconv = iconv_name(name);
    cs->to_utf8 = cs->from_utf8 = (GIConv)-1;
    if (vcf_charset_is_utf8(cs))
        return g_steal_pointer(&cs);

    cs->to_utf8 = g_iconv_open("UTF-8", cs->iconv);
    cs->from_utf8 = g_iconv_open(cs->iconv, "UTF-8");
    if (cs->to_utf8 == (GIConv)-1 || cs->from_utf8 == (GIConv)-1) {
        g_set_error(error, VCF_ERROR, EINVAL, "unknown %s \"%s\"", what, name);
        return NULL;
    }
    /* Asking apart also gives a clear message, as g_convert's error codes
     * for such a charset vary with the iconv behind it. */
    static const char probe[] = " \t\r\n\"#=|.:_-\\/~0123456789"
                                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    gsize n = 0;
    g_autofree char *out = vcf_charset_encode(cs, probe, sizeof probe - 1, &n, NULL);
    g_autofree char *back = vcf_charset_decode(cs, probe, sizeof probe - 1, NULL);
    if (out == NULL || n != sizeof probe - 1 || memcmp(out, probe, n) != 0
        || back == NULL || strcmp(back, probe) != 0) {
        g_set_error(error, VCF_ERROR, EINVAL, "unusable %s (not ASCII-compatible) \"%s\"",
                    what, name);
        return NULL;
    }
    return g_steal_pointer(&cs);
}

void vcf_charset_free(VcfCharset *cs)
{
    if (cs == NULL)
        return;
    if (cs->to_utf8 != (GIConv)-1)
        g_iconv_close(cs->to_utf8);
    if (cs->from_utf8 != (GIConv)-1)
        g_iconv_close(cs->from_utf8);
    g_free(cs->name);
    g_free(cs);
}

const char *vcf_charset_name(const VcfCharset *cs)
{
    return cs->name;
}

const char *vcf_charset_iconv_name(const VcfCharset *cs)
{
    return cs->iconv;
}

gboolean vcf_charset_is_utf8(const VcfCharset *cs)
{
    return g_ascii_strcasecmp(cs->iconv, "UTF-8") == 0;
}

/* Forgets any shift state a failed conversion left behind. */
static void reset(GIConv cd)
{
    g_iconv(cd, NULL, NULL, NULL, NULL);
}

char *vcf_charset_decode(VcfCharset *cs, const char *bytes, gsize len, gsize *out_len)
{
    char *out = NULL;
    gsize written = len;
    if (vcf_charset_is_utf8(cs)) {
        if (!g_utf8_validate_len(bytes, len, NULL))
            return NULL;
        out = g_strndup(bytes, len);
    } else {
        gsize read = 0;
        reset(cs->to_utf8);
        out = g_convert_with_iconv(bytes, (gssize)len, cs->to_utf8, &read, &written, NULL);
        /* g_convert succeeds on a character cut short at the end, dropping it. */
        if (out != NULL && read != len)
            g_clear_pointer(&out, g_free);
        if (out == NULL)
            return NULL;
    }
    /* Belt and braces: usable UTF-8 with no NUL. */
    if (memchr(out, '\0', written) != NULL || !g_utf8_validate_len(out, written, NULL)) {
        g_free(out);
        return NULL;
    }
    if (out_len != NULL)
        *out_len = written;
    return out;
}

char *vcf_charset_encode(VcfCharset *cs, const char *text, gsize len, gsize *out_len,
                         GError **error)
{
    if (vcf_charset_is_utf8(cs)) {
        if (out_len != NULL)
            *out_len = len;
        return g_strndup(text, len);
    }
    gsize read = 0, written = 0;
    g_autoptr(GError) cerr = NULL;
    reset(cs->from_utf8);
    char *out = g_convert_with_iconv(text, (gssize)len, cs->from_utf8, &read, &written, &cerr);
    if (out != NULL && read != len) {
        g_clear_pointer(&out, g_free);
        g_set_error_literal(&cerr, G_CONVERT_ERROR, G_CONVERT_ERROR_PARTIAL_INPUT,
                            "partial character at the end");
    }
    if (out == NULL) {
        g_set_error(error, VCF_ERROR, EINVAL, "cannot be written in %s: %s", cs->name,
                    cerr ? cerr->message : "conversion failed");
        return NULL;
    }
    if (out_len != NULL)
        *out_len = written;
    return out;
}
