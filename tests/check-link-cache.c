/* Chains checked once and trusted later: the link cache (what libvmdk
 * found in a link, kept while its files are unchanged) and a parent's
 * libvmdk chain, opened at its first read. A file that changed in between
 * must never be read as the one that was checked. */
#include "config.h"
#include "parent.h"
#include "link-cache.h"
#include "vcf-error.h"

#include "chain-util.h"
#include "test-util.h"

#include <check.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static VcfParent *open_cached(const char *name, VcfLinkCache *cache, GError **error)
{
    g_autofree char *path = path_of(name);
    return vcf_parent_open(path, chain_dir, cache, 2, error);
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

static Suite *link_cache_suite(void)
{
    Suite *s = suite_create("link-cache");
    TCase *tc = tcase_create("cache");
    tcase_add_checked_fixture(tc, chain_setup, chain_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, link_cache);
    tcase_add_test(tc, link_cache_sees_replacement);
    tcase_add_test(tc, first_read_sees_change);
    tcase_add_test(tc, parallel_first_reads_fail);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(link_cache_suite());
}
