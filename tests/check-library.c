/* The library scan, names and taking a snapshot, on VM folders written
 * here by hand the way VMware Workstation writes them. */
#include "config.h"
#include "library.h"
#include "names.h"
#include "parent.h"
#include "snapshot.h"
#include "vcf-error.h"
#include "vmx.h"
#include "test-util.h"

#include <check.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

static char *dir;

static void setup(void) { dir = test_tmpdir_new(); }
static void teardown(void) { test_tmpdir_free(dir); }

static void put(const char *rel, const char *text)
{
    g_autofree char *path = g_build_filename(dir, rel, NULL);
    g_autofree char *parent = g_path_get_dirname(path);
    g_mkdir_with_parents(parent, 0755);
    ck_assert(g_file_set_contents(path, text, -1, NULL));
}

static void make_disk(const char *rel, const char *size)
{
    g_autofree char *path = g_build_filename(dir, rel, NULL);
    const char *argv[] = { "qemu-img", "create", "-q", "-f", "vmdk", path, size, NULL };
    ck_assert_int_eq(test_run(argv, NULL), 0);
}

static const char *VMX =
    "#!/usr/bin/vmware\n"
    ".encoding = \"UTF-8\"\n"
    "displayName = \"Web\"\n"
    "scsi0.present = \"TRUE\"\n"
    "scsi0.virtualDev = \"lsilogic\"\n"
    "scsi0:0.present = \"TRUE\"\n"
    "scsi0:0.fileName = \"Web.vmdk\"\n"
    "sata0:1.present = \"TRUE\"\n"
    "sata0:1.fileName = \"Web_1.vmdk\"\n"
    "sata0:0.present = \"TRUE\"\n"
    "sata0:0.deviceType = \"cdrom-image\"\n"
    "sata0:0.fileName = \"ubuntu.iso\"\n"
    "ide0:0.present = \"FALSE\"\n"
    "ide0:0.fileName = \"Old.vmdk\"\n"
    "NVMe0:0.present = \"TRUE\"\n"
    "NVMe0:0.fileName = \"Fast.vmdk\"\n"
    "checkpoint.vmState = \"\"\n";

START_TEST(scan_finds_vms_disks_and_power)
{
    put("Web/Web.vmx", VMX);
    put("NotAVm/readme.txt", "hello");
    put(".hidden/x.vmx", "a = \"b\"\n");
    put("clones/clones.vmx", "a = \"b\"\n");
    GError *error = NULL;
    g_autoptr(VcfLibrary) lib = vcf_library_open(dir, &error);
    ck_assert(lib != NULL);
    g_autoptr(GPtrArray) vms = vcf_library_list_vms(lib);
    ck_assert_uint_eq(vms->len, 1);
    ck_assert_str_eq(g_ptr_array_index(vms, 0), "Web");
    g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, "Web", &error);
    ck_assert_msg(vm != NULL, "%s", error ? error->message : "");
    /* In .vmx order; the CD-ROM and the absent IDE disk are not disks. */
    ck_assert_uint_eq(vm->disks->len, 3);
    const char *nodes[] = { "scsi0:0", "sata0:1", "nvme0:0" };
    const char *files[] = { "Web.vmdk", "Web_1.vmdk", "Fast.vmdk" };
    for (guint i = 0; i < 3; i++) {
        const VcfVmDisk *d = g_ptr_array_index(vm->disks, i);
        ck_assert_str_eq(d->node, nodes[i]);
        ck_assert_str_eq(d->file_name, files[i]);
        g_autofree char *want = g_build_filename(dir, "Web", files[i], NULL);
        ck_assert_str_eq(d->path, want);
    }
    ck_assert_int_eq(vm->power, VCF_POWER_OFF);
    ck_assert_uint_eq(vm->snapshots->len, 0);

    g_autofree char *lck = g_build_filename(dir, "Web", "Web.vmx.lck", NULL);
    ck_assert_int_eq(g_mkdir(lck, 0755), 0);
    g_autoptr(VcfVm) running = vcf_library_load_vm(lib, "Web", &error);
    ck_assert_int_eq(running->power, VCF_POWER_ON);
    ck_assert(strstr(running->power_reason, "Web.vmx.lck") != NULL);
    g_rmdir(lck);

    put("Web/Web.vmss", "");
    g_autoptr(VcfVm) suspended = vcf_library_load_vm(lib, "Web", &error);
    ck_assert_int_eq(suspended->power, VCF_POWER_SUSPENDED);

    g_autoptr(VcfVm) none = vcf_library_load_vm(lib, "Nope", &error);
    ck_assert(none == NULL);
    ck_assert_int_eq(error->code, ENOENT);
    g_clear_error(&error);
}
END_TEST

