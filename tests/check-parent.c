/* Parent disks read through libvmdk: every byte must equal what qemu-img
 * (an independent reader) decodes from the same disk, for each VMDK layout
 * qemu-img can make, through delta chains and from several threads; and
 * hostile or broken chains must fail with the right errno, naming the file. */
#include "config.h"
#include "parent.h"
#include "link-cache.h"
#include "vcf-error.h"

#include "test-util.h"

#include <check.h>
#include <glib/gstdio.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define GiB ((guint64) 1024 * MiB)

static char *dir;

static void setup(void)
{
    GError *error = NULL;
    dir = g_dir_make_tmp("vcf-parent-XXXXXX", &error);
    ck_assert_msg(dir != NULL, "%s", error ? error->message : "");
}

static void run_argv(const char *cwd, const char *const *argv);

static void teardown(void)
{
    const char *argv[] = { "rm", "-rf", dir, NULL };
    run_argv(NULL, argv);
    g_free(dir);
}

/* ---- helpers ----------------------------------------------------------- */

static char *path_of(const char *name)
{
    return g_build_filename(dir, name, NULL);
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
static void run(const char *prog, ...) G_GNUC_NULL_TERMINATED;
static void run(const char *prog, ...)
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
    run_argv(dir, (const char *const *) argv->pdata);
}

static void write_pattern(const char *disk, int pattern, guint64 offset, guint64 len)
{
    g_autofree char *cmd = g_strdup_printf("write -P 0x%02x %" G_GUINT64_FORMAT
                                           " %" G_GUINT64_FORMAT, pattern, offset, len);
    run("qemu-io", "-f", "vmdk", "-c", cmd, disk, NULL);
}

/* The oracle: qemu-img's decoding of DISK as a raw file; returns its fd. */
static int oracle(const char *disk)
{
    g_autofree char *raw = g_strdup_printf("%s.raw", disk);
    run("qemu-img", "convert", "-f", "vmdk", "-O", "raw", disk, raw, NULL);
    g_autofree char *path = path_of(raw);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    return fd;
}

static VcfParent *open_ok(const char *name, guint n_chains)
{
    GError *error = NULL;
    g_autofree char *path = path_of(name);
    VcfParent *p = vcf_parent_open(path, dir, NULL, n_chains, &error);
    ck_assert_msg(p != NULL, "%s: %s", name, error ? error->message : "");
    return p;
}

/* Opening NAME must fail with errno CODE and a message holding each of the
 * NULL-terminated strings that follow (file names, mostly). */
static void open_fails(const char *name, const char *confine, int code, ...)
{
    GError *error = NULL;
    g_autofree char *path = path_of(name);
    VcfParent *p = vcf_parent_open(path, confine ? confine : dir, NULL, 2, &error);
    ck_assert_msg(p == NULL, "%s opened", name);
    ck_assert_ptr_nonnull(error);
    ck_assert_msg(error->domain == VCF_ERROR && error->code == code,
                  "%s: expected %s, got %d (%s)", name, g_strerror(code),
                  error->code, error->message);
    va_list ap;
    va_start(ap, code);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL)
        ck_assert_msg(strstr(error->message, s) != NULL,
                      "message \"%s\" lacks \"%s\"", error->message, s);
    va_end(ap);
    g_error_free(error);
}

static gsize raw_read(int fd, guint8 *buf, gsize len, guint64 offset)
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
static void compare(VcfParent *p, int raw, guint64 start, guint64 len)
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
static void compare_all(VcfParent *p, int raw)
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

static guint32 descriptor_cid(const char *name, const char *key)
{
    g_autofree char *path = path_of(name), *text = NULL;
    gsize len = 0;
    ck_assert(g_file_get_contents(path, &text, &len, NULL));
    g_autofree char *needle = g_strdup_printf("\n%s=", key);
    const char *at = find(text, MIN(len, (gsize) 65536), needle);
    ck_assert_ptr_nonnull(at);
    return (guint32) strtoul(at + strlen(needle), NULL, 16);
}

/* Replaces the value of KEY= in NAME's descriptor, embedded or not. In a
 * sparse file the descriptor is NUL-padded text, so the rest of its text
 * shifts into the padding and the file keeps its layout. */
