/* The clone engine on a generated sample library: jobs, the clone's
 * config, its disks against qemu-img, refusals that leave no trace. */
#include "config.h"
#include "clone.h"
#include "clone-rename.h"
#include "clone-store.h"
#include "disk.h"
#include "fileutil.h"
#include "vcf-error.h"
#include "vmx.h"
#include "test-util.h"

#include <check.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char *dir;
static char *libdir;
static VcfLibrary *lib;

static void setup(void)
{
    dir = test_tmpdir_new();
    libdir = g_build_filename(dir, "lib", NULL);
    const char *gen[] = { TOP_SRCDIR "/scripts/make-sample-library.sh", "--size", "16",
                          libdir, NULL };
    ck_assert_int_eq(test_run(gen, NULL), 0);
    GError *error = NULL;
    lib = vcf_library_open(libdir, &error);
    ck_assert(lib != NULL);
}

static void teardown(void)
{
    vcf_library_free(lib);
    g_free(libdir);
    test_tmpdir_free(dir);
}

static void callback(VcfJob *job, gpointer data)
{
    g_atomic_int_inc((gint *)data);
}

static GBytes *raw_of(const char *vmdk)
{
    g_autofree char *raw = g_build_filename(dir, "x.raw", NULL);
    const char *conv[] = { "qemu-img", "convert", "-O", "raw", vmdk, raw, NULL };
    ck_assert_int_eq(test_run(conv, NULL), 0);
    GBytes *b = test_read_file(raw);
    g_unlink(raw);
    return b;
}

static void assert_disk_is(VcfClone *c, guint i, const char *vmdk)
{
    g_autoptr(GBytes) want = raw_of(vmdk);
    VcfDisk *d = vcf_clone_get_disk(c, i);
    ck_assert_uint_eq(vcf_disk_get_size(d), g_bytes_get_size(want));
    g_autofree guint8 *buf = g_malloc(g_bytes_get_size(want));
    GError *error = NULL;
    ck_assert(vcf_disk_read(d, buf, g_bytes_get_size(want), 0, &error));
    ck_assert(memcmp(buf, g_bytes_get_data(want, NULL), g_bytes_get_size(want)) == 0);
}

START_TEST(job_makes_linked_clone)
{
    gint called = 0;
    GError *error = NULL;
    VcfClone *opened = NULL;
    g_autoptr(VcfJob) job = vcf_clone_create_job(lib, "TwoDisks", "web1", NULL, FALSE, 2, &opened,
                                                 callback, &called);
    ck_assert_msg(vcf_job_wait(job, &error), "%s", error ? error->message : "");
    ck_assert(vcf_job_is_done(job));
    ck_assert_int_eq(g_atomic_int_get(&called), 1);

    g_autoptr(GPtrArray) names = vcf_clone_list(lib);
    ck_assert_uint_eq(names->len, 1);
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, "web1", &error);
    ck_assert_str_eq(info->source, "TwoDisks");
    ck_assert_str_eq(info->base_snapshot, "vmclonefs: web1");
    ck_assert_uint_eq(info->stems->len, 2);
    ck_assert_str_eq(g_ptr_array_index(info->stems, 1), "web1_1");

    /* A new identity, its own disks, the rest of the config as it was. */
    g_autofree char *src_path = g_build_filename(libdir, "TwoDisks", "TwoDisks.vmx", NULL);
    g_autofree char *vmx_path = g_build_filename(info->dir, "web1.vmx", NULL);
    g_autoptr(VcfVmx) src = vcf_vmx_load(src_path, &error);
    g_autoptr(VcfVmx) vmx = vcf_vmx_load(vmx_path, &error);
    ck_assert(vmx != NULL);
    ck_assert_str_eq(vcf_vmx_get(vmx, "displayName"), "web1");
    ck_assert_str_eq(vcf_vmx_get(vmx, "scsi0:0.fileName"), "web1.vmdk");
    ck_assert_str_eq(vcf_vmx_get(vmx, "sata0:1.fileName"), "web1_1.vmdk");
    ck_assert_str_ne(vcf_vmx_get(vmx, "uuid.bios"), vcf_vmx_get(src, "uuid.bios"));
    ck_assert_str_ne(vcf_vmx_get(vmx, "uuid.location"), vcf_vmx_get(src, "uuid.location"));
    ck_assert_str_ne(vcf_vmx_get(vmx, "ethernet0.generatedAddress"),
                     vcf_vmx_get(src, "ethernet0.generatedAddress"));
    ck_assert(g_str_has_prefix(vcf_vmx_get(vmx, "ethernet0.generatedAddress"), "00:0c:29:"));
    ck_assert_str_eq(vcf_vmx_get(vmx, "guestOS"), vcf_vmx_get(src, "guestOS"));
    ck_assert_str_eq(vcf_vmx_get(vmx, "memsize"), vcf_vmx_get(src, "memsize"));

    VcfClone *c = vcf_clone_open(lib, "web1", 2, &error);
    ck_assert_msg(c != NULL, "%s", error ? error->message : "");
    ck_assert_uint_eq(vcf_clone_n_disks(c), 2);
    g_autofree char *d0 = g_build_filename(libdir, "TwoDisks", "TwoDisks.vmdk", NULL);
    g_autofree char *d1 = g_build_filename(libdir, "TwoDisks", "TwoDisks_1.vmdk", NULL);
    assert_disk_is(c, 0, d0);
    assert_disk_is(c, 1, d1);
    g_autoptr(GPtrArray) files = vcf_clone_parent_files(c);
    ck_assert_uint_ge(files->len, 2);
    ck_assert(vcf_clone_close(c, &error));
    /* The job's own opening serves the same disks over the same files. */
    ck_assert(opened != NULL);
    ck_assert_uint_eq(vcf_clone_n_disks(opened), 2);
    assert_disk_is(opened, 0, d0);
    assert_disk_is(opened, 1, d1);
    g_autoptr(GPtrArray) files2 = vcf_clone_parent_files(opened);
    ck_assert_uint_eq(files2->len, files->len);
    for (guint i = 0; i < files->len; i++)
        ck_assert_str_eq(g_ptr_array_index(files2, i), g_ptr_array_index(files, i));
    ck_assert(vcf_clone_close(opened, &error));

    ck_assert(vcf_clone_delete(lib, "web1", &error));
    ck_assert(!g_file_test(info->dir, G_FILE_TEST_EXISTS));
    g_autoptr(GPtrArray) after = vcf_clone_list(lib);
    ck_assert_uint_eq(after->len, 0);
}
END_TEST