/* A Korean Workstation's .vmx: a shared folder whose path holds a byte that
 * is not valid in its code page (0xc7 is a lead byte with no trail) and a
 * bad |XX escape; neither matters for cloning. */
static const char *KOREAN_VMX =
    ".encoding = \"windows-949-2000\"\r\n"
    "displayName = \"\xb0\xa1\xbb\xf3 \xb8\xd3\xbd\xc5\"\r\n"
    "sharedFolder0.hostPath = \"C:\\\xc7\"\r\n"
    "sharedFolder0.guestName = \"share|zz\"\r\n"
    "scsi0:0.present = \"TRUE\"\r\n"
    "scsi0:0.fileName = \"Web.vmdk\"\r\n";

START_TEST(unreadable_unneeded_line_still_loads)
{
    put("Web/Web.vmx", KOREAN_VMX);
    make_disk("Web/Web.vmdk", "1M");
    GError *error = NULL;
    g_autoptr(VcfLibrary) lib = vcf_library_open(dir, &error);
    g_autoptr(GPtrArray) vms = vcf_library_list_vms(lib);
    ck_assert_uint_eq(vms->len, 1);
    g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, "Web", &error);
    ck_assert_msg(vm != NULL, "%s", error ? error->message : "");
    ck_assert_uint_eq(vm->disks->len, 1);
    const VcfVmDisk *d = g_ptr_array_index(vm->disks, 0);
    ck_assert_str_eq(d->file_name, "Web.vmdk");
    /* The caller is told which lines were not read. */
    ck_assert_uint_eq(vm->warnings->len, 2);
    const char *w0 = g_ptr_array_index(vm->warnings, 0);
    const char *w1 = g_ptr_array_index(vm->warnings, 1);
    ck_assert_msg(strstr(w0, "Web.vmx:3: sharedFolder0.hostPath") != NULL &&
                  strstr(w0, "not valid windows-949-2000") != NULL, "%s", w0);
    ck_assert_msg(strstr(w1, "Web.vmx:4: sharedFolder0.guestName") != NULL, "%s", w1);
}
END_TEST

/* A key the clone needs that cannot be read: EINVAL naming file and line. */
static const struct {
    const char *vmx;
    const char *where;
} needed_unreadable[] = {
    { "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"W\xe9.vmdk\"\n",
      "Web.vmx:2: scsi0:0.fileName cannot be read" },
    { "scsi0:0.present = \"TR|zzUE\"\nscsi0:0.fileName = \"Web.vmdk\"\n",
      "Web.vmx:1: scsi0:0.present cannot be read" },
    { "sata0:0.present = \"TRUE\"\nsata0:0.deviceType = \"cd\xff\"\n"
      "sata0:0.fileName = \"x.vmdk\"\n", "Web.vmx:2: sata0:0.deviceType cannot be read" },
};

START_TEST(unreadable_needed_line_is_einval)
{
    put("Web/Web.vmx", needed_unreadable[_i].vmx);
    GError *error = NULL;
    g_autoptr(VcfLibrary) lib = vcf_library_open(dir, &error);
    g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, "Web", &error);
    ck_assert(vm == NULL);
    ck_assert_int_eq(error->code, EINVAL);
    ck_assert_msg(strstr(error->message, needed_unreadable[_i].where) != NULL, "%s",
                  error->message);
    g_clear_error(&error);
}
END_TEST

START_TEST(disk_outside_library_is_refused)
{
    put("Evil/Evil.vmx", "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"../../etc/x.vmdk\"\n");
    GError *error = NULL;
    g_autoptr(VcfLibrary) lib = vcf_library_open(dir, &error);
    g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, "Evil", &error);
    ck_assert(vm == NULL);
    ck_assert_int_eq(error->code, EINVAL);
    ck_assert(strstr(error->message, "outside the library") != NULL);
    g_clear_error(&error);
}
END_TEST

