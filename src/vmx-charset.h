/* The charsets VMware names in a .vmx's .encoding and a descriptor's
 * encoding=, and conversion between them and UTF-8, one line at a time.
 *
 * VMware writes the host's code page under ICU's names, which glibc's
 * iconv does not all know; these are mapped (case-insensitive):
 *   UTF-8, UTF8                               -> UTF-8
 *   Shift_JIS, Shift-JIS, SJIS, MS_Kanji,
 *     windows-932, CP932                      -> CP932
 *   windows-949-2000, windows-949, CP949,
 *     UHC, ks_c_5601-1987                     -> CP949
 *   windows-936-2000, windows-936, GBK, CP936 -> CP936
 *   windows-950-2000, windows-950, Big5, CP950 -> CP950
 *   windows-874-2000, windows-874             -> CP874
 * Windows code pages, not the ISO standards the names suggest: what
 * Workstation on a Japanese, Korean or Chinese Windows writes, in which
 * 0x5C is a backslash (glibc's SHIFT_JIS reads it as a yen sign) and
 * characters such as "①" exist. Any other name (windows-1250 to
 * windows-1258, ISO-8859-1 to ISO-8859-16, EUC-JP, EUC-KR, GB18030, ...)
 * goes to iconv as it is. */
#pragma once
#include <glib.h>

typedef struct VcfCharset VcfCharset;

/* The charset VMware calls NAME; WHAT names the setting in messages
 * (".encoding", "encoding="). NULL with VCF_ERROR/EINVAL when NAME is not
 * a plain charset name ("WHAT is not a charset name"), is unknown to iconv
 * ("unknown WHAT"), or does not spell ASCII as ASCII ("unusable WHAT (not
 * ASCII-compatible)"): the syntax is read in bytes, so '"', '=', '#', '|',
 * '\' and end of line must be ASCII. The message is the reason and the
 * quoted name; callers prefix file and line. */
VcfCharset *vcf_charset_open(const char *name, const char *what, GError **error);
void vcf_charset_free(VcfCharset *cs);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VcfCharset, vcf_charset_free)

/* The name as the file writes it, and as iconv knows it. */
const char *vcf_charset_name(const VcfCharset *cs);
const char *vcf_charset_iconv_name(const VcfCharset *cs);
gboolean vcf_charset_is_utf8(const VcfCharset *cs);

/* Whether names A and B (NULL: none, which means UTF-8) are one charset. */
gboolean vcf_charset_same(const char *a, const char *b);

/* LEN bytes of one line (no end of line) in CS, as NUL-terminated UTF-8
 * with no NUL inside; NULL when they are not valid text in CS. Each call
 * starts afresh, so a bad line cannot spoil the next. */
char *vcf_charset_decode(VcfCharset *cs, const char *bytes, gsize len, gsize *out_len);
/* UTF-8 TEXT (LEN bytes) in CS; NULL with VCF_ERROR/EINVAL when CS cannot
 * spell it. */
char *vcf_charset_encode(VcfCharset *cs, const char *text, gsize len, gsize *out_len,
                         GError **error);
