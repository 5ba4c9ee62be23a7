#include "config.h"
#include "vmx.h"

#include "fileutil.h"
#include "vcf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Real .vmx and .vmsd files are a few KiB; the cap keeps a hostile file from
 * costing us memory. */
#define VMX_MAX_SIZE ((gsize)16 * 1024 * 1024)

/* Each line costs a few allocations; 16 MiB of newlines would cost a gigabyte.
 * A .vmsd with hundreds of snapshots has some ten thousand lines. */
#define VMX_MAX_LINES ((gsize)1 << 20)

#define NOT_KEY_VALUE "line is not key = \"value\""

typedef struct {
    char *text;      /* the line as in the file (UTF-8), without its end of line */
    const char *eol; /* "\n", "\r\n", or "" for a last line with none */
    char *key;       /* as spelled in the file; NULL for blank and comment lines */
    char *value;     /* unquoted, |XX escapes decoded */
    gsize vstart;    /* the value as written (quotes included) is text[vstart, vend) */
    gsize vend;
} VmxLine;

struct VcfVmx {
    char *name;        /* for messages */
    GPtrArray *lines;  /* of VmxLine, in file order */
    /* Lowercase key -> the line that counts. When a key appears twice the
     * last line wins: get() reads it, set() rewrites it, and the earlier
     * line stays as it was (shadowed). */
    GHashTable *index;
    const char *eol;   /* for lines we add: the file's own line ending */
};

static void vmx_line_free(gpointer p)
{
    VmxLine *line = p;
    g_free(line->text);
    g_free(line->key);
    g_free(line->value);
    g_free(line);
}

static gboolean is_space(char c)
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

static gboolean key_is_valid(const char *key)
{
    if (key == NULL || *key == '\0')
        return FALSE;
    for (const char *p = key; *p; p++)
        if (!is_key_char(*p))
            return FALSE;
    return TRUE;
}

static gboolean is_utf8_name(const char *charset)
{
    return g_ascii_strcasecmp(charset, "UTF-8") == 0 ||
           g_ascii_strcasecmp(charset, "UTF8") == 0;
}

/* A plain charset name. Refusing anything else keeps iconv suffixes such as
 * "//IGNORE" (which would silently drop bytes) out of a hostile file. */
