/* The sparse delta store: what we write must read back, survive reopen and
 * crashes, be caught when corrupted, and be a VMDK that qemu-img (not our
 * code) accepts and decodes to the same bytes. */
#include "config.h"
#include "sparse.h"
#include "vcf-error.h"
#include "test-util.h"

#include <check.h>
#include <signal.h>
#include <sys/resource.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define G VCF_GRAIN_SIZE
#define DISK (8u * 1024 * 1024 + 3 * 512)   /* not a whole number of grains */

static char *dir;
static char *path;

static void setup(void)
{
    dir = test_tmpdir_new();
    path = g_build_filename(dir, "web1.vmdk", NULL);
}

static void teardown(void)
{
    g_free(path);
    test_tmpdir_free(dir);
}

static void fill(guint8 *buf, guint seed)
{
    GRand *r = g_rand_new_with_seed(seed);
    for (gsize i = 0; i < G; i++)
        buf[i] = g_rand_int(r);
    g_rand_free(r);
}

static VcfSparse *create(void)
{
    GError *error = NULL;
    VcfSparseParams p = { .capacity = DISK, .parent_cid = VCF_CID_NONE };
    VcfSparse *s = vcf_sparse_create(path, &p, &error);
    ck_assert_msg(s != NULL, "%s", error ? error->message : "");
    return s;
}

static VcfSparse *reopen(void)
{
    GError *error = NULL;
    VcfSparse *s = vcf_sparse_open(path, TRUE, &error);
    ck_assert_msg(s != NULL, "%s", error ? error->message : "");
    return s;
}

static void write_grain(VcfSparse *s, guint64 g, const guint8 *buf)
{
    GError *error = NULL;
    ck_assert_msg(vcf_sparse_write_grain(s, g, buf, 0, G, &error), "%s",
                  error ? error->message : "");
}

static void assert_grain(VcfSparse *s, guint64 g, const guint8 *want)
{
    GError *error = NULL;
    g_autofree guint8 *got = g_malloc(G);
    ck_assert_int_eq(vcf_sparse_grain_state(s, g), VCF_GRAIN_DATA);
    ck_assert_msg(vcf_sparse_read_grain(s, g, got, &error), "%s", error ? error->message : "");
    ck_assert(memcmp(got, want, G) == 0);
}

/* The store as qemu-img, an independent reader, sees it: it must pass
 * qemu-img check, and this is its qemu-img convert to raw. */
static GBytes *qemu_raw(void)
{
    const char *check[] = { "qemu-img", "check", "-f", "vmdk", path, NULL };
    ck_assert_int_eq(test_run(check, NULL), 0);
    g_autofree char *raw = g_build_filename(dir, "out.raw", NULL);
    const char *conv[] = { "qemu-img", "convert", "-f", "vmdk", "-O", "raw", path, raw, NULL };
    ck_assert_int_eq(test_run(conv, NULL), 0);
    return test_read_file(raw);
}

static void close_ok(VcfSparse *s)
{
    GError *error = NULL;
    ck_assert_msg(vcf_sparse_close(s, &error), "%s", error ? error->message : "");
}

START_TEST(write_reopen_read)
{
    guint8 a[G], b[G];
    fill(a, 1);
    fill(b, 2);
    VcfSparse *s = create();
    ck_assert_uint_eq(vcf_sparse_get_capacity(s), DISK);
    write_grain(s, 0, a);
    write_grain(s, 128, b);             /* last, partial grain */
    write_grain(s, 7, b);
    assert_grain(s, 0, a);
    close_ok(s);
    s = reopen();
    assert_grain(s, 0, a);
    assert_grain(s, 128, b);
    assert_grain(s, 7, b);
    ck_assert_int_eq(vcf_sparse_grain_state(s, 1), VCF_GRAIN_ABSENT);
    ck_assert_uint_eq(vcf_sparse_count_grains(s), 3);
    ck_assert_uint_eq(vcf_sparse_get_recovered_grains(s), 0);
    close_ok(s);
}
END_TEST

/* A new grain that is mostly zeros (a small write where no layer below
 * holds data) is written as its data only: the rest of its place is a hole
 * in the file, reads as zeros, and the file still holds the whole grain
 * (qemu-img checks and reads it). */
