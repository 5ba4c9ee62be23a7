/* The composed disk (clone delta over a parent read through libvmdk),
 * checked against a model: a plain byte array that starts as qemu-img's
 * raw conversion of the parent and takes every write the disk takes. At
 * the end qemu-img, which knows nothing of us, must decode the delta over
 * its parent to the same bytes. */
#include "config.h"
#include "disk.h"
#include "freeze.h"
#include "vcf-error.h"
#include "test-util.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DISK_SIZE (6u * 1024 * 1024 + 64 * 1024 + 4096)  /* a partial last grain */

static char *dir;
static char *parent_path;
static char *store_path;
static guint8 *model;

static void run_ok(const char *const *argv)
{
    ck_assert_msg(test_run(argv, NULL) == 0, "%s failed", argv[0]);
}

static void setup(void)
{
    dir = test_tmpdir_new();
    parent_path = g_build_filename(dir, "base.vmdk", NULL);
    store_path = g_build_filename(dir, "clone.vmdk", NULL);
    g_autofree char *size = g_strdup_printf("%u", DISK_SIZE);
    const char *create[] = { "qemu-img", "create", "-q", "-f", "vmdk", "-o",
                             "subformat=monolithicSparse", parent_path, size, NULL };
    run_ok(create);
    const char *io[] = { "qemu-io", "-f", "vmdk",
                         "-c", "write -P 0x11 0 1M",
                         "-c", "write -P 0x22 1572864 70000",
                         "-c", "write -P 0x33 5242880 1M",
                         "-c", "write -P 0x44 6356992 4096",   /* inside the last grain */
                         parent_path, NULL };
    ck_assert_int_eq(test_run(io, NULL), 0);
    g_autofree char *raw = g_build_filename(dir, "base.raw", NULL);
    const char *conv[] = { "qemu-img", "convert", "-O", "raw", parent_path, raw, NULL };
    run_ok(conv);
    g_autoptr(GBytes) b = test_read_file(raw);
    ck_assert_uint_eq(g_bytes_get_size(b), DISK_SIZE);
    model = g_memdup2(g_bytes_get_data(b, NULL), DISK_SIZE);
}

static void teardown(void)
{
    g_free(model);
    g_free(parent_path);
    g_free(store_path);
    test_tmpdir_free(dir);
}

static VcfDisk *open_disk(gboolean create)
{
    GError *error = NULL;
    VcfParent *parent = vcf_parent_open(parent_path, dir, NULL, 2, &error);
    ck_assert_msg(parent != NULL, "%s", error ? error->message : "");
    VcfSparse *s;
    if (create) {
        VcfSparseParams p = { .capacity = vcf_parent_get_size(parent),
                              .parent_cid = vcf_parent_get_cid(parent),
                              .parent_hint = "base.vmdk" };
        s = vcf_sparse_create(store_path, &p, &error);
    } else {
        s = vcf_sparse_open(store_path, TRUE, &error);
    }
    ck_assert_msg(s != NULL, "%s", error ? error->message : "");
    VcfDisk *d = vcf_disk_new(s, parent, &error);
    ck_assert_msg(d != NULL, "%s", error ? error->message : "");
    return d;
}

static void assert_matches_model(VcfDisk *d)
{
    g_autofree guint8 *buf = g_malloc(DISK_SIZE);
    GError *error = NULL;
    ck_assert_msg(vcf_disk_read(d, buf, DISK_SIZE, 0, &error), "%s", error ? error->message : "");
    for (gsize i = 0; i < DISK_SIZE; i++)
        if (buf[i] != model[i])
            ck_abort_msg("byte %zu: disk has 0x%02x, model 0x%02x", i, buf[i], model[i]);
}