static gboolean charset_name_ok(const char *charset)
{
    gsize n = strlen(charset);
    if (n == 0 || n > 64)
        return FALSE;
    for (const char *p = charset; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_' && *p != '.' && *p != ':')
            return FALSE;
    return TRUE;
}

/* Why CHARSET cannot be used, or NULL. The syntax is read in bytes before
 * conversion and written after it, so the charset must spell the characters
 * that carry it as ASCII does (UTF-16, UTF-7 and EBCDIC do not). Asking
 * apart also gives a clear message, as g_convert's error codes for an
 * unknown charset vary with the iconv behind it. */
static const char *charset_problem(const char *charset)
{
    static const char probe[] = " \t\r\n\"#=|.:_-0123456789"
                                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    GIConv cd = g_iconv_open(charset, "UTF-8");
    if (cd == (GIConv)-1)
        return "unknown .encoding";
    g_iconv_close(cd);
    gsize written = 0;
    g_autofree char *out = g_convert(probe, sizeof probe - 1, charset, "UTF-8",
                                     NULL, &written, NULL);
    if (out == NULL || written != sizeof probe - 1 || memcmp(out, probe, written) != 0)
        return "unusable .encoding (not ASCII-compatible)";
    return NULL;
}

/* 1-based number of the line holding byte OFF. */
static guint line_of(const char *data, gsize off)
{
    guint n = 1;
    for (gsize i = 0; i < off; i++)
        if (data[i] == '\n')
            n++;
    return n;
}

/* VMware writes |XX for a byte it cannot put between quotes. NULL for a
 * broken escape, |00 (it would cut the string), or bytes that are not UTF-8. */
static char *decode_value(const char *s, gsize n)
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

static char *quote_value(const char *value)
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

/* Fills LINE's key, value and value span from LINE->text; on a malformed
 * line returns why. */
static const char *parse_line(VmxLine *line)
{
    const char *s = line->text;
    gsize n = strlen(s);
    gsize i = 0;

    while (i < n && is_space(s[i]))
        i++;
    if (i == n || s[i] == '#')
        return NULL; /* blank or comment: kept verbatim, no key */

    gsize kstart = i;
    while (i < n && is_key_char(s[i]))
        i++;
    gsize kend = i;
    while (i < n && is_space(s[i]))
        i++;
    if (kend == kstart || i == n || s[i] != '=')
        return NOT_KEY_VALUE;
    i++;
    while (i < n && is_space(s[i]))
        i++;

    gsize vstart = i, raw_start, raw_end;
    if (i < n && s[i] == '"') {
        const char *close = memchr(s + i + 1, '"', n - i - 1);
        if (close == NULL)
            return "unterminated quote";
        raw_start = i + 1;
        raw_end = (gsize)(close - s);
        i = raw_end + 1;
    } else {
        /* Hand-edited files have key = value with no quotes. */
        raw_start = i;
        while (i < n && !is_space(s[i]) && s[i] != '#' && s[i] != '"')
            i++;
        raw_end = i;
        if (i < n && s[i] == '"')
            return NOT_KEY_VALUE;
    }
    gsize vend = i;

    /* After the value only blanks or a comment. */
    while (i < n && is_space(s[i]))
        i++;
    if (i < n && s[i] != '#')
        return NOT_KEY_VALUE;

    char *value = decode_value(s + raw_start, raw_end - raw_start);
    if (value == NULL)
        return "bad |XX escape in value";
    line->key = g_strndup(s + kstart, kend - kstart);
    line->value = value;
    line->vstart = vstart;
    line->vend = vend;
    return NULL;
}

static void index_line(VcfVmx *vmx, VmxLine *line)
{
    if (line->key != NULL)
        g_hash_table_replace(vmx->index, g_ascii_strdown(line->key, -1), line);
}

static void reindex(VcfVmx *vmx)
{
    g_hash_table_remove_all(vmx->index);
    for (guint i = 0; i < vmx->lines->len; i++)
        index_line(vmx, g_ptr_array_index(vmx->lines, i));
}

static VmxLine *lookup(const VcfVmx *vmx, const char *key)
{
    g_autofree char *lower = g_ascii_strdown(key, -1);
    return g_hash_table_lookup(vmx->index, lower);
}

static VcfVmx *vmx_new_named(const char *name)
{
    VcfVmx *vmx = g_new0(VcfVmx, 1);
    vmx->name = g_strdup(name);
    vmx->lines = g_ptr_array_new_with_free_func(vmx_line_free);
    vmx->index = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    vmx->eol = "\n";
    return vmx;
}

VcfVmx *vcf_vmx_new(void)
{
    return vmx_new_named("(new .vmx)");
}

void vcf_vmx_free(VcfVmx *vmx)
{
    if (vmx == NULL)
        return;
    g_hash_table_unref(vmx->index);
    g_ptr_array_unref(vmx->lines);
    g_free(vmx->name);
    g_free(vmx);
}

/* The charset named by .encoding, read from the raw bytes before any
 * conversion: the key, '=' and quotes are ASCII in every charset VMware
 * writes. Only that line is parsed here, since elsewhere a Shift_JIS
 * trail byte can look like '|'. *CHARSET stays NULL when there is none. */
static gboolean find_encoding(const char *data, gsize len, const char *name,
                              char **charset, guint *charset_line, GError **error)
{
    static const char key[] = ".encoding";
    const gsize klen = sizeof key - 1;
    guint lineno = 0;

    for (gsize pos = 0; pos < len;) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        gsize end = nl ? (gsize)(nl - data) : len;
        lineno++;

        gsize i = pos;
        while (i < end && is_space(data[i]))
            i++;
        if (end - i >= klen && g_ascii_strncasecmp(data + i, key, klen) == 0 &&
            (end - i == klen || is_space(data[i + klen]) || data[i + klen] == '=')) {
            VmxLine tmp = { .text = g_strndup(data + pos, end - pos) };
            const char *why = parse_line(&tmp);
            g_free(tmp.text);
            g_free(tmp.key);
            if (why != NULL) {
                g_free(tmp.value);
                g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: %s", name, lineno, why);
                return FALSE;
            }
            /* The last one wins, as for every key. */
            g_free(*charset);
            *charset = tmp.value;
            *charset_line = lineno;
        }
        pos = end + 1;
    }
    return TRUE;
}