static void edit_descriptor(const char *name, const char *key, const char *value)
{
    g_autofree char *path = path_of(name), *text = NULL;
    gsize len = 0;
    ck_assert(g_file_get_contents(path, &text, &len, NULL));
    g_autofree char *needle = g_strdup_printf("\n%s=", key);
    char *at = find(text, MIN(len, (gsize) 65536), needle);
    ck_assert_ptr_nonnull(at);
    char *val = at + strlen(needle);
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
static void rename_key(const char *name, const char *key, const char *new_key)
{
    ck_assert_uint_eq(strlen(key), strlen(new_key));
    g_autofree char *path = path_of(name), *text = NULL;
    gsize len = 0;
    ck_assert(g_file_get_contents(path, &text, &len, NULL));
    g_autofree char *needle = g_strdup_printf("\n%s=", key);
    char *at = find(text, MIN(len, (gsize) 65536), needle);
    ck_assert_ptr_nonnull(at);
    memcpy(at + 1, new_key, strlen(new_key));
    ck_assert(g_file_set_contents(path, text, len, NULL));
}

static void check_files(VcfParent *p, ...)
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
static void make_chain3(void)
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

/* ---- reading ----------------------------------------------------------- */

START_TEST(monolithic_sparse)
{
    /* Not a whole number of 64 KiB grains, to test the last one. */
    run("qemu-img", "create", "-q", "-f", "vmdk", "disk.vmdk", "16778752", NULL);
    write_pattern("disk.vmdk", 0x5a, 1 * MiB, 200 * 1024);
    write_pattern("disk.vmdk", 0xa5, 16778752 - 3 * 512, 3 * 512);
    run("qemu-io", "-f", "vmdk", "-c", "write -P 0x77 5000000 12345", "disk.vmdk", NULL);
    int raw = oracle("disk.vmdk");
    VcfParent *p = open_ok("disk.vmdk", 1);
    ck_assert_uint_eq(vcf_parent_get_size(p), 16778752);
    ck_assert_uint_eq(vcf_parent_get_cid(p), descriptor_cid("disk.vmdk", "CID"));
    check_files(p, "disk.vmdk", NULL);
    compare_all(p, raw);
    vcf_parent_free(p);
    close(raw);
}
END_TEST

START_TEST(stream_optimized)
{
    run("qemu-img", "create", "-q", "-f", "vmdk", "src.vmdk", "8M", NULL);
    write_pattern("src.vmdk", 0x5a, 1 * MiB, 200 * 1024);
    write_pattern("src.vmdk", 0x3c, 7 * MiB + 512, 512);
    run("qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized",
        "src.vmdk", "so.vmdk", NULL);
    int raw = oracle("so.vmdk");
    VcfParent *p = open_ok("so.vmdk", 1);
    check_files(p, "so.vmdk", NULL);
    compare_all(p, raw);
    vcf_parent_free(p);
    close(raw);
}
END_TEST

START_TEST(two_gb_extents)
{
    guint64 size = 2 * GiB + GiB / 2;
    g_autofree char *size_arg = g_strdup_printf("%" G_GUINT64_FORMAT, size);
    run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse",
        "two.vmdk", size_arg, NULL);
    write_pattern("two.vmdk", 0x5a, 1 * MiB, 200 * 1024);
    write_pattern("two.vmdk", 0x61, 2 * GiB - 64 * 1024, 192 * 1024);  /* across extents */
    write_pattern("two.vmdk", 0x62, 2 * GiB + 300 * MiB + 512, 4096);
    write_pattern("two.vmdk", 0x63, size - 64 * 1024, 64 * 1024);
    int raw = oracle("two.vmdk");
    VcfParent *p = open_ok("two.vmdk", 1);
    ck_assert_uint_eq(vcf_parent_get_size(p), size);
    check_files(p, "two.vmdk", "two-s001.vmdk", "two-s002.vmdk", NULL);
    compare(p, raw, 0, 4 * MiB);
    compare(p, raw, GiB, 1 * MiB);                       /* a hole */
    compare(p, raw, 2 * GiB - 1 * MiB - 3, 2 * MiB + 7);
    compare(p, raw, 2 * GiB + 299 * MiB, 2 * MiB);
    compare(p, raw, size - 1 * MiB - 5, 2 * MiB);        /* and past the end */
    vcf_parent_free(p);
    close(raw);
}
END_TEST

/* "日本語" in Windows' Shift_JIS and in UTF-8 (printf '%s' 日本語 | iconv -t CP932). */
#define NIHONGO_SJIS "\x93\xfa\x96\x7b\x8c\xea"
#define NIHONGO_UTF8 "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"

/* NAME's descriptor with encoding="ENCODING" after its version line and the
 * extent name FROM replaced by TO (bytes as given). */
static void recode_descriptor(const char *name, const char *encoding, const char *from,
                              const char *to)
{
    g_autofree char *path = path_of(name), *text = NULL;
    ck_assert(g_file_get_contents(path, &text, NULL, NULL));
    ck_assert_ptr_nonnull(strstr(text, "version=1\n"));
    g_autofree char *line = g_strdup_printf("version=1\nencoding=\"%s\"\n", encoding);
    g_auto(GStrv) parts = g_strsplit(text, "version=1\n", 2);
    g_autofree char *with = g_strjoinv(line, parts);
    g_autofree char *quoted_from = g_strdup_printf("\"%s\"", from);
    g_autofree char *quoted_to = g_strdup_printf("\"%s\"", to);
    ck_assert_ptr_nonnull(strstr(with, quoted_from));
    g_auto(GStrv) halves = g_strsplit(with, quoted_from, 2);
    g_autofree char *out = g_strjoinv(quoted_to, halves);
    ck_assert(g_file_set_contents(path, out, -1, NULL));
}