START_TEST(vmsd_snapshots)
{
    put("Web/Web.vmx", VMX);
    put("Web/Web.vmsd",
        ".encoding = \"UTF-8\"\n"
        "snapshot.lastUID = \"2\"\n"
        "snapshot.current = \"2\"\n"
        "snapshot0.uid = \"1\"\n"
        "snapshot0.displayName = \"Base install\"\n"
        "snapshot0.numDisks = \"1\"\n"
        "snapshot0.disk0.fileName = \"Web.vmdk\"\n"
        "snapshot0.disk0.node = \"scsi0:0\"\n"
        "snapshot1.uid = \"2\"\n"
        "snapshot1.parent = \"1\"\n"
        "snapshot1.displayName = \"Configured\"\n"
        "snapshot1.numDisks = \"1\"\n"
        "snapshot1.disk0.fileName = \"Web-000001.vmdk\"\n"
        "snapshot1.disk0.node = \"scsi0:0\"\n"
        "snapshot.numSnapshots = \"2\"\n");
    GError *error = NULL;
    g_autoptr(VcfLibrary) lib = vcf_library_open(dir, &error);
    g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, "Web", &error);
    ck_assert_msg(vm != NULL, "%s", error ? error->message : "");
    ck_assert_uint_eq(vm->snapshots->len, 2);
    ck_assert_str_eq(vm->current_snapshot_uid, "2");
    const VcfSnapshot *s = vcf_vm_find_snapshot(vm, "Configured");
    ck_assert(s != NULL);
    ck_assert_str_eq(s->uid, "2");
    ck_assert_str_eq(s->parent_uid, "1");
    ck_assert_uint_eq(s->disks->len, 1);
    ck_assert_str_eq(((VcfVmDisk *)g_ptr_array_index(s->disks, 0))->file_name, "Web-000001.vmdk");
    ck_assert(vcf_vm_find_snapshot(vm, "Nope") == NULL);

    /* A snapshot claiming disks it does not list is malformed. */
    put("Web/Web.vmsd", "snapshot0.uid = \"1\"\nsnapshot0.numDisks = \"3\"\n");
    g_autoptr(VcfVm) bad = vcf_library_load_vm(lib, "Web", &error);
    ck_assert(bad == NULL);
    ck_assert_int_eq(error->code, EINVAL);
    ck_assert(strstr(error->message, "Web.vmsd") != NULL);
    g_clear_error(&error);
}
END_TEST

START_TEST(take_snapshot)
{
    put("Web/Web.vmx", "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"Web.vmdk\"\n"
                       "displayName = \"Web\"\n");
    put("Web/Web.vmsd", "");   /* Workstation leaves it empty before the first snapshot */
    make_disk("Web/Web.vmdk", "8M");
    GError *error = NULL;
    g_autoptr(VcfLibrary) lib = vcf_library_open(dir, &error);
    g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, "Web", &error);
    g_autofree char *uid = NULL;
    ck_assert_msg(vcf_snapshot_take(vm, dir, NULL, "first", "d", NULL, NULL, &uid, NULL,
                                    &error), "%s", error ? error->message : "");
    ck_assert_str_eq(uid, "1");
    g_autoptr(VcfVm) after = vcf_library_load_vm(lib, "Web", &error);
    ck_assert_str_eq(((VcfVmDisk *)g_ptr_array_index(after->disks, 0))->file_name, "Web-000001.vmdk");
    ck_assert_uint_eq(after->snapshots->len, 1);
    const VcfSnapshot *s = vcf_vm_find_snapshot(after, "first");
    ck_assert_str_eq(((VcfVmDisk *)g_ptr_array_index(s->disks, 0))->file_name, "Web.vmdk");
    ck_assert_str_eq(after->current_snapshot_uid, "1");

    /* The new delta is a valid child of the old disk, for qemu-img too. */
    g_autofree char *delta = g_build_filename(dir, "Web", "Web-000001.vmdk", NULL);
    const char *check[] = { "qemu-img", "check", "-q", delta, NULL };
    ck_assert_int_eq(test_run(check, NULL), 0);
    g_autoptr(VcfParent) p = vcf_parent_open(delta, dir, NULL, 1, &error);
    ck_assert_msg(p != NULL, "%s", error ? error->message : "");
    ck_assert_uint_eq(vcf_parent_get_size(p), 8 * 1024 * 1024);

    /* A second snapshot continues the numbering and the tree. */
    g_autofree char *uid2 = NULL;
    ck_assert(vcf_snapshot_take(after, dir, NULL, "second", "d", NULL, NULL, &uid2, NULL, &error));
    ck_assert_str_eq(uid2, "2");
    g_autoptr(VcfVm) again = vcf_library_load_vm(lib, "Web", &error);
    ck_assert_str_eq(((VcfVmDisk *)g_ptr_array_index(again->disks, 0))->file_name, "Web-000002.vmdk");
    const VcfSnapshot *s2 = vcf_vm_find_snapshot(again, "second");
    ck_assert_str_eq(s2->parent_uid, "1");
    ck_assert_uint_eq(again->snapshots->len, 2);

    /* A running VM is not snapshotted from outside VMware. */
    again->power = VCF_POWER_ON;
    again->power_reason = g_strdup("test");
    g_autofree char *uid3 = NULL;
    ck_assert(!vcf_snapshot_take(again, dir, NULL, "third", "d", NULL, NULL, &uid3, NULL, &error));
    ck_assert_int_eq(error->code, EBUSY);
    g_clear_error(&error);
}
END_TEST

