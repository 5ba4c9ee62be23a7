/* Descriptors and disk geometry: read from files qemu-img wrote (the
 * oracle for where a descriptor lives and what it says), and defaults for
 * what is missing or malformed. */
#include "config.h"
#include "descriptor.h"
#include "flat-descriptor.h"
#include "vcf-error.h"
#include "test-util.h"

#include <check.h>
#include <errno.h>
#include <string.h>

static char *dir;

static void setup(void) { dir = test_tmpdir_new(); }
static void teardown(void) { test_tmpdir_free(dir); }

static char *qemu_vmdk(const char *name, const char *opts, const char *size)
{
    char *path = g_build_filename(dir, name, NULL);
    const char *argv[] = { "qemu-img", "create", "-q", "-f", "vmdk", "-o", opts, path, size, NULL };
    ck_assert_int_eq(test_run(argv, NULL), 0);
    return path;
}

START_TEST(embedded_descriptor_of_a_sparse_extent)
{
    g_autofree char *path = qemu_vmdk("ide.vmdk", "adapter_type=ide", "100M");
    GError *error = NULL;
    g_autofree char *text = vcf_descriptor_load(path, &error);
    ck_assert_msg(text != NULL, "%s", error ? error->message : "");
    g_autofree char *type = vcf_descriptor_get(text, "createType");
    ck_assert_str_eq(type, "monolithicSparse");
    VcfGeometry g;
    ck_assert(vcf_geometry_of_disk(&g, path, 100 << 20, "lsilogic", &error));
    ck_assert_str_eq(g.adapter, "ide");
    ck_assert_uint_eq(g.heads, 16);
    ck_assert_uint_eq(g.sectors, 63);
    ck_assert_uint_eq(g.cylinders, (100u << 20) / 512 / (16 * 63));
}
END_TEST

START_TEST(descriptor_file_of_a_split_disk)
{
    g_autofree char *path = qemu_vmdk("split.vmdk", "subformat=twoGbMaxExtentSparse,adapter_type=buslogic",
                                      "10M");
    GError *error = NULL;
    VcfGeometry g;
    ck_assert_msg(vcf_geometry_of_disk(&g, path, 10 << 20, "lsilogic", &error), "%s",
                  error ? error->message : "");
    ck_assert_str_eq(g.adapter, "buslogic");
    ck_assert_uint_eq(g.heads, 255);
}
END_TEST

START_TEST(missing_and_malformed_values_fall_back)
{
    VcfGeometry g;
    vcf_geometry_from_descriptor(&g, "# Disk DescriptorFile\nCID=12345678\n", 1 << 30, "ide");
    ck_assert_str_eq(g.adapter, "ide");
    ck_assert_uint_eq(g.heads, 16);
    ck_assert_uint_eq(g.cylinders, (1u << 30) / 512 / (16 * 63));
    /* Quotes or spaces in the adapter would break the descriptors we write. */
    vcf_geometry_from_descriptor(&g, "ddb.adapterType = \"ls\\\" x\"\n"
                                     "ddb.geometry.heads = \"300\"\n", 1 << 30, "lsilogic");
    ck_assert_str_eq(g.adapter, "lsilogic");
    ck_assert_uint_eq(g.heads, 255);
    /* Keys are case-insensitive, as VMware reads them. */
    vcf_geometry_from_descriptor(&g, "DDB.AdapterType = \"pvscsi\"\nddb.geometry.cylinders = \"7\"\n"
                                     "ddb.geometry.heads = \"4\"\nddb.geometry.sectors = \"32\"\n",
                                 1 << 20, "ide");
    ck_assert_str_eq(g.adapter, "pvscsi");
    ck_assert_uint_eq(g.cylinders, 7);
    ck_assert_uint_eq(g.heads, 4);
    ck_assert_uint_eq(g.sectors, 32);
    g_autofree char *lines = vcf_geometry_ddb_lines(&g);
    ck_assert(strstr(lines, "ddb.adapterType = \"pvscsi\"\n") != NULL);
    ck_assert(strstr(lines, "ddb.geometry.cylinders = \"7\"\n") != NULL);
}
END_TEST

START_TEST(not_a_vmdk_is_einval)
{
    g_autofree char *path = g_build_filename(dir, "junk.vmdk", NULL);
    ck_assert(g_file_set_contents(path, "\x7f" "ELF junk", -1, NULL));
    GError *error = NULL;
    ck_assert(vcf_descriptor_load(path, &error) == NULL);
    ck_assert_int_eq(error->code, EINVAL);
    ck_assert(strstr(error->message, "junk.vmdk") != NULL);
    g_clear_error(&error);
    /* A sparse header whose descriptor offset points nowhere. */
    char head[512] = "KDMV";
    ck_assert(g_file_set_contents(path, head, sizeof head, NULL));
    ck_assert(vcf_descriptor_load(path, &error) == NULL);
    ck_assert_int_eq(error->code, EINVAL);
    g_clear_error(&error);
    g_autofree char *none = g_build_filename(dir, "none.vmdk", NULL);
    ck_assert(vcf_descriptor_load(none, &error) == NULL);
    ck_assert_int_eq(error->code, ENOENT);
    g_clear_error(&error);
}
END_TEST