/* DATA (in its .encoding) as UTF-8; NULL with an error naming the line. */
static char *to_utf8(const char *data, gsize len, const char *name,
                     gsize *out_len, GError **error)
{
    g_autofree char *charset = NULL;
    guint charset_line = 0;
    if (!find_encoding(data, len, name, &charset, &charset_line, error))
        return NULL;

    if (charset == NULL || is_utf8_name(charset)) {
        /* No .encoding: VMware's default is UTF-8, and anything else there
         * would be guesswork. */
        const char *bad = NULL;
        if (!g_utf8_validate(data, (gssize)len, &bad)) {
            g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: text is not valid UTF-8",
                        name, line_of(data, (gsize)(bad - data)));
            return NULL;
        }
        *out_len = len;
        return g_strndup(data, len);
    }

    if (!charset_name_ok(charset)) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: .encoding is not a charset name",
                    name, charset_line);
        return NULL;
    }
    const char *problem = charset_problem(charset);
    if (problem != NULL) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: %s \"%s\"",
                    name, charset_line, problem, charset);
        return NULL;
    }

    gsize bytes_read = 0, written = 0;
    g_autoptr(GError) cerr = NULL;
    g_autofree char *out = g_convert(data, (gssize)len, "UTF-8", charset,
                                     &bytes_read, &written, &cerr);
    if (out == NULL) {
        if (g_error_matches(cerr, G_CONVERT_ERROR, G_CONVERT_ERROR_ILLEGAL_SEQUENCE) ||
                 g_error_matches(cerr, G_CONVERT_ERROR, G_CONVERT_ERROR_PARTIAL_INPUT))
            g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: text is not valid %s",
                        name, line_of(data, MIN(bytes_read, len)), charset);
        else
            g_set_error(error, VCF_ERROR, EINVAL, "%s: cannot convert from %s: %s",
                        name, charset, cerr->message);
        return NULL;
    }
    /* g_convert succeeds on a character cut short at the end, dropping it. */
    if (bytes_read != len) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: text is not valid %s",
                    name, line_of(data, MIN(bytes_read, len)), charset);
        return NULL;
    }
    /* Belt and braces: the text must be usable UTF-8 with no NUL. */
    const char *nul = memchr(out, '\0', written);
    if (nul != NULL || !g_utf8_validate(out, (gssize)written, NULL)) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: .encoding \"%s\" gives unusable text",
                    name, charset_line, charset);
        return NULL;
    }
    *out_len = written;
    return g_steal_pointer(&out);
}

VcfVmx *vcf_vmx_parse(const char *data, gsize len, const char *name, GError **error)
{
    g_return_val_if_fail(data != NULL || len == 0, NULL);
    if (name == NULL)
        name = "(vmx)";

    if (len > VMX_MAX_SIZE) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: file is larger than 16 MiB", name);
        return NULL;
    }
    if (len == 0)
        return vmx_new_named(name);
    const char *nul = memchr(data, '\0', len);
    if (nul != NULL) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: NUL byte", name,
                    line_of(data, (gsize)(nul - data)));
        return NULL;
    }

    gsize tlen = 0;
    g_autofree char *text = to_utf8(data, len, name, &tlen, error);
    if (text == NULL)
        return NULL;

    gsize nlines = 0;
    for (const char *p = text; (p = memchr(p, '\n', tlen - (gsize)(p - text))) != NULL; p++)
        nlines++;
    if (nlines > VMX_MAX_LINES) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: more than %" G_GSIZE_FORMAT " lines",
                    name, VMX_MAX_LINES);
        return NULL;
    }

    g_autoptr(VcfVmx) vmx = vmx_new_named(name);
    gboolean eol_seen = FALSE;
    guint lineno = 0;
    for (gsize pos = 0; pos < tlen;) {
        const char *nl = memchr(text + pos, '\n', tlen - pos);
        gsize end = nl ? (gsize)(nl - text) : tlen;
        gsize next = nl ? end + 1 : tlen;
        VmxLine *line = g_new0(VmxLine, 1);
        line->eol = "";
        lineno++;
        if (nl != NULL) {
            line->eol = "\n";
            if (end > pos && text[end - 1] == '\r') {
                line->eol = "\r\n";
                end--;
            }
            /* New lines follow the first line's ending (CRLF from Windows). */
            if (!eol_seen) {
                vmx->eol = line->eol;
                eol_seen = TRUE;
            }
        }
        line->text = g_strndup(text + pos, end - pos);
        g_ptr_array_add(vmx->lines, line);
        const char *why = parse_line(line);
        if (why != NULL) {
            g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: %s", name, lineno, why);
            return NULL;
        }
        index_line(vmx, line);
        pos = next;
    }
    return g_steal_pointer(&vmx);
}