START_TEST(shift_jis_descriptor)
{
    /* Workstation on Japanese Windows writes encoding="Shift_JIS", which
     * libvmdk 20200926 cannot read, and extent names in that code page. */
    guint64 size = 2 * GiB + GiB / 2;
    g_autofree char *size_arg = g_strdup_printf("%" G_GUINT64_FORMAT, size);
    run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse",
        "sj.vmdk", size_arg, NULL);
    write_pattern("sj.vmdk", 0x5a, 1 * MiB, 200 * 1024);
    write_pattern("sj.vmdk", 0x61, 2 * GiB - 64 * 1024, 192 * 1024);  /* across extents */
    write_pattern("sj.vmdk", 0x63, size - 64 * 1024, 64 * 1024);
    recode_descriptor("sj.vmdk", "Shift_JIS", "sj-s002.vmdk", NIHONGO_SJIS "-s002.vmdk");
    /* The file name as Linux shows it (copied from NTFS: UTF-8), and the
     * very bytes of the descriptor for qemu-img, which does not convert. */
    run("mv", "sj-s002.vmdk", NIHONGO_UTF8 "-s002.vmdk", NULL);
    run("ln", NIHONGO_UTF8 "-s002.vmdk", NIHONGO_SJIS "-s002.vmdk", NULL);
    int raw = oracle("sj.vmdk");
    run("rm", NIHONGO_SJIS "-s002.vmdk", NULL);

    VcfParent *p = open_ok("sj.vmdk", 2);
    ck_assert_uint_eq(vcf_parent_get_size(p), size);
    ck_assert_uint_eq(vcf_parent_get_cid(p), descriptor_cid("sj.vmdk", "CID"));
    check_files(p, "sj.vmdk", "sj-s001.vmdk", NIHONGO_UTF8 "-s002.vmdk", NULL);
    compare(p, raw, 0, 4 * MiB);
    compare(p, raw, 2 * GiB - 1 * MiB - 3, 2 * MiB + 7);
    compare(p, raw, size - 1 * MiB - 5, 2 * MiB);
    vcf_parent_free(p);
    close(raw);

    /* Read as another code page, the name's bytes are not valid text. */
    g_autofree char *path = path_of("sj.vmdk"), *text = NULL;
    ck_assert(g_file_get_contents(path, &text, NULL, NULL));
    g_auto(GStrv) parts = g_strsplit(text, "\"Shift_JIS\"", 2);
    g_autofree char *korean = g_strjoinv("\"windows-949-2000\"", parts);
    ck_assert(g_file_set_contents(path, korean, -1, NULL));
    g_autofree char *where = g_strdup_printf("%s:10: text is not valid windows-949-2000", path);
    open_fails("sj.vmdk", NULL, EINVAL, where, NULL);
}
END_TEST

START_TEST(descriptor_encoding_refused)
{
    run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse",
        "e.vmdk", "8M", NULL);
    run("cp", "e.vmdk", "e.orig", NULL);
    g_autofree char *e = path_of("e.vmdk");
    /* Never EIO: nothing was lost, the disk is just not one we can read. */
    recode_descriptor("e.vmdk", "klingon-8", "e-s001.vmdk", "e-s001.vmdk");
    open_fails("e.vmdk", NULL, EINVAL, e, "unknown encoding= \"klingon-8\"", NULL);
    run("cp", "e.orig", "e.vmdk", NULL);
    /* 0x83 0x22: a Shift_JIS lead byte, then a quote. */
    recode_descriptor("e.vmdk", "Shift_JIS", "e-s001.vmdk", "e\x83");
    g_autofree char *where = g_strdup_printf("%s:9: text is not valid Shift_JIS", e);
    open_fails("e.vmdk", NULL, EINVAL, where, NULL);
    /* A descriptor libvmdk cannot parse. */
    g_autofree char *bad = path_of("bad.vmdk");
    ck_assert(g_file_set_contents(bad, "# Disk DescriptorFile\nversion=1\nRW x\n", -1, NULL));
    open_fails("bad.vmdk", NULL, EINVAL, bad, NULL);
}
END_TEST

START_TEST(monolithic_flat)
{
    run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat",
        "flat.vmdk", "8M", NULL);
    write_pattern("flat.vmdk", 0x5a, 1 * MiB, 200 * 1024);
    write_pattern("flat.vmdk", 0x6b, 8 * MiB - 512, 512);
    int raw = oracle("flat.vmdk");
    VcfParent *p = open_ok("flat.vmdk", 1);
    ck_assert_uint_eq(vcf_parent_get_cid(p), descriptor_cid("flat.vmdk", "CID"));
    check_files(p, "flat.vmdk", "flat-flat.vmdk", NULL);
    compare_all(p, raw);
    vcf_parent_free(p);
    close(raw);
}
END_TEST