static void random_writes(VcfDisk *d, GRand *r, guint count)
{
    g_autofree guint8 *buf = g_malloc(300 * 1024);
    for (guint i = 0; i < count; i++) {
        gsize len = g_rand_boolean(r) ? g_rand_int_range(r, 1, 9000)
                                      : g_rand_int_range(r, 1, 300 * 1024);
        guint64 off = g_rand_int_range(r, 0, DISK_SIZE - len + 1);
        if (g_rand_int_range(r, 0, 4) == 0)
            off = off / 65536 * 65536;    /* whole, aligned grains too */
        for (gsize j = 0; j < len; j++)
            buf[j] = g_rand_int(r);
        GError *error = NULL;
        ck_assert_msg(vcf_disk_write(d, buf, len, off, &error), "%s", error ? error->message : "");
        memcpy(model + off, buf, len);
        /* A read of a random window must agree with the model right away. */
        gsize rl = g_rand_int_range(r, 1, 200 * 1024);
        guint64 ro = g_rand_int_range(r, 0, DISK_SIZE - rl + 1);
        g_autofree guint8 *got = g_malloc(rl);
        ck_assert(vcf_disk_read(d, got, rl, ro, &error));
        ck_assert_msg(memcmp(got, model + ro, rl) == 0, "read [%" G_GUINT64_FORMAT ", +%zu) differs",
                      ro, rl);
    }
}

START_TEST(unwritten_disk_is_parent)
{
    VcfDisk *d = open_disk(TRUE);
    assert_matches_model(d);
    ck_assert(vcf_disk_close(d, NULL));
}
END_TEST

START_TEST(random_writes_match_model)
{
    GRand *r = g_rand_new_with_seed(20261125);
    VcfDisk *d = open_disk(TRUE);
    random_writes(d, r, 400);
    assert_matches_model(d);
    GError *error = NULL;
    ck_assert(vcf_disk_close(d, &error));
    /* Reopened, and then changed some more. */
    d = open_disk(FALSE);
    assert_matches_model(d);
    random_writes(d, r, 100);
    ck_assert(vcf_disk_close(d, &error));
    g_rand_free(r);

    /* qemu-img follows parentFileNameHint and must see what the model has. */
    const char *check[] = { "qemu-img", "check", "-q", "-f", "vmdk", store_path, NULL };
    run_ok(check);
    g_autofree char *raw = g_build_filename(dir, "clone.raw", NULL);
    const char *conv[] = { "qemu-img", "convert", "-f", "vmdk", "-O", "raw", store_path, raw, NULL };
    run_ok(conv);
    g_autoptr(GBytes) b = test_read_file(raw);
    ck_assert_uint_eq(g_bytes_get_size(b), DISK_SIZE);
    ck_assert(memcmp(g_bytes_get_data(b, NULL), model, DISK_SIZE) == 0);
    /* And the parent never changed. */
    g_autofree char *praw = g_build_filename(dir, "base2.raw", NULL);
    const char *pconv[] = { "qemu-img", "convert", "-O", "raw", parent_path, praw, NULL };
    run_ok(pconv);
    g_autofree char *orig = g_build_filename(dir, "base.raw", NULL);
    g_autoptr(GBytes) p1 = test_read_file(orig);
    g_autoptr(GBytes) p2 = test_read_file(praw);
    ck_assert(g_bytes_equal(p1, p2));
}
END_TEST

START_TEST(writes_durable_after_sync_and_crash)
{
    GRand *r = g_rand_new_with_seed(7);
    VcfDisk *d = open_disk(TRUE);
    random_writes(d, r, 50);
    GError *error = NULL;
    ck_assert(vcf_disk_sync(d, &error));
    /* A crash right after fsync: nothing is closed cleanly. */
    vcf_disk_abandon(d);
    g_rand_free(r);
    d = open_disk(FALSE);
    assert_matches_model(d);
    ck_assert(vcf_disk_close(d, NULL));
}
END_TEST