VcfVmx *vcf_vmx_load(const char *path, GError **error)
{
    g_return_val_if_fail(path != NULL, NULL);

    /* O_NONBLOCK: a FIFO planted in place of a .vmx must not hang us. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        vcf_set_errno(error, errno, path);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        vcf_set_errno(error, e, path);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        g_set_error(error, VCF_ERROR, EINVAL, "%s: not a regular file", path);
        return NULL;
    }
    if (st.st_size < 0 || (guint64)st.st_size > VMX_MAX_SIZE) {
        close(fd);
        g_set_error(error, VCF_ERROR, EINVAL, "%s: file is larger than 16 MiB", path);
        return NULL;
    }

    /* Read until EOF rather than st_size bytes: the file may change under
     * us; the cap still holds. */
    gsize cap = (gsize)st.st_size + 1, len = 0;
    g_autofree char *buf = g_malloc(cap);
    for (;;) {
        if (len == cap) {
            if (cap > VMX_MAX_SIZE)
                break;
            cap = MIN(cap * 2, VMX_MAX_SIZE + 1);
            buf = g_realloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            vcf_set_errno(error, e, path);
            return NULL;
        }
        if (n == 0)
            break;
        len += (gsize)n;
    }
    close(fd);
    return vcf_vmx_parse(buf, len, path, error);
}

const char *vcf_vmx_get(const VcfVmx *vmx, const char *key)
{
    g_return_val_if_fail(vmx != NULL && key != NULL, NULL);
    VmxLine *line = lookup(vmx, key);
    return line ? line->value : NULL;
}

gboolean vcf_vmx_get_bool(const VcfVmx *vmx, const char *key, gboolean dflt)
{
    const char *v = vcf_vmx_get(vmx, key);
    if (v == NULL)
        return dflt;
    if (g_ascii_strcasecmp(v, "true") == 0 || g_ascii_strcasecmp(v, "yes") == 0 ||
        strcmp(v, "1") == 0)
        return TRUE;
    if (g_ascii_strcasecmp(v, "false") == 0 || g_ascii_strcasecmp(v, "no") == 0 ||
        strcmp(v, "0") == 0)
        return FALSE;
    return dflt;
}

void vcf_vmx_set(VcfVmx *vmx, const char *key, const char *value)
{
    g_return_if_fail(vmx != NULL);
    g_return_if_fail(key_is_valid(key));
    g_return_if_fail(value != NULL && g_utf8_validate(value, -1, NULL));

    VmxLine *line = lookup(vmx, key);
    if (line != NULL) {
        /* An unchanged value leaves the line as it was written. */
        if (strcmp(line->value, value) == 0)
            return;
        /* Only the value is replaced: the key's spelling, the spacing and a
         * trailing comment stay. A duplicate key earlier in the file is left
         * alone; this (last) line is the one that counts. */
        g_autofree char *quoted = quote_value(value);
        char *text = g_strdup_printf("%.*s%s%s", (int)line->vstart, line->text,
                                     quoted, line->text + line->vend);
        line->vend = line->vstart + strlen(quoted);
        g_free(line->text);
        line->text = text;
        g_free(line->value);
        line->value = g_strdup(value);
        return;
    }

    /* A last line without an end of line must get one before we append. */
    if (vmx->lines->len > 0) {
        VmxLine *last = g_ptr_array_index(vmx->lines, vmx->lines->len - 1);
        if (*last->eol == '\0')
            last->eol = vmx->eol;
    }
    g_autofree char *quoted = quote_value(value);
    line = g_new0(VmxLine, 1);
    line->text = g_strdup_printf("%s = %s", key, quoted);
    line->eol = vmx->eol;
    line->key = g_strdup(key);
    line->value = g_strdup(value);
    line->vstart = strlen(key) + 3;
    line->vend = strlen(line->text);
    g_ptr_array_add(vmx->lines, line);
    index_line(vmx, line);
}

/* Drops every line whose key matches; all of a duplicated key's lines go,
 * or an older value would come back. */