START_TEST(chain_of_three)
{
    make_chain3();
    int raw = oracle("delta2.vmdk");
    VcfParent *p = open_ok("delta2.vmdk", 1);
    ck_assert_uint_eq(vcf_parent_get_cid(p), descriptor_cid("delta2.vmdk", "CID"));
    check_files(p, "delta2.vmdk", "delta1.vmdk", "base.vmdk", NULL);
    compare_all(p, raw);
    vcf_parent_free(p);
    close(raw);
    /* A middle link opens as its own disk. */
    raw = oracle("delta1.vmdk");
    p = open_ok("delta1.vmdk", 1);
    check_files(p, "delta1.vmdk", "base.vmdk", NULL);
    compare_all(p, raw);
    vcf_parent_free(p);
    close(raw);
}
END_TEST

/* Links of every layout in one chain, with descriptor-based deltas. */
START_TEST(mixed_chain)
{
    run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat",
        "base.vmdk", "8M", NULL);
    write_pattern("base.vmdk", 0x11, 0, 3 * MiB);
    run("qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk",
        "d1.vmdk", NULL);
    write_pattern("d1.vmdk", 0x22, 1 * MiB, 1 * MiB);
    run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse",
        "-b", "d1.vmdk", "-F", "vmdk", "d2.vmdk", NULL);
    write_pattern("d2.vmdk", 0x33, 1 * MiB + 512 * 1024, 2 * MiB);
    int raw = oracle("d2.vmdk");
    VcfParent *p = open_ok("d2.vmdk", 3);
    check_files(p, "d2.vmdk", "d2-s001.vmdk", "d1.vmdk", "base.vmdk",
                "base-flat.vmdk", NULL);
    compare_all(p, raw);
    vcf_parent_free(p);
    close(raw);
}
END_TEST

/* An absolute parentFileNameHint inside the confine folder is fine. */
START_TEST(absolute_parent)
{
    run("qemu-img", "create", "-q", "-f", "vmdk", "base.vmdk", "8M", NULL);
    write_pattern("base.vmdk", 0x11, 0, 1 * MiB);
    g_autofree char *base = path_of("base.vmdk");
    run("qemu-img", "create", "-q", "-f", "vmdk", "-b", base, "-F", "vmdk",
        "d1.vmdk", NULL);
    write_pattern("d1.vmdk", 0x22, 512 * 1024, 1 * MiB);
    int raw = oracle("d1.vmdk");
    VcfParent *p = open_ok("d1.vmdk", 1);
    check_files(p, "d1.vmdk", "base.vmdk", NULL);
    compare_all(p, raw);
    vcf_parent_free(p);
    close(raw);
}
END_TEST

typedef struct {
    VcfParent *parent;
    const guint8 *want;
    guint64 size;
    guint seed;
    guint mismatches;
    guint failures;
} Reader;

static gpointer reader_thread(gpointer data)
{
    Reader *r = data;
    GRand *rand = g_rand_new_with_seed(r->seed);
    guint8 *buf = g_malloc(300 * 1024);
    for (int i = 0; i < 300; i++) {
        gsize len = g_rand_int_range(rand, 1, 300 * 1024);
        guint64 off = g_rand_int_range(rand, 0, (gint32) (r->size + 4096));
        GError *error = NULL;
        if (!vcf_parent_read(r->parent, buf, len, off, &error)) {
            r->failures++;
            g_clear_error(&error);
            continue;
        }
        for (gsize j = 0; j < len; j++) {
            guint8 want = off + j < r->size ? r->want[off + j] : 0;
            if (buf[j] != want) {
                r->mismatches++;
                break;
            }
        }
    }
    g_free(buf);
    g_rand_free(rand);
    return NULL;
}

START_TEST(parallel_reads)
{
    make_chain3();
    int raw = oracle("delta2.vmdk");
    VcfParent *p = open_ok("delta2.vmdk", 3);
    guint64 size = vcf_parent_get_size(p);
    guint8 *want = g_malloc(size);
    ck_assert_uint_eq(raw_read(raw, want, size, 0), size);
    Reader readers[8];
    GThread *threads[8];
    for (guint i = 0; i < 8; i++) {
        readers[i] = (Reader) { .parent = p, .want = want, .size = size, .seed = i + 1 };
        threads[i] = g_thread_new("reader", reader_thread, &readers[i]);
    }
    for (guint i = 0; i < 8; i++) {
        g_thread_join(threads[i]);
        ck_assert_uint_eq(readers[i].failures, 0);
        ck_assert_uint_eq(readers[i].mismatches, 0);
    }
    g_free(want);
    vcf_parent_free(p);
    close(raw);
}
END_TEST

/* libvmdk's own extent opening reads a monolithicSparse disk's extent by the
 * name in its embedded descriptor: after a rename it would read a decoy
 * left under the old name. We must read the renamed file. */