START_TEST(changed_parent_is_refused)
{
    VcfDisk *d = open_disk(TRUE);
    ck_assert(vcf_disk_close(d, NULL));
    /* Someone writes to the parent behind our back: qemu gives it a new CID. */
    const char *io[] = { "qemu-io", "-f", "vmdk", "-c", "write -P 0x99 0 4k", parent_path, NULL };
    run_ok(io);
    GError *error = NULL;
    VcfParent *parent = vcf_parent_open(parent_path, dir, NULL, 1, &error);
    ck_assert(parent != NULL);
    VcfSparse *s = vcf_sparse_open(store_path, TRUE, &error);
    ck_assert(s != NULL);
    ck_assert(vcf_disk_new(s, parent, &error) == NULL);
    ck_assert_int_eq(error->code, EIO);
    ck_assert(strstr(error->message, "changed") != NULL);
    ck_assert(strstr(error->message, "base.vmdk") != NULL);
    g_error_free(error);
}
END_TEST

START_TEST(out_of_range_is_einval)
{
    VcfDisk *d = open_disk(TRUE);
    guint8 b[16];
    GError *error = NULL;
    ck_assert(!vcf_disk_read(d, b, 16, DISK_SIZE - 8, &error));
    ck_assert_int_eq(error->code, EINVAL);
    g_clear_error(&error);
    ck_assert(!vcf_disk_write(d, b, 16, DISK_SIZE, &error));
    ck_assert_int_eq(error->code, EINVAL);
    g_clear_error(&error);
    ck_assert(vcf_disk_close(d, NULL));
}
END_TEST

typedef struct {
    VcfDisk *disk;
    guint seed;
    gboolean ok;
} ReaderArgs;

/* Reads regions no writer touches (the first MiB) and checks them. */
static gpointer reader(gpointer data)
{
    ReaderArgs *a = data;
    GRand *r = g_rand_new_with_seed(a->seed);
    guint8 buf[8192];
    a->ok = TRUE;
    for (guint i = 0; i < 2000 && a->ok; i++) {
        guint64 off = g_rand_int_range(r, 0, 1024 * 1024 - sizeof buf);
        if (!vcf_disk_read(a->disk, buf, sizeof buf, off, NULL))
            a->ok = FALSE;
        for (gsize j = 0; j < sizeof buf; j++)
            if (buf[j] != 0x11)
                a->ok = FALSE;
    }
    g_rand_free(r);
    return NULL;
}

START_TEST(parallel_readers_and_writer)
{
    VcfDisk *d = open_disk(TRUE);
    ReaderArgs args[3];
    GThread *t[3];
    for (guint i = 0; i < 3; i++) {
        args[i] = (ReaderArgs){ .disk = d, .seed = i + 1 };
        t[i] = g_thread_new("reader", reader, &args[i]);
    }
    guint8 buf[4096];
    memset(buf, 0x77, sizeof buf);
    for (guint i = 0; i < 300; i++) {
        guint64 off = 2 * 1024 * 1024 + (guint64)i * 3 * 4096;
        ck_assert(vcf_disk_write(d, buf, sizeof buf, off, NULL));
        memcpy(model + off, buf, sizeof buf);
    }
    for (guint i = 0; i < 3; i++) {
        g_thread_join(t[i]);
        ck_assert(args[i].ok);
    }
    assert_matches_model(d);
    ck_assert(vcf_disk_close(d, NULL));
}
END_TEST

/* Writers that share every grain: writer T owns the 4 KiB pages P with
 * P % N_WRITERS == T, so concurrent copy-on-writes of one grain must each
 * keep the others' pages. Each writes its pages into the model too (they
 * are its own), and reads back its own pages as it goes. */
#define N_WRITERS 4
typedef struct {
    VcfDisk *disk;
    guint id;
    gboolean ok;
    char *why;
} WriterArgs;