START_TEST(snapshot_source)
{
    GError *error = NULL;
    ck_assert_msg(vcf_clone_create(lib, "Chain@Base install", "old", &error), "%s",
                  error ? error->message : "");
    VcfClone *c = vcf_clone_open(lib, "old", 1, &error);
    ck_assert(c != NULL);
    g_autofree char *base = g_build_filename(libdir, "Chain", "Chain.vmdk", NULL);
    assert_disk_is(c, 0, base);
    ck_assert(vcf_clone_close(c, NULL));
}
END_TEST

/* Lists what the store folder holds besides finished clones. */
static guint leftovers(void)
{
    guint n = 0;
    GDir *d = g_dir_open(vcf_library_store_root(lib), 0, NULL);
    const char *e;
    while ((e = g_dir_read_name(d)) != NULL)
        n += e[0] == '.';
    g_dir_close(d);
    return n;
}

static void expect_refused(const char *source, const char *name, int code)
{
    GError *error = NULL;
    g_autoptr(VcfJob) job = vcf_clone_create_job(lib, source, name, NULL, FALSE, 1, NULL, NULL, NULL);
    ck_assert_msg(!vcf_job_wait(job, &error), "%s/%s was accepted", source, name);
    ck_assert_msg(error->code == code, "%s/%s: %s (code %d, want %d)", source, name,
                  error->message, error->code, code);
    g_error_free(error);
    ck_assert_uint_eq(leftovers(), 0);
}

START_TEST(refusals_leave_no_trace)
{
    ck_assert(vcf_clone_create(lib, "Ubuntu", "taken", NULL));
    g_autofree char *vmx = g_build_filename(libdir, "Ubuntu", "Ubuntu.vmx", NULL);
    g_autoptr(GBytes) before = test_read_file(vmx);
    expect_refused("Ubuntu", "taken", EEXIST);
    expect_refused("Ubuntu", "Chain", EEXIST);
    expect_refused("Ubuntu", ".hidden", EINVAL);
    expect_refused("Ubuntu", "a@b", EINVAL);
    expect_refused("Nope", "x", ENOENT);
    expect_refused("Chain@No such snapshot", "x", ENOENT);
    g_autofree char *lck = g_build_filename(libdir, "Ubuntu", "Ubuntu.vmx.lck", NULL);
    ck_assert_int_eq(g_mkdir(lck, 0755), 0);
    expect_refused("Ubuntu", "x", EBUSY);
    g_rmdir(lck);
    g_autoptr(GBytes) after = test_read_file(vmx);
    ck_assert(g_bytes_equal(before, after));
}
END_TEST

