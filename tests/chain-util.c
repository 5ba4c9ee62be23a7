/* Disk chains made with qemu-img and read against its own decoding, for
 * the unit tests of parents and of the link cache (see chain-util.h). */
#include "config.h"
#include "chain-util.h"
#include "parent.h"

#include <check.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *chain_dir;

void chain_setup(void)
{
    GError *error = NULL;
    chain_dir = g_dir_make_tmp("vcf-chain-XXXXXX", &error);
    ck_assert_msg(chain_dir != NULL, "%s", error ? error->message : "");
}

static void run_argv(const char *cwd, const char *const *argv);

void chain_teardown(void)
{
    const char *argv[] = { "rm", "-rf", chain_dir, NULL };
    run_argv(NULL, argv);
    g_free(chain_dir);
}

/* ---- helpers ----------------------------------------------------------- */

char *path_of(const char *name)
{
    return g_build_filename(chain_dir, name, NULL);
}

static void run_argv(const char *cwd, const char *const *argv)
{
    GError *error = NULL;
    g_autofree char *out = NULL, *err = NULL;
    int status = 0;
    gboolean ok = g_spawn_sync(cwd, (char **) argv, NULL, G_SPAWN_SEARCH_PATH,
                               NULL, NULL, &out, &err, &status, &error);
    ck_assert_msg(ok, "%s: %s", argv[0], error ? error->message : "");
    ck_assert_msg(g_spawn_check_wait_status(status, NULL), "%s %s failed: %s",
                  argv[0], argv[1], err);
}

/* Runs a command given as a NULL-terminated list, in the test folder, so
 * that backing file names are relative to it as VMware writes them. */
void run(const char *prog, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) prog);
    va_list ap;
    va_start(ap, prog);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL)
        g_ptr_array_add(argv, (gpointer) a);
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    run_argv(chain_dir, (const char *const *) argv->pdata);
}

void write_pattern(const char *disk, int pattern, guint64 offset, guint64 len)
{
    g_autofree char *cmd = g_strdup_printf("write -P 0x%02x %" G_GUINT64_FORMAT
                                           " %" G_GUINT64_FORMAT, pattern, offset, len);
    run("qemu-io", "-f", "vmdk", "-c", cmd, disk, NULL);
}

/* The oracle: qemu-img's decoding of DISK as a raw file; returns its fd. */
int oracle(const char *disk)
{
    g_autofree char *raw = g_strdup_printf("%s.raw", disk);
    run("qemu-img", "convert", "-f", "vmdk", "-O", "raw", disk, raw, NULL);
    g_autofree char *path = path_of(raw);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    return fd;
}

VcfParent *open_ok(const char *name, guint n_chains)
{
    GError *error = NULL;
    g_autofree char *path = path_of(name);
    VcfParent *p = vcf_parent_open(path, chain_dir, NULL, n_chains, &error);
    ck_assert_msg(p != NULL, "%s: %s", name, error ? error->message : "");
    return p;
}


gsize raw_read(int fd, guint8 *buf, gsize len, guint64 offset)
{
    gsize done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, offset + done);
        ck_assert_int_ge(n, 0);
        if (n == 0)
            break;
        done += n;
    }
    return done;
}

/* Compares [START, START+LEN) of P with the raw oracle, in chunks of odd
 * sizes at unaligned offsets; bytes past the end of the disk must be 0. */
void compare(VcfParent *p, int raw, guint64 start, guint64 len)
{
    static const gsize chunks[] = { 1, 511, 4099, 65537, 7, 1048579, 131072, 333 };
    guint8 *got = g_malloc(1048579), *want = g_malloc(1048579);
    guint64 size = vcf_parent_get_size(p);
    guint64 off = start;
    for (guint i = 0; off < start + len; i++) {
        gsize n = MIN(chunks[i % G_N_ELEMENTS(chunks)], start + len - off);
        GError *error = NULL;
        memset(got, 0xee, n);
        ck_assert_msg(vcf_parent_read(p, got, n, off, &error), "%s",
                      error ? error->message : "");
        gsize have = off < size ? raw_read(raw, want, MIN(n, size - off), off) : 0;
        memset(want + have, 0, n - have);
        if (memcmp(got, want, n) != 0) {
            gsize j = 0;
            while (got[j] == want[j])
                j++;
            ck_abort_msg("byte %" G_GUINT64_FORMAT ": read %02x, qemu-img %02x",
                         off + j, got[j], want[j]);
        }
        off += n;
    }
    g_free(got);
    g_free(want);
}

/* The whole disk in odd chunks, then in one read, then reads across and past
 * its end. */
