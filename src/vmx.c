#include "config.h"
#include "vmx.h"

#include "fileutil.h"
#include "vcf-error.h"
#include "vmx-charset.h"
#include "vmx-line.h"

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

typedef struct {
    /* The line's bytes as read, in the file's charset, without its end of
     * line: written back as they are until the line changes (then NULL),
     * so an untouched file round-trips byte for byte even where the
     * charset has two spellings of a character. NULL for lines we add. */
    char *raw;
    gsize raw_len;
    char *text;      /* the line in UTF-8; NULL when its bytes are not valid in the charset */
    const char *eol; /* "\n", "\r\n", or "" for a last line with none */
    char *key;       /* as spelled in the file; NULL for blank and comment lines */
    char *value;     /* unquoted, |XX escapes decoded; NULL when unreadable */
    char *unreadable; /* why the value could not be read, or NULL */
    guint lineno;    /* in the file as read, for messages; 0 for lines we add */
    gsize vstart;    /* the value as written (quotes included) is text[vstart, vend) */
    gsize vend;
} VmxLine;

struct VcfVmx {
    char *name;        /* for messages */
    char *charset;     /* the .encoding the file was read in (NULL: none); raw bytes are in it */
    GPtrArray *lines;  /* of VmxLine, in file order */
    /* Lowercase key -> the line that counts. When a key appears twice the
     * last line wins: get() reads it, set() rewrites it, and the earlier
     * line stays as it was (shadowed). */
    GHashTable *index;
    GPtrArray *warnings; /* "file:line: why" for unreadable lines, NULL-terminated */
    const char *eol;   /* for lines we add: the file's own line ending */
};