START_TEST(renamed_sparse_reads_itself)
{
    run("qemu-img", "create", "-q", "-f", "vmdk", "disk.vmdk", "8M", NULL);
    write_pattern("disk.vmdk", 0x5a, 1 * MiB, 200 * 1024);
    run("mv", "disk.vmdk", "renamed.vmdk", NULL);
    VcfParent *p = open_ok("renamed.vmdk", 1);   /* no file of the old name */
    vcf_parent_free(p);
    run("qemu-img", "create", "-q", "-f", "vmdk", "disk.vmdk", "8M", NULL);
    write_pattern("disk.vmdk", 0xd0, 0, 8 * MiB);   /* the decoy */
    int raw = oracle("renamed.vmdk");
    p = open_ok("renamed.vmdk", 2);
    check_files(p, "renamed.vmdk", NULL);
    compare_all(p, raw);
    guint8 b = 0;
    ck_assert(vcf_parent_read(p, &b, 1, 1 * MiB, NULL));
    ck_assert_uint_eq(b, 0x5a);
    vcf_parent_free(p);
    close(raw);
}
END_TEST

/* A chain of 255 links opens; 256 is refused. The links are text
 * descriptors sharing one empty sparse extent, so they cost nothing. */
static void make_long_chain(guint n_deltas)
{
    run("qemu-img", "create", "-q", "-f", "vmdk", "base.vmdk", "8M", NULL);
    write_pattern("base.vmdk", 0x5a, 1 * MiB, 64 * 1024);
    run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse",
        "empty.vmdk", "8M", NULL);
    guint32 parent_cid = descriptor_cid("base.vmdk", "CID");
    g_autofree char *parent = g_strdup("base.vmdk");
    for (guint i = 1; i <= n_deltas; i++) {
        g_autofree char *name = g_strdup_printf("l%03u.vmdk", i);
        g_autofree char *path = path_of(name);
        g_autofree char *text = g_strdup_printf(
            "# Disk DescriptorFile\nversion=1\nCID=%08x\nparentCID=%08x\n"
            "createType=\"twoGbMaxExtentSparse\"\nparentFileNameHint=\"%s\"\n"
            "# Extent description\nRW 16384 SPARSE \"empty-s001.vmdk\"\n"
            "\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n",
            0x10000u + i, parent_cid, parent);
        ck_assert(g_file_set_contents(path, text, -1, NULL));
        parent_cid = 0x10000u + i;
        g_free(parent);
        parent = g_steal_pointer(&name);
    }
}

START_TEST(depth_limit)
{
    make_long_chain(255);
    open_fails("l255.vmdk", NULL, EINVAL, "255", NULL);
    VcfParent *p = open_ok("l254.vmdk", 1);
    /* 254 descriptors, their one shared extent, the base. */
    ck_assert_uint_eq(g_strv_length((char **) vcf_parent_get_files(p)), 256);
    guint8 buf[3] = { 0 };
    ck_assert(vcf_parent_read(p, buf, 3, 1 * MiB - 1, NULL));
    ck_assert_uint_eq(buf[0], 0);
    ck_assert_uint_eq(buf[1], 0x5a);
    ck_assert_uint_eq(buf[2], 0x5a);
    vcf_parent_free(p);
}
END_TEST

/* ---- refusals ---------------------------------------------------------- */

START_TEST(parent_outside_confine)
{
    g_autofree char *lib = path_of("lib");
    g_autofree char *outside = path_of("outside");
    ck_assert_int_eq(g_mkdir(lib, 0755), 0);
    ck_assert_int_eq(g_mkdir(outside, 0755), 0);
    run("qemu-img", "create", "-q", "-f", "vmdk", "outside/base.vmdk", "8M", NULL);
    /* By a relative name that climbs out. */
    run("qemu-img", "create", "-q", "-f", "vmdk", "-b", "../outside/base.vmdk",
        "-F", "vmdk", "lib/d1.vmdk", NULL);
    g_autofree char *d1 = path_of("lib/d1.vmdk");
    open_fails("lib/d1.vmdk", lib, EINVAL, d1, "outside", NULL);
    /* By a symbolic link inside the folder. */
    run("ln", "-s", "../outside/base.vmdk", "lib/base.vmdk", NULL);
    run("qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk",
        "-F", "vmdk", "lib/d2.vmdk", NULL);
    g_autofree char *d2 = path_of("lib/d2.vmdk");
    open_fails("lib/d2.vmdk", lib, EINVAL, d2, "outside", NULL);
    /* The whole thing opens with the wider confine folder. */
    VcfParent *p = open_ok("lib/d2.vmdk", 1);
    vcf_parent_free(p);
    /* The disk itself outside. */
    open_fails("outside/base.vmdk", lib, EINVAL, "outside", NULL);
}
END_TEST