void compare_all(VcfParent *p, int raw)
{
    guint64 size = vcf_parent_get_size(p);
    compare(p, raw, 0, size);
    guint8 *got = g_malloc(size), *want = g_malloc(size);
    GError *error = NULL;
    ck_assert(vcf_parent_read(p, got, size, 0, &error));
    ck_assert_uint_eq(raw_read(raw, want, size, 0), size);
    ck_assert(memcmp(got, want, size) == 0);
    g_free(got);
    g_free(want);
    compare(p, raw, size - 1000, 5000);
    compare(p, raw, size + 12345, 777);
    compare(p, raw, G_MAXUINT64 - 100, 50);
}

/* Where NEEDLE first occurs in the first LEN bytes of TEXT, which may hold
 * NUL bytes (a sparse file's header comes before its descriptor). */
static char *find(char *text, gsize len, const char *needle)
{
    gsize n = strlen(needle);
    for (gsize i = 0; i + n <= len; i++)
        if (memcmp(text + i, needle, n) == 0)
            return text + i;
    return NULL;
}

/* NAME's whole file in *TEXT (*LEN bytes), and where "\nKEY=" is in its
 * descriptor (the first 64 KiB); the test fails if it is not. */
static char *find_key(const char *name, const char *key, char **text, gsize *len)
{
    g_autofree char *path = path_of(name);
    ck_assert(g_file_get_contents(path, text, len, NULL));
    g_autofree char *needle = g_strdup_printf("\n%s=", key);
    char *at = find(*text, MIN(*len, (gsize) 65536), needle);
    ck_assert_ptr_nonnull(at);
    return at;
}

guint32 descriptor_cid(const char *name, const char *key)
{
    g_autofree char *text = NULL;
    gsize len = 0;
    const char *at = find_key(name, key, &text, &len);
    return (guint32) strtoul(at + strlen(key) + 2, NULL, 16);
}

/* Replaces the value of KEY= in NAME's descriptor, embedded or not. In a
 * sparse file the descriptor is NUL-padded text, so the rest of its text
 * shifts into the padding and the file keeps its layout. */
void edit_descriptor(const char *name, const char *key, const char *value)
{
    g_autofree char *path = path_of(name), *text = NULL;
    gsize len = 0;
    char *val = find_key(name, key, &text, &len) + strlen(key) + 2;
    char *eol = strchr(val, '\n');
    ck_assert_ptr_nonnull(eol);
    gsize text_end = strlen(val) + (val - text);   /* first NUL or end */
    GString *s = g_string_new_len(text, val - text);
    g_string_append(s, value);
    g_string_append_len(s, eol, text + text_end - eol);
    if (text_end < len) {
        gssize grow = (gssize) s->len - (gssize) text_end;
        ck_assert((gssize) (len - text_end) > grow + 1);
        for (gssize i = 0; i < grow; i++)
            ck_assert_int_eq(text[text_end + i], 0);
        gsize tail = text_end + MAX(grow, 0);
        if (grow < 0)
            g_string_append_len(s, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", -grow);
        ck_assert(-grow <= 16);
        g_string_append_len(s, text + tail, len - tail);
        ck_assert_uint_eq(s->len, len);
    }
    ck_assert(g_file_set_contents(path, s->str, s->len, NULL));
    g_string_free(s, TRUE);
}

/* Renames KEY= to NEW_KEY= (same length) in NAME's descriptor. */
void rename_key(const char *name, const char *key, const char *new_key)
{
    ck_assert_uint_eq(strlen(key), strlen(new_key));
    g_autofree char *path = path_of(name), *text = NULL;
    gsize len = 0;
    char *at = find_key(name, key, &text, &len);
    memcpy(at + 1, new_key, strlen(new_key));
    ck_assert(g_file_set_contents(path, text, len, NULL));
}

void check_files(VcfParent *p, ...)
{
    const char *const *files = vcf_parent_get_files(p);
    va_list ap;
    va_start(ap, p);
    guint i = 0;
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL) {
        g_autofree char *path = path_of(name);
        char *real = realpath(path, NULL);
        ck_assert_ptr_nonnull(real);
        ck_assert_ptr_nonnull(files[i]);
        ck_assert_str_eq(files[i], real);
        free(real);
        i++;
    }
    va_end(ap);
    ck_assert_ptr_null(files[i]);
}

/* base <- delta1 <- delta2, each writing its own pattern over the last. */
void make_chain3(void)
{
    run("qemu-img", "create", "-q", "-f", "vmdk", "base.vmdk", "16M", NULL);
    write_pattern("base.vmdk", 0x11, 0, 2 * MiB);
    write_pattern("base.vmdk", 0x12, 12 * MiB + 4096, 300 * 1024);
    run("qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk",
        "delta1.vmdk", NULL);
    write_pattern("delta1.vmdk", 0x22, 1 * MiB, 2 * MiB);
    run("qemu-img", "create", "-q", "-f", "vmdk", "-b", "delta1.vmdk", "-F", "vmdk",
        "delta2.vmdk", NULL);
    write_pattern("delta2.vmdk", 0x33, 2 * MiB + 512, 1 * MiB);
    write_pattern("delta2.vmdk", 0x44, 8 * MiB, 64 * 1024);
}