static void vmx_line_free(gpointer p)
{
    VmxLine *line = p;
    g_free(line->raw);
    g_free(line->text);
    g_free(line->key);
    g_free(line->value);
    g_free(line->unreadable);
    g_free(line);
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

#define BAD_ESCAPE "bad |XX escape in value"

/* Fills LINE's key, value and value span from LINE->text; on a malformed
 * line returns why. A value that does not decode leaves the line with its
 * key, no value and LINE->unreadable set. */
static const char *parse_line(VmxLine *line)
{
    const char *s = line->text;
    VcfVmxSplit sp;
    gboolean has_key;
    const char *why = vcf_vmx_split_line(s, strlen(s), &sp, &has_key);
    if (why != NULL || !has_key)
        return why;
    line->key = g_strndup(s + sp.kstart, sp.kend - sp.kstart);
    line->value = vcf_vmx_decode_value(s + sp.rstart, sp.rend - sp.rstart);
    if (line->value == NULL)
        line->unreadable = g_strdup(BAD_ESCAPE);
    line->vstart = sp.vstart;
    line->vend = sp.vend;
    return NULL;
}

/* The key of a line whose bytes are not valid in its charset: the line must
 * still be key = value with an ASCII key, or we could not tell whether it
 * is a key that matters. */
static char *raw_key(const VmxLine *line)
{
    VcfVmxSplit sp;
    gboolean has_key;
    if (vcf_vmx_split_line(line->raw, line->raw_len, &sp, &has_key) != NULL || !has_key)
        return NULL;
    for (gsize i = sp.kstart; i < sp.kend; i++)
        if ((unsigned char)line->raw[i] >= 0x80)
            return NULL;
    return g_strndup(line->raw + sp.kstart, sp.kend - sp.kstart);
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
    vmx->warnings = g_ptr_array_new_null_terminated(0, g_free, TRUE);
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
    g_ptr_array_unref(vmx->warnings);
    g_free(vmx->charset);
    g_free(vmx->name);
    g_free(vmx);
}

/* The charset named by .encoding, read from the raw bytes before any
 * conversion: the key, '=' and quotes are ASCII in every charset VMware
 * writes. Only that line is parsed here, since elsewhere a Shift_JIS
 * trail byte can look like '|'. *CHARSET stays NULL when there is none.
 * Strict: a broken .encoding line would leave every line in doubt. */
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
        while (i < end && vcf_vmx_is_space(data[i]))
            i++;
        if (end - i >= klen && g_ascii_strncasecmp(data + i, key, klen) == 0 &&
            (end - i == klen || vcf_vmx_is_space(data[i + klen]) || data[i + klen] == '=')) {
            VmxLine tmp = { .text = g_strndup(data + pos, end - pos) };
            const char *why = parse_line(&tmp);
            if (why == NULL && tmp.unreadable != NULL)
                why = BAD_ESCAPE;
            g_free(tmp.text);
            g_free(tmp.key);
            g_free(tmp.unreadable);
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

/* Reads the LEN bytes at RAW as line LINENO. A line whose value cannot be
 * read (bytes not valid in CS, a bad |XX escape) is kept as it is, with a
 * warning: only its key's users need fail. Each line is converted on its
 * own, so a bad byte cannot swallow the line ends after it. */
static gboolean add_read_line(VcfVmx *vmx, VcfCharset *cs, const char *raw, gsize len,
                              const char *eol, guint lineno, GError **error)
{
    VmxLine *line = g_new0(VmxLine, 1);
    line->raw = g_strndup(raw, len);
    line->raw_len = len;
    line->eol = eol;
    line->lineno = lineno;
    g_ptr_array_add(vmx->lines, line);
    line->text = vcf_charset_decode(cs, raw, len, NULL);
    if (line->text == NULL) {
        line->key = raw_key(line);
        if (line->key == NULL || g_ascii_strcasecmp(line->key, ".encoding") == 0) {
            g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: text is not valid %s",
                        vmx->name, lineno, vcf_charset_name(cs));
            return FALSE;
        }
        line->unreadable = g_strdup_printf("text is not valid %s", vcf_charset_name(cs));
    } else {
        const char *why = parse_line(line);
        if (why != NULL) {
            g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: %s", vmx->name, lineno, why);
            return FALSE;
        }
    }
    if (line->unreadable != NULL)
        g_ptr_array_add(vmx->warnings,
                        g_strdup_printf("%s:%u: %s: %s; the line is kept as it is",
                                        vmx->name, lineno, line->key, line->unreadable));
    index_line(vmx, line);
    return TRUE;
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

    gsize nlines = 0;
    for (const char *p = data; (p = memchr(p, '\n', len - (gsize)(p - data))) != NULL; p++)
        nlines++;
    if (nlines > VMX_MAX_LINES) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: more than %" G_GSIZE_FORMAT " lines",
                    name, VMX_MAX_LINES);
        return NULL;
    }

    g_autoptr(VcfVmx) vmx = vmx_new_named(name);
    guint charset_line = 0;
    if (!find_encoding(data, len, name, &vmx->charset, &charset_line, error))
        return NULL;
    /* No .encoding: VMware's default is UTF-8, and anything else there
     * would be guesswork. */
    g_autoptr(GError) cerr = NULL;
    g_autoptr(VcfCharset) cs = vcf_charset_open(vmx->charset ? vmx->charset : "UTF-8", ".encoding",
                                                &cerr);
    if (cs == NULL) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: %s", name, charset_line, cerr->message);
        return NULL;
    }

    gboolean eol_seen = FALSE;
    guint lineno = 0;
    for (gsize pos = 0; pos < len;) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        gsize end = nl ? (gsize)(nl - data) : len;
        gsize next = nl ? end + 1 : len;
        const char *eol = "";
        lineno++;
        if (nl != NULL) {
            eol = "\n";
            if (end > pos && data[end - 1] == '\r') {
                eol = "\r\n";
                end--;
            }
            /* New lines follow the first line's ending (CRLF from Windows). */
            if (!eol_seen) {
                vmx->eol = eol;
                eol_seen = TRUE;
            }
        }
        if (!add_read_line(vmx, cs, data + pos, end - pos, eol, lineno, error))
            return NULL;
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

gboolean vcf_vmx_key_unreadable(const VcfVmx *vmx, const char *key)
{
    g_return_val_if_fail(vmx != NULL && key != NULL, FALSE);
    VmxLine *line = lookup(vmx, key);
    return line != NULL && line->unreadable != NULL;
}