START_TEST(extent_outside_confine)
{
    g_autofree char *lib = path_of("lib");
    ck_assert_int_eq(g_mkdir(lib, 0755), 0);
    run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat",
        "flat.vmdk", "8M", NULL);
    /* A descriptor naming an extent by a path. */
    run("cp", "flat.vmdk", "lib/a.vmdk", NULL);
    g_autofree char *a = path_of("lib/a.vmdk");
    {
        g_autofree char *text = NULL;
        ck_assert(g_file_get_contents(a, &text, NULL, NULL));
        g_autofree char *edited = NULL;
        char **parts = g_strsplit(text, "\"flat-flat.vmdk\"", -1);
        edited = g_strjoinv("\"../flat-flat.vmdk\"", parts);
        g_strfreev(parts);
        ck_assert(g_file_set_contents(a, edited, -1, NULL));
    }
    open_fails("lib/a.vmdk", NULL, EINVAL, a, "../flat-flat.vmdk", NULL);
    /* A plain name that is a symbolic link out. */
    run("cp", "flat.vmdk", "lib/flat.vmdk", NULL);
    run("ln", "-s", "../flat-flat.vmdk", "lib/flat-flat.vmdk", NULL);
    g_autofree char *f = path_of("lib/flat.vmdk");
    open_fails("lib/flat.vmdk", lib, EINVAL, f, "outside", NULL);
    /* A missing extent. */
    run("rm", "flat-flat.vmdk", NULL);
    g_autofree char *ext = path_of("flat-flat.vmdk");
    open_fails("flat.vmdk", NULL, ENOENT, ext, NULL);
}
END_TEST

START_TEST(missing_parent)
{
    make_chain3();
    run("rm", "base.vmdk", NULL);
    g_autofree char *d1 = path_of("delta1.vmdk");
    g_autofree char *base = path_of("base.vmdk");
    open_fails("delta2.vmdk", NULL, ENOENT, d1, base, NULL);
    open_fails("nothing.vmdk", NULL, ENOENT, "nothing.vmdk", NULL);
}
END_TEST

START_TEST(parent_cid_mismatch)
{
    make_chain3();
    edit_descriptor("delta1.vmdk", "parentCID", "1234abcd");
    g_autofree char *d1 = path_of("delta1.vmdk");
    g_autofree char *base = path_of("base.vmdk");
    g_autofree char *expect = g_strdup_printf("parentCID 1234abcd does not match CID %08x of",
                                              descriptor_cid("base.vmdk", "CID"));
    open_fails("delta2.vmdk", NULL, EIO, d1, base, expect, NULL);
}
END_TEST

START_TEST(chain_loops)
{
    make_chain3();
    /* delta1 -> delta2 -> delta1 */
    edit_descriptor("delta1.vmdk", "parentFileNameHint", "\"delta2.vmdk\"");
    g_autofree char *d1 = path_of("delta1.vmdk");
    open_fails("delta2.vmdk", NULL, EINVAL, d1, "loop", NULL);
    /* A delta that names itself. */
    edit_descriptor("delta1.vmdk", "parentFileNameHint", "\"delta1.vmdk\"");
    open_fails("delta1.vmdk", NULL, EINVAL, d1, "loop", NULL);
}
END_TEST

START_TEST(delta_without_parent_name)
{
    make_chain3();
    g_autofree char *d2 = path_of("delta2.vmdk");
    /* An empty name: libvmdk itself refuses it. */
    edit_descriptor("delta2.vmdk", "parentFileNameHint", "\"\"");
    open_fails("delta2.vmdk", NULL, EIO, d2, NULL);
    /* No parentFileNameHint line at all (its key renamed), but a parentCID. */
    edit_descriptor("delta2.vmdk", "parentFileNameHint", "\"delta1.vmdk\"");
    vcf_parent_free(open_ok("delta2.vmdk", 1));   /* restored: opens again */
    rename_key("delta2.vmdk", "parentFileNameHint", "xarentFileNameHint");
    open_fails("delta2.vmdk", NULL, EINVAL, d2, "parentFileNameHint", NULL);
}
END_TEST

START_TEST(parent_smaller_than_child)
{
    run("qemu-img", "create", "-q", "-f", "vmdk", "base.vmdk", "8M", NULL);
    run("qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk",
        "big.vmdk", "16M", NULL);
    g_autofree char *big = path_of("big.vmdk");
    open_fails("big.vmdk", NULL, EIO, big, NULL);
}
END_TEST