START_TEST(flat_descriptor_takes_only_a_new_cid)
{
    VcfGeometry g;
    vcf_geometry_default(&g, 1 << 30, "lsilogic");
    g_autofree char *gen = vcf_flat_descriptor("web1", 1 << 30, 0x1234abcd, &g);
    gsize n = strlen(gen);
    ck_assert(strstr(gen, "CID=1234abcd\n") != NULL);
    ck_assert(strstr(gen, "RW 2097152 FLAT \"web1-flat.vmdk\" 0\n") != NULL);
    ck_assert(vcf_flat_descriptor_edit_ok(gen, gen, n));
    /* What qemu writes: the text with a new CID, padded with NULs. */
    g_autofree char *qemu = g_malloc0(10240);
    memcpy(qemu, gen, n);
    memcpy(strstr(qemu, "CID=1234abcd"), "CID=0badf00d", 12);
    ck_assert(vcf_flat_descriptor_edit_ok(gen, qemu, 10240));
    /* Anything else is another disk. */
    g_autofree char *other = g_strdup(gen);
    other[strstr(other, "FLAT") - other] = 'Z';
    ck_assert(!vcf_flat_descriptor_edit_ok(gen, other, n));
    g_autofree char *bad_cid = g_strdup(gen);
    memcpy(strstr(bad_cid, "CID=1234abcd"), "CID=xyz4abcd", 12);
    ck_assert(!vcf_flat_descriptor_edit_ok(gen, bad_cid, n));
    g_autofree char *longer = g_strconcat(gen, "ddb.adapterType = \"ide\"\n", NULL);
    ck_assert(!vcf_flat_descriptor_edit_ok(gen, longer, strlen(longer)));
    qemu[10000] = 'x';   /* junk after the padding */
    ck_assert(!vcf_flat_descriptor_edit_ok(gen, qemu, 10240));
    ck_assert(!vcf_flat_descriptor_edit_ok(gen, gen, n - 1));
}
END_TEST

/* GEN with its CID line replaced by LINE (no newline), NUL-padded as qemu
 * leaves a descriptor it rewrote shorter. */
static gboolean edit_ok_with_cid_line(const char *gen, const char *line)
{
    const char *at = strstr(gen, "CID=1234abcd\n");
    ck_assert_ptr_nonnull(at);
    g_autofree char *text = g_strdup_printf("%.*s%s%s", (int)(at - gen), gen, line,
                                            at + strlen("CID=1234abcd"));
    gsize len = strlen(gen) + 16;
    g_autofree char *padded = g_malloc0(len);
    ck_assert_uint_le(strlen(text), len);
    memcpy(padded, text, strlen(text));
    return vcf_flat_descriptor_edit_ok(gen, padded, len);
}

START_TEST(flat_descriptor_takes_an_unpadded_cid)
{
    VcfGeometry g;
    vcf_geometry_default(&g, 1 << 30, "lsilogic");
    g_autofree char *gen = vcf_flat_descriptor("web1", 1 << 30, 0x1234abcd, &g);
    /* qemu writes CID=%x: a CID with leading zero nibbles is shorter. */
    static const char *const good[] = { "CID=abc", "CID=0", "CID=0000abcd", "CID=fffffffe",
                                        "CID=ABCDEF", "cid=1a2b", "Cid=00000000" };
    for (guint i = 0; i < G_N_ELEMENTS(good); i++)
        ck_assert_msg(edit_ok_with_cid_line(gen, good[i]), "%s refused", good[i]);
    static const char *const bad[] = { "CID=", "CID=123456789", "CID=12 34", "CID= 1234",
                                       "CID=1234abcg", "CID=-1", "CID=0x12", "CI=1234",
                                       "CID=1234abcd ", "parentCID=1234abcd" };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++)
        ck_assert_msg(!edit_ok_with_cid_line(gen, bad[i]), "%s taken", bad[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("descriptor");
    TCase *tc = tcase_create("descriptor");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, embedded_descriptor_of_a_sparse_extent);
    tcase_add_test(tc, descriptor_file_of_a_split_disk);
    tcase_add_test(tc, missing_and_malformed_values_fall_back);
    tcase_add_test(tc, not_a_vmdk_is_einval);
    tcase_add_test(tc, flat_descriptor_takes_only_a_new_cid);
    tcase_add_test(tc, flat_descriptor_takes_an_unpadded_cid);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