START_TEST(mostly_zero_grain_writes_its_data)
{
    guint8 a[G], z[G];
    fill(a, 5);
    memset(z, 0, G);
    memcpy(z + 8192, a, 4096);                      /* 4 KiB of data at 8 KiB */
    VcfSparse *s = create();
    write_grain(s, 127, z);                         /* the file's last grain */
    assert_grain(s, 127, z);
    close_ok(s);
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    off_t start = st.st_size - G;                   /* the grain is the file's end */
    off_t data = lseek(fd, start, SEEK_DATA);
    close(fd);
    ck_assert_msg(data >= start + 8192, "the grain's zeros were written (data at %jd, "
                  "grain at %jd)", (intmax_t)data, (intmax_t)start);
    g_autoptr(GBytes) bytes = qemu_raw();
    ck_assert_uint_eq(g_bytes_get_size(bytes), DISK);
    ck_assert(memcmp((const guint8 *)g_bytes_get_data(bytes, NULL) + 127 * G, z, G) == 0);
    s = reopen();
    assert_grain(s, 127, z);
    write_grain(s, 3, z);                           /* again after a reopen */
    assert_grain(s, 3, z);
    close_ok(s);
}
END_TEST

/* qemu-img, an independent VMDK implementation, must accept the store and
 * decode it to what we wrote. */
START_TEST(qemu_reads_store)
{
    guint8 a[G], b[G];
    fill(a, 3);
    fill(b, 4);
    VcfSparse *s = create();
    write_grain(s, 5, a);
    write_grain(s, 127, b);
    close_ok(s);
    g_autoptr(GBytes) bytes = qemu_raw();
    gsize len;
    const guint8 *d = g_bytes_get_data(bytes, &len);
    ck_assert_uint_eq(len, DISK);
    g_autofree guint8 *want = g_malloc0(DISK);
    memcpy(want + 5 * G, a, G);
    memcpy(want + 127 * G, b, G);
    ck_assert(memcmp(d, want, DISK) == 0);
}
END_TEST

/* A crash after data but before sync: the grain table on disk never points
 * at data that was not made durable first, and the store still opens. */
START_TEST(crash_before_sync_keeps_old)
{
    guint8 a[G], b[G];
    fill(a, 5);
    fill(b, 6);
    VcfSparse *s = create();
    write_grain(s, 3, a);
    GError *error = NULL;
    ck_assert(vcf_sparse_sync(s, &error));
    write_grain(s, 9, b);                /* new grain, never synced */
    vcf_sparse_free(s);                  /* "kill -9" */
    s = reopen();
    assert_grain(s, 3, a);
    ck_assert_int_eq(vcf_sparse_grain_state(s, 9), VCF_GRAIN_ABSENT);
    close_ok(s);
    const char *check[] = { "qemu-img", "check", "-f", "vmdk", path, NULL };
    ck_assert_int_eq(test_run(check, NULL), 0);
}
END_TEST

/* A grain rewritten in place and not synced: after the crash the data in
 * the file is new and its checksum re-derived, so reads do not fail. */
START_TEST(crash_after_rewrite_recovers_sums)
{
    guint8 a[G], b[G];
    fill(a, 7);
    fill(b, 8);
    VcfSparse *s = create();
    write_grain(s, 2, a);
    close_ok(s);
    s = reopen();
    memcpy(a + 100, b, 4096);
    GError *error = NULL;
    ck_assert(vcf_sparse_write_grain(s, 2, a, 100, 4096, &error));
    vcf_sparse_free(s);
    s = reopen();
    ck_assert_uint_eq(vcf_sparse_get_recovered_grains(s), 1);
    assert_grain(s, 2, a);
    close_ok(s);
    s = reopen();
    ck_assert_uint_eq(vcf_sparse_get_recovered_grains(s), 0);
    close_ok(s);
}
END_TEST

START_TEST(corrupt_grain_is_eio)
{
    guint8 a[G];
    fill(a, 9);
    VcfSparse *s = create();
    write_grain(s, 4, a);
    close_ok(s);
    /* Flip one byte of the stored grain, found by its contents. */
    g_autoptr(GBytes) bytes = test_read_file(path);
    gsize len;
    const guint8 *d = g_bytes_get_data(bytes, &len);
    const guint8 *at = memmem(d, len, a, G);
    ck_assert(at != NULL);
    off_t off = at - d + 777;
    int fd = open(path, O_RDWR);
    guint8 x = at[777] ^ 0x40;
    ck_assert_int_eq(pwrite(fd, &x, 1, off), 1);
    close(fd);
    s = reopen();
    g_autofree guint8 *buf = g_malloc(G);
    GError *error = NULL;
    ck_assert(!vcf_sparse_read_grain(s, 4, buf, &error));
    ck_assert_int_eq(error->code, EIO);
    ck_assert(strstr(error->message, path) != NULL);
    ck_assert(strstr(error->message, "checksum") != NULL);
    g_error_free(error);
    vcf_sparse_free(s);
}
END_TEST