START_TEST(garbage_and_truncated)
{
    g_autofree char *path = path_of("garbage.vmdk");
    GRand *rand = g_rand_new_with_seed(7);
    guint8 junk[65536];
    for (gsize i = 0; i < sizeof junk; i++)
        junk[i] = g_rand_int(rand);
    g_rand_free(rand);
    ck_assert(g_file_set_contents(path, (char *) junk, sizeof junk, NULL));
    open_fails("garbage.vmdk", NULL, EINVAL, path, NULL);   /* not a VMDK at all */
    /* Sparse magic followed by junk: a damaged disk. */
    memcpy(junk, "KDMV", 4);
    ck_assert(g_file_set_contents(path, (char *) junk, sizeof junk, NULL));
    open_fails("garbage.vmdk", NULL, EIO, path, NULL);

    g_autofree char *empty = path_of("empty.vmdk");
    ck_assert(g_file_set_contents(empty, "", 0, NULL));
    open_fails("empty.vmdk", NULL, EINVAL, empty, NULL);
    g_autofree char *folder = path_of("folder.vmdk");
    ck_assert_int_eq(g_mkdir(folder, 0755), 0);
    open_fails("folder.vmdk", NULL, EINVAL, folder, NULL);

    run("qemu-img", "create", "-q", "-f", "vmdk", "disk.vmdk", "8M", NULL);
    write_pattern("disk.vmdk", 0x5a, 0, 8 * MiB);
    /* Cut inside the header, the descriptor, the grain tables, the data:
     * each must fail to open or fail to read, never crash or invent data. */
    static const off_t cuts[] = { 100, 1000, 8192, 70000, 200000, 4 * MiB };
    for (guint i = 0; i < G_N_ELEMENTS(cuts); i++) {
        g_autofree char *name = g_strdup_printf("cut%u.vmdk", i);
        g_autofree char *cut = path_of(name);
        run("cp", "disk.vmdk", name, NULL);
        ck_assert_int_eq(truncate(cut, cuts[i]), 0);
        GError *error = NULL;
        VcfParent *p = vcf_parent_open(cut, dir, NULL, 1, &error);
        if (p == NULL) {
            ck_assert_msg(strstr(error->message, cut) != NULL, "%s", error->message);
            g_error_free(error);
            continue;
        }
        guint8 *buf = g_malloc(8 * MiB);
        gboolean ok = vcf_parent_read(p, buf, 8 * MiB, 0, &error);
        ck_assert_msg(!ok, "truncated at %ld, read all", (long) cuts[i]);
        ck_assert_int_eq(error->code, EIO);
        ck_assert_msg(strstr(error->message, cut) != NULL && strstr(error->message, "offset"),
                      "%s", error->message);
        g_error_free(error);
        g_free(buf);
        vcf_parent_free(p);
    }
}
END_TEST

/* ---- the link cache ---------------------------------------------------- */

static VcfParent *open_cached(const char *name, VcfLinkCache *cache, GError **error)
{
    g_autofree char *path = path_of(name);
    return vcf_parent_open(path, dir, cache, 2, error);
}

static void expect_counts(VcfLinkCache *cache, guint64 stored, guint64 hits)
{
    guint64 s = 0, h = 0;
    vcf_link_cache_counts(cache, &s, &h);
    ck_assert_msg(s == stored && h == hits, "cache stored %" G_GUINT64_FORMAT " and hit %"
                  G_GUINT64_FORMAT ", not %" G_GUINT64_FORMAT " and %" G_GUINT64_FORMAT,
                  s, h, stored, hits);
}

/* A chain opened again is served from what libvmdk found the first time,
 * reads the same bytes, and is opened whole again once a file changed: a
 * change the cache hid would be served as the old chain. */
START_TEST(link_cache)
{
    make_chain3();
    int raw = oracle("delta2.vmdk");
    g_autoptr(VcfLinkCache) cache = vcf_link_cache_new(0);
    GError *error = NULL;
    VcfParent *p = open_cached("delta2.vmdk", cache, &error);
    ck_assert_msg(p != NULL, "%s", error ? error->message : "");
    expect_counts(cache, 3, 0);
    compare_all(p, raw);
    vcf_parent_free(p);
    p = open_cached("delta2.vmdk", cache, &error);
    ck_assert_msg(p != NULL, "%s", error ? error->message : "");
    expect_counts(cache, 3, 3);
    check_files(p, "delta2.vmdk", "delta1.vmdk", "base.vmdk", NULL);
    compare_all(p, raw);
    vcf_parent_free(p);
    /* Its lower part, from the cache too. */
    p = open_cached("delta1.vmdk", cache, &error);
    ck_assert_msg(p != NULL, "%s", error ? error->message : "");
    expect_counts(cache, 3, 5);
    vcf_parent_free(p);
    close(raw);

    edit_descriptor("delta1.vmdk", "parentCID", "1234abcd");
    p = open_cached("delta2.vmdk", cache, &error);
    ck_assert_msg(p == NULL, "a changed chain opened from the cache");
    ck_assert_msg(error->code == EIO && strstr(error->message, "parentCID 1234abcd") != NULL,
                  "%s", error->message);
    g_clear_error(&error);
    /* delta2 and base came from the cache, delta1 from libvmdk. */
    expect_counts(cache, 4, 7);

    /* Files that changed within the settle time are not kept. */
    g_autoptr(VcfLinkCache) settled = vcf_link_cache_new((gint64)3600 * G_USEC_PER_SEC);
    p = open_cached("base.vmdk", settled, &error);
    ck_assert_msg(p != NULL, "%s", error ? error->message : "");
    vcf_parent_free(p);
    expect_counts(settled, 0, 0);
}
END_TEST

/* libvmdk opens a chain for reading at its first read, long after it was
 * checked: a file changed in between must be refused there (and for good),
 * not read unchecked. */
START_TEST(first_read_sees_change)
{
    make_chain3();
    VcfParent *p = open_ok("delta2.vmdk", 2);
    /* New bytes, CID and all (qemu-io moves the CID at its first write). */
    write_pattern("base.vmdk", 0x5c, 3 * MiB, 64 * 1024);
    guint8 buf[4096];
    for (int i = 0; i < 2; i++) {
        GError *error = NULL;
        ck_assert_msg(!vcf_parent_read(p, buf, sizeof buf, 3 * MiB, &error),
                      "a changed base read without error");
        ck_assert_msg(error->code == EIO && strstr(error->message, "base.vmdk") != NULL
                      && strstr(error->message, "changed") != NULL, "%s", error->message);
        g_error_free(error);
    }
    vcf_parent_free(p);
}
END_TEST