static char *slurp(const char *rel)
{
    g_autofree char *path = g_build_filename(dir, rel, NULL);
    char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, NULL))
        return NULL;
    return text;
}

START_TEST(undo_snapshot)
{
    /* The oracle: the files' bytes before the snapshot. */
    put("Web/Web.vmx", "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"Web.vmdk\"\n"
                       "sata0:1.present = \"TRUE\"\nsata0:1.fileName = \"Web_1.vmdk\"\n");
    make_disk("Web/Web.vmdk", "8M");
    make_disk("Web/Web_1.vmdk", "4M");
    g_autofree char *vmx_before = slurp("Web/Web.vmx");
    GError *error = NULL;
    g_autoptr(VcfLibrary) lib = vcf_library_open(dir, &error);
    g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, "Web", &error);
    g_autofree char *uid = NULL;
    g_autoptr(VcfSnapshotUndo) undo = NULL;
    ck_assert(vcf_snapshot_take(vm, dir, NULL, "first", "d", NULL, NULL, &uid, &undo, &error));
    ck_assert(undo != NULL);
    g_autofree char *vmx_mid = slurp("Web/Web.vmx");
    ck_assert(strstr(vmx_mid, "Web-000001.vmdk") != NULL);
    g_autofree char *d1 = g_build_filename(dir, "Web", "Web_1-000001.vmdk", NULL);
    ck_assert(g_file_test(d1, G_FILE_TEST_EXISTS));

    ck_assert_msg(vcf_snapshot_undo(undo, &error), "%s", error ? error->message : "");
    g_autofree char *vmx_after = slurp("Web/Web.vmx");
    ck_assert_str_eq(vmx_after, vmx_before);
    g_autofree char *vmsd_after = slurp("Web/Web.vmsd");
    ck_assert_msg(vmsd_after == NULL, "a .vmsd that did not exist was left");
    g_autofree char *d0 = g_build_filename(dir, "Web", "Web-000001.vmdk", NULL);
    ck_assert(!g_file_test(d0, G_FILE_TEST_EXISTS));
    ck_assert(!g_file_test(d1, G_FILE_TEST_EXISTS));
    g_autoptr(VcfVm) again = vcf_library_load_vm(lib, "Web", &error);
    ck_assert_uint_eq(again->snapshots->len, 0);
    ck_assert_str_eq(((VcfVmDisk *)g_ptr_array_index(again->disks, 0))->file_name, "Web.vmdk");
}
END_TEST