static void expect_open_fails(const char *why)
{
    GError *error = NULL;
    VcfSparse *s = vcf_sparse_open(path, TRUE, &error);
    ck_assert_msg(s == NULL, "opened a store with %s", why);
    ck_assert_int_eq(error->code, EINVAL);
    ck_assert(strstr(error->message, path) != NULL);
    g_error_free(error);
}

static void poke(off_t off, const void *bytes, gsize len)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_eq(pwrite(fd, bytes, len, off), (ssize_t)len);
    close(fd);
}

START_TEST(hostile_headers)
{
    guint8 a[G];
    fill(a, 10);
    VcfSparse *s = create();
    write_grain(s, 1, a);
    close_ok(s);
    g_autoptr(GBytes) orig = test_read_file(path);

    poke(0, "XXXX", 4);
    expect_open_fails("a bad magic");
    ck_assert(g_file_set_contents(path, g_bytes_get_data(orig, NULL), g_bytes_get_size(orig), NULL));

    guint64 big = G_GUINT64_CONSTANT(1) << 60;
    poke(12, &big, 8);
    expect_open_fails("an absurd capacity");
    ck_assert(g_file_set_contents(path, g_bytes_get_data(orig, NULL), g_bytes_get_size(orig), NULL));

    guint64 grain = 7;
    poke(20, &grain, 8);
    expect_open_fails("an odd grain size");
    ck_assert(g_file_set_contents(path, g_bytes_get_data(orig, NULL), g_bytes_get_size(orig), NULL));

    /* Truncate the file so the stored grain's entry points past the end. */
    ck_assert_int_eq(truncate(path, g_bytes_get_size(orig) - G / 2), 0);
    expect_open_fails("a grain past end of file");

    /* desc_offset + desc_size must not wrap round to look in range. */
    guint64 wrap = G_MAXUINT64 - 5;
    poke(28, &wrap, 8);
    GError *error = NULL;
    ck_assert(vcf_sparse_open(path, TRUE, &error) == NULL);
    ck_assert_msg(strstr(error->message, "no embedded descriptor") != NULL, "%s", error->message);
    g_clear_error(&error);
    ck_assert(g_file_set_contents(path, g_bytes_get_data(orig, NULL), g_bytes_get_size(orig), NULL));

    ck_assert_int_eq(truncate(path, 100), 0);
    expect_open_fails("a truncated header");
}
END_TEST

/* A creation that fails half way leaves neither file: a retry would find
 * the sums file and fail with EEXIST. The file size limit lets the delta
 * (128 KiB for 1 GiB) be made but not its sums (4 KiB + 8 bytes a grain). */
START_TEST(failed_create_leaves_nothing)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = { .rlim_cur = 130 * 1024, .rlim_max = RLIM_INFINITY };
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    GError *error = NULL;
    VcfSparseParams p = { .capacity = G_GUINT64_CONSTANT(1) << 30, .parent_cid = VCF_CID_NONE };
    ck_assert(vcf_sparse_create(path, &p, &error) == NULL);
    g_clear_error(&error);
    g_autofree char *sums = g_strconcat(path, ".xxh", NULL);
    ck_assert_msg(!g_file_test(path, G_FILE_TEST_EXISTS), "the delta was left");
    ck_assert_msg(!g_file_test(sums, G_FILE_TEST_EXISTS), "the sums file was left");
    rl.rlim_cur = RLIM_INFINITY;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    VcfSparse *s = vcf_sparse_create(path, &p, &error);
    ck_assert_msg(s != NULL, "retry: %s", error ? error->message : "");
    close_ok(s);
}
END_TEST

START_TEST(capacity_limits)
{
    GError *error = NULL;
    VcfSparseParams p = { .capacity = 0, .parent_cid = VCF_CID_NONE };
    ck_assert(vcf_sparse_create(path, &p, &error) == NULL);
    ck_assert_int_eq(error->code, EINVAL);
    g_clear_error(&error);
    ck_assert(!g_file_test(path, G_FILE_TEST_EXISTS));
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("sparse");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, write_reopen_read);
    tcase_add_test(tc, qemu_reads_store);
    tcase_add_test(tc, mostly_zero_grain_writes_its_data);
    tcase_add_test(tc, crash_before_sync_keeps_old);
    tcase_add_test(tc, crash_after_rewrite_recovers_sums);
    tcase_add_test(tc, corrupt_grain_is_eio);
    tcase_add_test(tc, hostile_headers);
    tcase_add_test(tc, capacity_limits);
    tcase_add_test(tc, failed_create_leaves_nothing);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