static guint remove_matching(VcfVmx *vmx, const char *key, gboolean prefix)
{
    gsize klen = strlen(key);
    guint removed = 0;
    gsize n = 0;
    /* Rebuild the array in one pass; removing one by one is quadratic. */
    g_autofree gpointer *old = g_ptr_array_steal(vmx->lines, &n);
    for (gsize i = 0; i < n; i++) {
        VmxLine *line = old[i];
        gboolean match = line->key != NULL &&
            (prefix ? g_ascii_strncasecmp(line->key, key, klen) == 0
                    : g_ascii_strcasecmp(line->key, key) == 0);
        if (match) {
            vmx_line_free(line);
            removed++;
        } else {
            g_ptr_array_add(vmx->lines, line);
        }
    }
    if (removed > 0)
        reindex(vmx);
    return removed;
}

gboolean vcf_vmx_remove(VcfVmx *vmx, const char *key)
{
    g_return_val_if_fail(vmx != NULL && key != NULL, FALSE);
    if (lookup(vmx, key) == NULL)
        return FALSE;
    return remove_matching(vmx, key, FALSE) > 0;
}

guint vcf_vmx_remove_prefix(VcfVmx *vmx, const char *prefix)
{
    g_return_val_if_fail(vmx != NULL && prefix != NULL, 0);
    return remove_matching(vmx, prefix, TRUE);
}

char **vcf_vmx_keys(const VcfVmx *vmx)
{
    g_return_val_if_fail(vmx != NULL, NULL);
    g_autoptr(GPtrArray) keys = g_ptr_array_new();
    for (guint i = 0; i < vmx->lines->len; i++) {
        VmxLine *line = g_ptr_array_index(vmx->lines, i);
        /* A duplicated key is listed once, where the line that counts is. */
        if (line->key != NULL && lookup(vmx, line->key) == line)
            g_ptr_array_add(keys, g_strdup(line->key));
    }
    g_ptr_array_add(keys, NULL);
    return (char **)g_ptr_array_free(g_steal_pointer(&keys), FALSE);
}

static char *render(const VcfVmx *vmx, const char *name, gsize *len, GError **error)
{
    g_autoptr(GString) out = g_string_new(NULL);
    for (guint i = 0; i < vmx->lines->len; i++) {
        VmxLine *line = g_ptr_array_index(vmx->lines, i);
        g_string_append(out, line->text);
        g_string_append(out, line->eol);
    }

    /* The current .encoding decides, so a caller may switch a file to UTF-8. */
    const char *charset = vcf_vmx_get(vmx, ".encoding");
    if (charset == NULL || is_utf8_name(charset)) {
        if (len != NULL)
            *len = out->len;
        return g_string_free(g_steal_pointer(&out), FALSE);
    }
    if (!charset_name_ok(charset)) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: .encoding is not a charset name", name);
        return NULL;
    }
    const char *problem = charset_problem(charset);
    if (problem != NULL) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: %s \"%s\"", name, problem, charset);
        return NULL;
    }
    gsize written = 0;
    g_autoptr(GError) cerr = NULL;
    char *conv = g_convert(out->str, (gssize)out->len, charset, "UTF-8", NULL,
                           &written, &cerr);
    if (conv != NULL) {
        if (len != NULL)
            *len = written;
        return conv;
    }
    /* Say which line holds what the charset cannot spell. */
    for (guint i = 0; i < vmx->lines->len; i++) {
        VmxLine *line = g_ptr_array_index(vmx->lines, i);
        g_autofree char *one = g_convert(line->text, -1, charset, "UTF-8", NULL, NULL, NULL);
        if (one == NULL) {
            g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: cannot be written in %s: %s",
                        name, i + 1, charset, cerr->message);
            return NULL;
        }
    }
    g_set_error(error, VCF_ERROR, EINVAL, "%s: cannot be written in %s: %s",
                name, charset, cerr->message);
    return NULL;
}

char *vcf_vmx_to_data(const VcfVmx *vmx, gsize *len, GError **error)
{
    g_return_val_if_fail(vmx != NULL, NULL);
    return render(vmx, vmx->name, len, error);
}

gboolean vcf_vmx_save(const VcfVmx *vmx, const char *path, GError **error)
{
    g_return_val_if_fail(vmx != NULL && path != NULL, FALSE);
    gsize len = 0;
    g_autofree char *data = render(vmx, path, &len, error);
    if (data == NULL)
        return FALSE;
    return vcf_file_write_atomic(path, data, len, error);
}