/* VixVM_Clone: a suspended VM clones full only, from its disks as they
 * are, with nothing of it changed; its clone is no source until full, and
 * a change under it breaks its disk (EIO), found once. */
START_TEST(suspended_vm_clones_full_only)
{
    g_autofree char *vmss = g_build_filename(libdir, "Ubuntu", "Ubuntu-1.vmss", NULL);
    g_autofree char *vmx = g_build_filename(libdir, "Ubuntu", "Ubuntu.vmx", NULL);
    g_autofree char *vmdk = g_build_filename(libdir, "Ubuntu", "Ubuntu.vmdk", NULL);
    ck_assert(g_file_set_contents(vmss, "memory", -1, NULL));
    g_autoptr(GBytes) before = test_read_file(vmx);
    expect_refused("Ubuntu", "l1", EBUSY);
    GError *error = NULL;
    VcfClone *opened = NULL;
    g_autoptr(VcfJob) job = vcf_clone_create_job(lib, "Ubuntu", "s1", NULL, TRUE, 1, &opened,
                                                 NULL, NULL);
    ck_assert_msg(vcf_job_wait(job, &error), "%s", error ? error->message : "");
    ck_assert(opened != NULL);
    assert_disk_is(opened, 0, vmdk);
    g_autoptr(GBytes) after = test_read_file(vmx);
    ck_assert(g_bytes_equal(before, after));
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, "s1", &error);
    ck_assert(info != NULL);
    ck_assert_str_eq(info->type, "full");
    ck_assert_str_eq(info->state, "copying");
    ck_assert(info->base_snapshot == NULL);
    expect_refused("s1", "x1", EBUSY);
    /* Its disk is read as it was: a new mtime breaks it, once. */
    VcfDisk *d = vcf_clone_get_disk(opened, 0);
    gboolean found;
    ck_assert(vcf_disk_check_parent(d, &found, NULL) && !found);
    struct timespec t[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = 1000000000 } };
    ck_assert_int_eq(utimensat(AT_FDCWD, vmdk, t, 0), 0);
    ck_assert(!vcf_disk_check_parent(d, &found, &error) && found);
    ck_assert_msg(strstr(error->message, "changed outside vmclonefs") != NULL, "%s",
                  error->message);
    g_clear_error(&error);
    ck_assert(!vcf_disk_check_parent(d, &found, NULL) && !found);
    guint8 buf[512];
    ck_assert(!vcf_disk_read(d, buf, sizeof buf, 0, &error));
    ck_assert_int_eq(error->code, EIO);
    g_clear_error(&error);
    ck_assert(vcf_clone_close(opened, NULL));
}
END_TEST

START_TEST(leftovers_of_a_crash_are_removed)
{
    ck_assert(vcf_clone_create(lib, "Ubuntu", "keep", NULL));
    const char *root = vcf_library_store_root(lib);
    g_autofree char *half = g_build_filename(root, ".creating-abc123", "half.vmdk", NULL);
    g_autofree char *gone = g_build_filename(root, ".deleting-xyz789", NULL);
    g_autofree char *half_dir = g_path_get_dirname(half);
    ck_assert_int_eq(g_mkdir_with_parents(half_dir, 0755), 0);
    ck_assert(g_file_set_contents(half, "x", 1, NULL));
    ck_assert_int_eq(g_mkdir(gone, 0755), 0);
    ck_assert_uint_eq(vcf_clone_recover(lib, NULL), 2);
    ck_assert_uint_eq(leftovers(), 0);
    g_autoptr(GPtrArray) names = vcf_clone_list(lib);
    ck_assert_uint_eq(names->len, 1);
    ck_assert_str_eq(g_ptr_array_index(names, 0), "keep");
}
END_TEST

static char *store_file(const char *clone, const char *file)
{
    return g_build_filename(vcf_library_store_root(lib), clone, file, NULL);
}

static gboolean store_has(const char *clone, const char *file)
{
    g_autofree char *p = store_file(clone, file);
    return g_file_test(p, G_FILE_TEST_EXISTS);
}