gboolean vcf_vmx_check_readable(const VcfVmx *vmx, const char *key, GError **error)
{
    g_return_val_if_fail(vmx != NULL && key != NULL, FALSE);
    VmxLine *line = lookup(vmx, key);
    if (line == NULL || line->unreadable == NULL)
        return TRUE;
    g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: %s cannot be read: %s", vmx->name,
                line->lineno, line->key, line->unreadable);
    return FALSE;
}

const char *const *vcf_vmx_get_warnings(const VcfVmx *vmx)
{
    static const char *const none[] = { NULL };
    g_return_val_if_fail(vmx != NULL, none);
    return vmx->warnings->pdata ? (const char *const *)vmx->warnings->pdata : none;
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
    g_return_if_fail(vcf_vmx_key_is_valid(key));
    g_return_if_fail(value != NULL && g_utf8_validate(value, -1, NULL));

    VmxLine *line = lookup(vmx, key);
    if (line != NULL && line->text == NULL) {
        /* Its bytes could not be read: a new line in its place. */
        g_autofree char *quoted = vcf_vmx_quote_value(value);
        line->text = g_strdup_printf("%s = %s", line->key, quoted);
        line->vstart = strlen(line->key) + 3;
        line->vend = strlen(line->text);
    } else if (line != NULL) {
        /* An unchanged value leaves the line as it was written. */
        if (line->value != NULL && strcmp(line->value, value) == 0)
            return;
        /* Only the value is replaced: the key's spelling, the spacing and a
         * trailing comment stay. A duplicate key earlier in the file is left
         * alone; this (last) line is the one that counts. */
        g_autofree char *quoted = vcf_vmx_quote_value(value);
        char *text = g_strdup_printf("%.*s%s%s", (int)line->vstart, line->text,
                                     quoted, line->text + line->vend);
        line->vend = line->vstart + strlen(quoted);
        g_free(line->text);
        line->text = text;
    }
    if (line != NULL) {
        g_free(line->value);
        line->value = g_strdup(value);
        g_clear_pointer(&line->raw, g_free);
        g_clear_pointer(&line->unreadable, g_free);
        return;
    }

    /* A last line without an end of line must get one before we append. */
    if (vmx->lines->len > 0) {
        VmxLine *last = g_ptr_array_index(vmx->lines, vmx->lines->len - 1);
        if (*last->eol == '\0')
            last->eol = vmx->eol;
    }
    g_autofree char *quoted = vcf_vmx_quote_value(value);
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
    /* The current .encoding decides, so a caller may switch a file to UTF-8;
     * lines read in that same charset go back as they were read. */
    const char *charset = vcf_vmx_get(vmx, ".encoding");
    gboolean same = vcf_charset_same(charset, vmx->charset);
    g_autoptr(GError) cerr = NULL;
    g_autoptr(VcfCharset) cs = vcf_charset_open(charset ? charset : "UTF-8", ".encoding", &cerr);
    if (cs == NULL) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: %s", name, cerr->message);
        return NULL;
    }
    g_autoptr(GString) out = g_string_new(NULL);
    for (guint i = 0; i < vmx->lines->len; i++) {
        VmxLine *line = g_ptr_array_index(vmx->lines, i);
        if (line->raw != NULL && same) {
            g_string_append_len(out, line->raw, (gssize)line->raw_len);
        } else if (line->text == NULL) {
            g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: cannot be written in %s: its bytes "
                        "are not valid %s", name, i + 1, charset ? charset : "UTF-8",
                        vmx->charset ? vmx->charset : "UTF-8");
            return NULL;
        } else {
            gsize n = 0;
            g_autofree char *one = vcf_charset_encode(cs, line->text, strlen(line->text), &n,
                                                      &cerr);
            if (one == NULL) {
                g_set_error(error, VCF_ERROR, EINVAL, "%s:%u: %s", name, i + 1, cerr->message);
                return NULL;
            }
            g_string_append_len(out, one, (gssize)n);
        }
        g_string_append(out, line->eol);
    }
    if (len != NULL)
        *len = out->len;
    return g_string_free(g_steal_pointer(&out), FALSE);
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
