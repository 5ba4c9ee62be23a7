/* Parent disks read through libvmdk: every byte must equal what qemu-img
 * (an independent reader) decodes from the same disk, for each VMDK layout
 * qemu-img can make, through delta chains and from several threads; and
 * hostile or broken chains must fail with the right errno, naming the file. */
#include "config.h"
#include "parent.h"
#include "vcf-error.h"

#include "chain-util.h"
#include "test-util.h"

#include <check.h>
#include <glib/gstdio.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Opening NAME must fail with errno CODE and a message holding each of the
 * NULL-terminated strings that follow (file names, mostly). */
static void open_fails(const char *name, const char *confine, int code, ...)
{
    GError *error = NULL;
    g_autofree char *path = path_of(name);
    VcfParent *p = vcf_parent_open(path, confine ? confine : chain_dir, NULL, 2, &error);
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
        VcfParent *p = vcf_parent_open(cut, chain_dir, NULL, 1, &error);
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

static Suite *parent_suite(void)
{
    Suite *s = suite_create("parent");
    TCase *tc = tcase_create("read");
    tcase_add_checked_fixture(tc, chain_setup, chain_teardown);
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
    tcase_add_test(tc, renamed_sparse_reads_itself);
    tcase_add_test(tc, depth_limit);
    suite_add_tcase(s, tc);
    tc = tcase_create("refuse");
    tcase_add_checked_fixture(tc, chain_setup, chain_teardown);
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