START_TEST(rename_moves_everything)
{
    GError *error = NULL;
    ck_assert(vcf_clone_create(lib, "TwoDisks", "a", NULL));
    ck_assert_msg(vcf_clone_rename(lib, "a", "b", NULL, &error), "%s", error ? error->message : "");
    ck_assert(!store_has("a", "clone.ini"));
    const char *want[] = { "b.vmdk", "b.vmdk.xxh", "b_1.vmdk", "b_1.vmdk.xxh", "b.vmx", "clone.ini" };
    for (guint i = 0; i < G_N_ELEMENTS(want); i++)
        ck_assert_msg(store_has("b", want[i]), "no %s", want[i]);
    ck_assert(!store_has("b", "a.vmdk") && !store_has("b", "a.vmx") && !store_has("b", "clone.ini.next"));
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, "b", &error);
    ck_assert(info != NULL);
    ck_assert_str_eq(g_ptr_array_index(info->stems, 1), "b_1");
    g_autofree char *vmx_path = store_file("b", "b.vmx");
    g_autoptr(VcfVmx) vmx = vcf_vmx_load(vmx_path, NULL);
    ck_assert_str_eq(vcf_vmx_get(vmx, "displayName"), "b");
    ck_assert_str_eq(vcf_vmx_get(vmx, "sata0:1.fileName"), "b_1.vmdk");
    VcfClone *c = vcf_clone_open(lib, "b", 1, &error);
    ck_assert_msg(c != NULL, "%s", error ? error->message : "");
    g_autofree char *d1 = g_build_filename(libdir, "TwoDisks", "TwoDisks_1.vmdk", NULL);
    assert_disk_is(c, 1, d1);
    ck_assert(vcf_clone_close(c, NULL));
    /* Refused, changing nothing. */
    ck_assert(vcf_clone_create(lib, "Ubuntu", "u", NULL));
    ck_assert(!vcf_clone_rename(lib, "b", "u", NULL, &error));
    ck_assert_int_eq(error->code, EEXIST);
    g_clear_error(&error);
    ck_assert(!vcf_clone_rename(lib, "b", "x/y", NULL, &error));
    ck_assert_int_eq(error->code, EINVAL);
    g_clear_error(&error);
    ck_assert(store_has("b", "b.vmdk") && !store_has("b", "u.vmdk"));
}
END_TEST

/* The two halves of a crash: before the folder's rename the clone keeps
 * its old name, after it the new one, and nothing of the other is left. */
START_TEST(interrupted_rename_recovers)
{
    ck_assert(vcf_clone_create(lib, "Ubuntu", "old", NULL));
    g_autofree char *ini = store_file("old", "clone.ini");
    g_autofree char *text = NULL;
    ck_assert(g_file_get_contents(ini, &text, NULL, NULL));
    /* What vcf_clone_rename makes before its commit, by hand. */
    g_autofree char *delta = store_file("old", "old.vmdk"), *sums = store_file("old", "old.vmdk.xxh");
    g_autofree char *ndelta = store_file("old", "new.vmdk"), *nsums = store_file("old", "new.vmdk.xxh");
    g_autofree char *nvmx = store_file("old", "new.vmx"), *next = store_file("old", "clone.ini.next");
    g_autoptr(GString) nt = g_string_new(text);
    g_string_replace(nt, "disks=old;", "disks=new;", 0);
    g_string_append(nt, "renaming-from=old\nrenaming-to=new\n");
    ck_assert(link(delta, ndelta) == 0 && link(sums, nsums) == 0);
    ck_assert(g_file_set_contents(nvmx, "displayName = \"new\"\n", -1, NULL));
    ck_assert(g_file_set_contents(next, nt->str, -1, NULL));
    /* Not committed: rolled back. */
    ck_assert_uint_eq(vcf_clone_recover(lib, NULL), 1);
    ck_assert(store_has("old", "old.vmdk") && store_has("old", "old.vmx"));
    ck_assert(!store_has("old", "new.vmdk") && !store_has("old", "new.vmdk.xxh")
              && !store_has("old", "new.vmx") && !store_has("old", "clone.ini.next"));
    /* Committed: rolled forward. */
    ck_assert(link(delta, ndelta) == 0 && link(sums, nsums) == 0);
    ck_assert(g_file_set_contents(nvmx, "displayName = \"new\"\n", -1, NULL));
    ck_assert(g_file_set_contents(next, nt->str, -1, NULL));
    g_autofree char *from = g_build_filename(vcf_library_store_root(lib), "old", NULL);
    g_autofree char *to = g_build_filename(vcf_library_store_root(lib), "new", NULL);
    ck_assert_int_eq(g_rename(from, to), 0);
    ck_assert_uint_eq(vcf_clone_recover(lib, NULL), 1);
    ck_assert(store_has("new", "new.vmdk") && store_has("new", "new.vmx"));
    ck_assert(!store_has("new", "old.vmdk") && !store_has("new", "old.vmx")
              && !store_has("new", "clone.ini.next"));
    GError *error = NULL;
    VcfClone *c = vcf_clone_open(lib, "new", 1, &error);
    ck_assert_msg(c != NULL, "%s", error ? error->message : "");
    g_autofree char *base = g_build_filename(libdir, "Ubuntu", "Ubuntu.vmdk", NULL);
    assert_disk_is(c, 0, base);
    ck_assert(vcf_clone_close(c, NULL));
}
END_TEST