static gpointer page_writer(gpointer data)
{
    WriterArgs *a = data;
    GRand *r = g_rand_new_with_seed(100 + a->id);
    guint n_pages = DISK_SIZE / 4096;
    guint8 buf[4096], got[4096];
    a->ok = TRUE;
    for (guint i = 0; i < 600 && a->ok; i++) {
        guint page = g_rand_int_range(r, 0, n_pages / N_WRITERS) * N_WRITERS + a->id;
        if (page >= n_pages)
            continue;
        guint64 off = (guint64)page * 4096;
        for (gsize j = 0; j < sizeof buf; j++)
            buf[j] = g_rand_int(r);
        GError *error = NULL;
        if (!vcf_disk_write(a->disk, buf, sizeof buf, off, &error)
            || !vcf_disk_read(a->disk, got, sizeof got, off, &error)) {
            a->why = g_strdup(error->message);
            g_error_free(error);
            a->ok = FALSE;
        } else if (memcmp(got, buf, sizeof buf) != 0) {
            a->why = g_strdup_printf("page %u reads back wrong", page);
            a->ok = FALSE;
        }
        memcpy(model + off, buf, sizeof buf);   /* this writer's own bytes */
    }
    g_rand_free(r);
    return NULL;
}

START_TEST(parallel_writers_share_grains)
{
    VcfDisk *d = open_disk(TRUE);
    WriterArgs args[N_WRITERS];
    GThread *t[N_WRITERS];
    for (guint i = 0; i < N_WRITERS; i++) {
        args[i] = (WriterArgs){ .disk = d, .id = i };
        t[i] = g_thread_new("writer", page_writer, &args[i]);
    }
    for (guint i = 0; i < N_WRITERS; i++) {
        g_thread_join(t[i]);
        ck_assert_msg(args[i].ok, "writer %u: %s", i, args[i].why);
        g_free(args[i].why);
    }
    assert_matches_model(d);
    GError *error = NULL;
    ck_assert(vcf_disk_close(d, &error));
    /* And qemu-img, with nothing of ours running, decodes the same bytes. */
    g_autofree char *raw = g_build_filename(dir, "clone.raw", NULL);
    const char *conv[] = { "qemu-img", "convert", "-O", "raw", store_path, raw, NULL };
    run_ok(conv);
    g_autoptr(GBytes) b = test_read_file(raw);
    ck_assert_uint_eq(g_bytes_get_size(b), DISK_SIZE);
    ck_assert(memcmp(g_bytes_get_data(b, NULL), model, DISK_SIZE) == 0);
}
END_TEST


/* qemu-img's reading of the chain at PATH equals EXPECT. */
static void assert_qemu_reads(const char *path, const guint8 *expect)
{
    g_autofree char *raw = g_build_filename(dir, "chain.raw", NULL);
    const char *conv[] = { "qemu-img", "convert", "-O", "raw", path, raw, NULL };
    run_ok(conv);
    g_autoptr(GBytes) b = test_read_file(raw);
    ck_assert_uint_eq(g_bytes_get_size(b), DISK_SIZE);
    ck_assert_msg(memcmp(g_bytes_get_data(b, NULL), expect, DISK_SIZE) == 0,
                  "qemu-img reads %s otherwise", path);
}

static VcfDisk *open_top(void)
{
    GError *error = NULL;
    VcfDisk *d = vcf_disk_open(store_path, dir, NULL, 2, &error);
    ck_assert_msg(d != NULL, "%s", error ? error->message : "");
    return d;
}

START_TEST(freeze_stacks_a_new_delta)
{
    GRand *r = g_rand_new_with_seed(11);
    VcfDisk *d = open_disk(TRUE);
    ck_assert(vcf_disk_close(d, NULL));
    d = open_top();
    random_writes(d, r, 30);
    g_autofree guint8 *at_freeze = g_memdup2(model, DISK_SIZE);
    GError *error = NULL;
    g_autofree char *layer = NULL;
    ck_assert_msg(vcf_disk_freeze(d, 0, &layer, &error), "%s", error ? error->message : "");
    g_autofree char *want = g_build_filename(dir, ".vcf-layer-0-1.vmdk", NULL);
    ck_assert_str_eq(layer, want);
    assert_matches_model(d);
    /* Nothing written since: the same layer again, and no new file. */
    g_autofree char *again = NULL;
    ck_assert(vcf_disk_freeze(d, 0, &again, &error));
    g_autofree char *real = realpath(layer, NULL);
    ck_assert_str_eq(again, real);
    g_autofree char *second = g_build_filename(dir, ".vcf-layer-0-2.vmdk", NULL);
    ck_assert(!g_file_test(second, G_FILE_TEST_EXISTS));
    random_writes(d, r, 30);
    ck_assert(vcf_disk_close(d, &error));
    /* The frozen layer kept the bytes of the freeze; the top has the rest. */
    assert_qemu_reads(layer, at_freeze);
    assert_qemu_reads(store_path, model);
    d = open_top();
    assert_matches_model(d);
    ck_assert(vcf_disk_close(d, NULL));
    g_rand_free(r);
}
END_TEST