START_TEST(names)
{
    GError *error = NULL;
    ck_assert(vcf_name_check("web1", NULL));
    ck_assert(vcf_name_check("Ubuntu clone (2)", NULL));
    const char *bad[] = { "", ".", "..", ".web", "a/b", "/", "a@b", "a\tb", "a\nb", "\x7f" };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        ck_assert_msg(!vcf_name_check(bad[i], &error), "accepted \"%s\"", bad[i]);
        ck_assert_int_eq(error->code, EINVAL);
        g_clear_error(&error);
    }
    g_autofree char *longname = g_strnfill(201, 'x');
    ck_assert(!vcf_name_check(longname, NULL));
    ck_assert(!vcf_name_check("\xff\xfe", NULL));

    g_autofree char *s0 = vcf_disk_stem("web", 0), *s2 = vcf_disk_stem("web", 2);
    ck_assert_str_eq(s0, "web");
    ck_assert_str_eq(s2, "web_2");
    g_autofree char *r1 = vcf_relative_path("/lib/.vmclonefs/clones/web", "/lib/Ubuntu/Ubuntu.vmdk");
    ck_assert_str_eq(r1, "../../../Ubuntu/Ubuntu.vmdk");
    g_autofree char *r2 = vcf_relative_path("/lib/Ubuntu", "/lib/Ubuntu/Ubuntu.vmdk");
    ck_assert_str_eq(r2, "Ubuntu.vmdk");
    ck_assert(vcf_path_is_inside("/lib/a", "/lib"));
    ck_assert(vcf_path_is_inside("/lib", "/lib/"));
    ck_assert(!vcf_path_is_inside("/library/a", "/lib"));

    g_autofree char *n1 = vcf_snapshot_delta_name(dir, "Web.vmdk");
    ck_assert_str_eq(n1, "Web-000001.vmdk");
    put("Web-000003.vmdk", "");
    g_autofree char *n2 = vcf_snapshot_delta_name(dir, "Web-000002.vmdk");
    ck_assert_str_eq(n2, "Web-000001.vmdk");
    put("Web-000001.vmdk", "");
    g_autofree char *n3 = vcf_snapshot_delta_name(dir, "Web-000002.vmdk");
    ck_assert_str_eq(n3, "Web-000002.vmdk");
}
END_TEST

/* Rewrites PATH in place: g_file_set_contents would rename a new file over
 * it, and a lock stays with the old file. */
static void overwrite(const char *path, const char *text)
{
    FILE *f = fopen(path, "r+");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(ftruncate(fileno(f), 0), 0);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
}

/* Two opens of one library are two open file descriptions: their OFD locks
 * conflict even in one process, as two daemons' would. */
START_TEST(one_lock_per_library)
{
    GError *error = NULL;
    g_autoptr(VcfLibrary) first = vcf_library_open(dir, &error);
    ck_assert_ptr_nonnull(first);
    ck_assert(vcf_library_lock(first, &error));
    g_autofree char *lock = g_build_filename(vcf_library_root(first), ".vmclonefs", "lock", NULL);
    g_autofree char *text = NULL;
    ck_assert(g_file_get_contents(lock, &text, NULL, NULL));
    g_autofree char *want = g_strdup_printf("pid %d\nhost %s\n", (int)getpid(), g_get_host_name());
    ck_assert_str_eq(text, want);

    VcfLibrary *second = vcf_library_open(dir, &error);
    ck_assert_ptr_nonnull(second);
    ck_assert(!vcf_library_lock(second, &error));
    ck_assert_int_eq(error->code, EBUSY);
    g_autofree char *holder = g_strdup_printf("vmclonefs pid %d on host %s holds its lock %s",
                                              (int)getpid(), g_get_host_name(), lock);
    ck_assert_msg(strstr(error->message, holder) != NULL, "%s", error->message);
    g_clear_error(&error);

    /* Forged text in the file is not repeated: only a pid and a host name. */
    overwrite(lock, "pid 12x\nhost evil\x1b[2J\n");
    ck_assert(!vcf_library_lock(second, &error));
    ck_assert_msg(strstr(error->message, "another vmclonefs (not yet named") != NULL, "%s",
                  error->message);
    ck_assert(strchr(error->message, '\x1b') == NULL);
    g_clear_error(&error);

    /* The lock goes with the holder; a stale text does not stop the next. */
    g_clear_pointer(&first, vcf_library_free);
    overwrite(lock, "pid 1\nhost elsewhere-with-a-long-name\n");
    ck_assert(vcf_library_lock(second, &error));
    g_clear_pointer(&text, g_free);
    ck_assert(g_file_get_contents(lock, &text, NULL, NULL));
    ck_assert_str_eq(text, want);
    vcf_library_free(second);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("library");
    TCase *tc = tcase_create("scan");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, scan_finds_vms_disks_and_power);
    tcase_add_test(tc, disk_outside_library_is_refused);
    tcase_add_test(tc, unreadable_unneeded_line_still_loads);
    tcase_add_loop_test(tc, unreadable_needed_line_is_einval, 0,
                        (int)G_N_ELEMENTS(needed_unreadable));
    tcase_add_test(tc, vmsd_snapshots);
    tcase_add_test(tc, take_snapshot);
    tcase_add_test(tc, undo_snapshot);
    tcase_add_test(tc, names);
    tcase_add_test(tc, one_lock_per_library);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