START_TEST(last_disk_name_frees_the_disks)
{
    GError *error = NULL;
    ck_assert(vcf_clone_create(lib, "TwoDisks", "d", NULL));
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, "d", NULL);
    g_autofree char *other = NULL;
    ck_assert(vcf_clone_folder_is_own(info, &other, NULL));
    const char *names[] = { "d-flat.vmdk", "d.vmdk", "d_1.vmdk", "d_1-flat.vmdk" };
    for (guint i = 0; i < G_N_ELEMENTS(names); i++) {
        gboolean last = TRUE;
        ck_assert_msg(vcf_clone_unlink_name(info, names[i], &last, &error), "%s", names[i]);
        ck_assert(last == (i == G_N_ELEMENTS(names) - 1));
        g_autoptr(VcfCloneInfo) again = vcf_clone_info_load(lib, "d", NULL);
        guint index;
        gboolean flat;
        ck_assert_msg(!vcf_clone_disk_name(again, names[i], &index, &flat), "%s is back", names[i]);
    }
    ck_assert(!vcf_clone_unlink_name(info, "d.vmdk", &(gboolean){ FALSE }, &error));
    ck_assert_int_eq(error->code, ENOENT);
    g_clear_error(&error);
    ck_assert(store_has("d", "d.vmdk"));   /* freed by the drop, not before */
    ck_assert(vcf_clone_drop_disks(lib, "d", &error));
    ck_assert(!store_has("d", "d.vmdk") && !store_has("d", "d_1.vmdk.xxh"));
    VcfClone *c = vcf_clone_open(lib, "d", 1, &error);
    ck_assert(c != NULL);
    ck_assert_uint_eq(vcf_clone_n_disks(c), 0);
    ck_assert(vcf_clone_close(c, NULL));
    /* A file of the user's makes the folder not the clone's own. */
    g_autofree char *nvram = store_file("d", "d.nvram");
    ck_assert(g_file_set_contents(nvram, "x", 1, NULL));
    g_autoptr(VcfCloneInfo) now = vcf_clone_info_load(lib, "d", NULL);
    ck_assert(!vcf_clone_folder_is_own(now, &other, NULL));
    ck_assert_str_eq(other, "d.nvram");
    ck_assert(vcf_clone_delete(lib, "d", &error));
    ck_assert_uint_eq(leftovers(), 0);
}
END_TEST

/* A tree deeper than any vmclonefs makes is refused, not recursed into
 * without bound. */
START_TEST(deep_tree_is_bounded)
{
    GString *p = g_string_new(dir);
    g_string_append(p, "/deep");
    g_autofree char *top = g_strdup(p->str);
    for (guint i = 0; i < 100; i++)
        g_string_append(p, "/d");
    ck_assert_int_eq(g_mkdir_with_parents(p->str, 0755), 0);
    GError *error = NULL;
    ck_assert(!vcf_remove_tree(top, &error));
    ck_assert_int_eq(error->code, ELOOP);
    g_clear_error(&error);
    g_string_truncate(p, strlen(top) + 2 * 50);   /* 50 levels: removable */
    ck_assert(vcf_remove_tree(p->str, &error));
    ck_assert(!g_file_test(p->str, G_FILE_TEST_EXISTS));
    ck_assert(vcf_remove_tree(top, &error));
    ck_assert(!g_file_test(top, G_FILE_TEST_EXISTS));
    g_string_free(p, TRUE);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("clone");
    TCase *tc = tcase_create("engine");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, job_makes_linked_clone);
    tcase_add_test(tc, snapshot_source);
    tcase_add_test(tc, refusals_leave_no_trace);
    tcase_add_test(tc, suspended_vm_clones_full_only);
    tcase_add_test(tc, leftovers_of_a_crash_are_removed);
    tcase_add_test(tc, rename_moves_everything);
    tcase_add_test(tc, interrupted_rename_recovers);
    tcase_add_test(tc, last_disk_name_frees_the_disks);
    tcase_add_test(tc, deep_tree_is_bounded);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