/* A freeze cut short after CUT of its four steps: the next mount's
 * recovery leaves a whole delta at the top with the same bytes. */
START_TEST(freeze_recovers_at_every_cut)
{
    int cut = _i;
    GRand *r = g_rand_new_with_seed(20 + cut);
    VcfDisk *d = open_disk(TRUE);
    random_writes(d, r, 20);
    GError *error = NULL;
    ck_assert(vcf_disk_close(d, &error));
    VcfSparse *s = vcf_sparse_open(store_path, FALSE, &error);
    ck_assert(s != NULL);
    VcfSparseParams p = { .capacity = DISK_SIZE, .parent_cid = vcf_sparse_get_cid(s),
                          .parent_hint = ".vcf-layer-0-1.vmdk" };
    vcf_sparse_free(s);
    g_autofree char *next = g_build_filename(dir, ".vcf-next-0.vmdk", NULL);
    g_autofree char *layer = g_build_filename(dir, ".vcf-layer-0-1.vmdk", NULL);
    g_autofree char *next_sums = g_strconcat(next, ".xxh", NULL);
    g_autofree char *layer_sums = g_strconcat(layer, ".xxh", NULL);
    g_autofree char *sums = g_strconcat(store_path, ".xxh", NULL);
    s = vcf_sparse_create(next, &p, &error);
    ck_assert_msg(s != NULL && vcf_sparse_close(s, &error), "%s", error ? error->message : "");
    /* Two links, then two renames: freeze.c's steps. */
    const char *from[] = { sums, store_path, next, next_sums };
    const char *to[] = { layer_sums, layer, store_path, sums };
    for (int i = 0; i < cut; i++)
        ck_assert_int_eq(i < 2 ? link(from[i], to[i]) : rename(from[i], to[i]), 0);
    gboolean fixed = FALSE;
    ck_assert_msg(vcf_freeze_recover(store_path, 0, &fixed, &error), "%s",
                  error ? error->message : "");
    ck_assert(fixed == (cut < 4));
    ck_assert(!g_file_test(next, G_FILE_TEST_EXISTS));
    ck_assert(!g_file_test(next_sums, G_FILE_TEST_EXISTS));
    ck_assert(g_file_test(sums, G_FILE_TEST_EXISTS));
    /* Undone before the new top got its name, finished after. */
    ck_assert(g_file_test(layer, G_FILE_TEST_EXISTS) == (cut >= 3));
    ck_assert(g_file_test(layer_sums, G_FILE_TEST_EXISTS) == (cut >= 3));
    d = open_top();
    assert_matches_model(d);
    random_writes(d, r, 10);
    ck_assert(vcf_disk_close(d, &error));
    assert_qemu_reads(store_path, model);
    const char *check[] = { "qemu-img", "check", "-q", store_path, NULL };
    run_ok(check);
    g_rand_free(r);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("disk");
    TCase *tc = tcase_create("composed");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, unwritten_disk_is_parent);
    tcase_add_test(tc, random_writes_match_model);
    tcase_add_test(tc, writes_durable_after_sync_and_crash);
    tcase_add_test(tc, changed_parent_is_refused);
    tcase_add_test(tc, out_of_range_is_einval);
    tcase_add_test(tc, parallel_readers_and_writer);
    tcase_add_test(tc, parallel_writers_share_grains);
    tcase_add_test(tc, freeze_stacks_a_new_delta);
    tcase_add_loop_test(tc, freeze_recovers_at_every_cut, 0, 5);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