typedef struct {
    VcfParent *parent;
    guint failures;
} FirstReader;

static gpointer first_reader(gpointer data)
{
    FirstReader *r = data;
    guint8 buf[4096];
    for (int i = 0; i < 20; i++) {
        GError *error = NULL;
        if (!vcf_parent_read(r->parent, buf, sizeof buf, (guint64)i * 4096, &error)) {
            ck_assert_int_eq(error->code, EIO);
            r->failures++;
            g_error_free(error);
        }
    }
    return NULL;
}

/* Readers that arrive together at a chain that can no longer be opened
 * all get EIO, and none waits for ever. */
START_TEST(parallel_first_reads_fail)
{
    make_chain3();
    VcfParent *p = open_ok("delta2.vmdk", 3);
    g_autofree char *mid = path_of("delta1.vmdk");
    ck_assert_int_eq(unlink(mid), 0);
    FirstReader readers[6];
    GThread *threads[6];
    for (guint i = 0; i < 6; i++) {
        readers[i] = (FirstReader) { .parent = p };
        threads[i] = g_thread_new("first", first_reader, &readers[i]);
    }
    for (guint i = 0; i < 6; i++) {
        g_thread_join(threads[i]);
        ck_assert_uint_eq(readers[i].failures, 20);
    }
    vcf_parent_free(p);
}
END_TEST

/* A file replaced by another of the same name and size, or an extent name
 * led elsewhere, is opened whole again, and its new bytes are read. */
START_TEST(link_cache_sees_replacement)
{
    make_chain3();
    g_autoptr(VcfLinkCache) cache = vcf_link_cache_new(0);
    GError *error = NULL;
    VcfParent *p = open_cached("delta2.vmdk", cache, &error);
    ck_assert_msg(p != NULL, "%s", error ? error->message : "");
    vcf_parent_free(p);
    expect_counts(cache, 3, 0);
    /* A copy of delta1 with other bytes in its first grain (at 64 KiB in
     * the file, 1 MiB in the disk), CID and size unchanged, moved over the
     * original. */
    run("cp", "delta1.vmdk", "new.vmdk", NULL);
    run("sh", "-c", "printf 'other bytes' | "
        "dd of=new.vmdk bs=1 seek=65536 conv=notrunc status=none", NULL);
    struct stat a, b;
    g_autofree char *old_path = path_of("delta1.vmdk");
    g_autofree char *new_path = path_of("new.vmdk");
    ck_assert_int_eq(stat(old_path, &a), 0);
    ck_assert_int_eq(stat(new_path, &b), 0);
    ck_assert_int_eq(a.st_size, b.st_size);
    ck_assert_int_eq(rename(new_path, old_path), 0);
    int raw = oracle("delta2.vmdk");
    char seen[11];
    ck_assert_uint_eq(raw_read(raw, (guint8 *)seen, sizeof seen, 1 * MiB), sizeof seen);
    ck_assert_msg(memcmp(seen, "other bytes", sizeof seen) == 0, "the new bytes are not seen");
    p = open_cached("delta2.vmdk", cache, &error);
    ck_assert_msg(p != NULL, "%s", error ? error->message : "");
    expect_counts(cache, 4, 2);
    compare_all(p, raw);
    vcf_parent_free(p);
    close(raw);
}
END_TEST

static Suite *parent_suite(void)
{
    Suite *s = suite_create("parent");
    TCase *tc = tcase_create("read");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, monolithic_sparse);
    tcase_add_test(tc, stream_optimized);
    tcase_add_test(tc, two_gb_extents);
    tcase_add_test(tc, shift_jis_descriptor);
    tcase_add_test(tc, monolithic_flat);
    tcase_add_test(tc, chain_of_three);
    tcase_add_test(tc, mixed_chain);
    tcase_add_test(tc, absolute_parent);
    tcase_add_test(tc, parallel_reads);
    tcase_add_test(tc, link_cache);
    tcase_add_test(tc, link_cache_sees_replacement);
    tcase_add_test(tc, first_read_sees_change);
    tcase_add_test(tc, parallel_first_reads_fail);
    tcase_add_test(tc, renamed_sparse_reads_itself);
    tcase_add_test(tc, depth_limit);
    suite_add_tcase(s, tc);
    tc = tcase_create("refuse");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, parent_outside_confine);
    tcase_add_test(tc, extent_outside_confine);
    tcase_add_test(tc, missing_parent);
    tcase_add_test(tc, parent_cid_mismatch);
    tcase_add_test(tc, chain_loops);
    tcase_add_test(tc, delta_without_parent_name);
    tcase_add_test(tc, parent_smaller_than_child);
    tcase_add_test(tc, garbage_and_truncated);
    tcase_add_test(tc, descriptor_encoding_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(parent_suite());
}
