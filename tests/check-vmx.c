#include "config.h"

#include "test-util.h"

#include <check.h>
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileutil.h"
#include "vcf-error.h"
#include "vmx.h"

/* A .vmx as VMware Workstation 17 writes it (plus the shebang Fusion adds
 * and a hand edit), cut into pieces so that expected outputs can be spelled
 * out independently of the code under test. */
#define VMX_HEAD                                                \
    "#!/usr/bin/vmware\n"                                       \
    ".encoding = \"UTF-8\"\n"                                   \
    "config.version = \"8\"\n"                                  \
    "virtualHW.version = \"20\"\n"                              \
    "pciBridge0.present = \"TRUE\"\n"                           \
    "pciBridge4.present = \"TRUE\"\n"                           \
    "pciBridge4.virtualDev = \"pcieRootPort\"\n"                \
    "pciBridge4.functions = \"8\"\n"                            \
    "vmci0.present = \"TRUE\"\n"                                \
    "hpet0.present = \"TRUE\"\n"                                \
    "nvram = \"Ubuntu.nvram\"\n"                                \
    "virtualHW.productCompatibility = \"hosted\"\n"             \
    "powerType.powerOff = \"soft\"\n"                           \
    "powerType.powerOn = \"soft\"\n"                            \
    "powerType.suspend = \"soft\"\n"                            \
    "powerType.reset = \"soft\"\n"
#define VMX_NAME "displayName = \"Ubuntu 22.04\"\n"
#define VMX_MID1                                                \
    "guestOS = \"ubuntu-64\"\n"                                 \
    "tools.syncTime = \"FALSE\"\n"                              \
    "numvcpus = \"2\"\n"                                        \
    "memsize = \"4096\"\n"                                      \
    "scsi0.virtualDev = \"lsilogic\"\n"                         \
    "scsi0.present = \"TRUE\"\n"                                \
    "scsi0:0.fileName = \"Ubuntu-000001.vmdk\"\n"               \
    "scsi0:0.present = \"TRUE\"\n"
#define VMX_COMMENT                                             \
    "\n"                                                        \
    "# hand-edited: no 3D on the CI hosts\n"
#define VMX_3D "mks.enable3d = FALSE\n"
#define VMX_POLICY "tools.upgrade.policy=\"upgradeAtPowerCycle\"\n"
#define VMX_MID2                                                \
    "ethernet0.connectionType = \"nat\"\n"                      \
    "ethernet0.addressType = \"generated\"\n"                   \
    "ethernet0.virtualDev = \"e1000\"\n"                        \
    "ethernet0.present = \"TRUE\"\n"
#define VMX_MAC "ethernet0.generatedAddress = \"00:0c:29:c6:d7:e8\"\n"
#define VMX_TAIL                                                \
    "ethernet0.generatedAddressOffset = \"0\"\n"                \
    "extendedConfigFile = \"Ubuntu.vmxf\"\n"                    \
    "floppy0.present = \"FALSE\"\n"                             \
    "uuid.bios = \"56 4d 8a 1b 2c 3d 4e 5f-60 71 82 93 a4 b5 c6 d7\"\n" \
    "uuid.location = \"56 4d 8a 1b 2c 3d 4e 5f-60 71 82 93 a4 b5 c6 d7\"\n" \
    "vmotion.checkpointFBSize = \"4194304\"\n"                  \
    "cleanShutdown = \"TRUE\"\n"
#define VMX_CKPT "checkpoint.vmState = \"\"\n"
#define VMX_ANNOT "annotation = \"Base image|0Abuilt by |22ops|22 |7c do not edit\"\n"

#define VMX VMX_HEAD VMX_NAME VMX_MID1 VMX_COMMENT VMX_3D VMX_POLICY VMX_MID2 \
    VMX_MAC VMX_TAIL VMX_CKPT VMX_ANNOT
#define VMX_KEYS 40 /* 43 lines less the shebang, the blank and the comment */

/* A .vmsd with two snapshots, and a snapshot10 whose keys also start with
 * "snapshot1" to catch a prefix match that ignores the dot. */
#define VMSD_HEAD                                               \
    ".encoding = \"UTF-8\"\n"                                   \
    "snapshot.lastUID = \"11\"\n"                               \
    "snapshot.current = \"11\"\n"
#define VMSD_S0                                                 \
    "snapshot0.uid = \"1\"\n"                                   \
    "snapshot0.filename = \"Ubuntu-Snapshot1.vmsn\"\n"          \
    "snapshot0.displayName = \"Fresh install\"\n"               \
    "snapshot0.description = \"Before apt upgrade\"\n"          \
    "snapshot0.createTimeHigh = \"399645\"\n"                   \
    "snapshot0.createTimeLow = \"-1389497344\"\n"               \
    "snapshot0.numDisks = \"1\"\n"                              \
    "snapshot0.disk0.fileName = \"Ubuntu.vmdk\"\n"              \
    "snapshot0.disk0.node = \"scsi0:0\"\n"
#define VMSD_S1                                                 \
    "snapshot1.uid = \"10\"\n"                                  \
    "snapshot1.filename = \"Ubuntu-Snapshot10.vmsn\"\n"         \
    "snapshot1.parent = \"1\"\n"                                \
    "snapshot1.displayName = \"Updated\"\n"                     \
    "snapshot1.createTimeHigh = \"399650\"\n"                   \
    "snapshot1.createTimeLow = \"1785036800\"\n"                \
    "snapshot1.numDisks = \"1\"\n"                              \
    "snapshot1.disk0.fileName = \"Ubuntu-000001.vmdk\"\n"       \
    "snapshot1.disk0.node = \"scsi0:0\"\n"
#define VMSD_S10                                                \
    "snapshot10.uid = \"11\"\n"                                 \
    "snapshot10.filename = \"Ubuntu-Snapshot11.vmsn\"\n"        \
    "snapshot10.parent = \"10\"\n"                              \
    "snapshot10.displayName = \"Tools installed\"\n"
#define VMSD_TAIL                                               \
    "snapshot.numSnapshots = \"3\"\n"                           \
    "snapshot.mru0.uid = \"11\"\n"                              \
    "snapshot.mru1.uid = \"10\"\n"

/* windows-1252 bytes: "Café" and "naïve". */
#define CP1252_VMX                                              \
    ".encoding = \"windows-1252\"\r\n"                          \
    "displayName = \"Caf\xe9\"\r\n"                             \
    "annotation = \"na\xefve |22quoted|22\"\r\n"

#define assert_error(err, errcode, needle)                                    \
    do {                                                                       \
        ck_assert_ptr_nonnull(err);                                            \
        ck_assert_msg((err)->domain == VCF_ERROR, "domain %s: %s",             \
                      g_quark_to_string((err)->domain), (err)->message);       \
        ck_assert_msg((err)->code == (errcode), "code %d, want %d: %s",        \
                      (err)->code, (errcode), (err)->message);                 \
        ck_assert_msg(strstr((err)->message, (needle)) != NULL,                \
                      "message \"%s\" lacks \"%s\"", (err)->message, (needle)); \
    } while (0)

static VcfVmx *parse_ok(const char *text, gsize len)
{
    g_autoptr(GError) error = NULL;
    VcfVmx *vmx = vcf_vmx_parse(text, len, "test.vmx", &error);
    ck_assert_msg(vmx != NULL, "parse failed: %s", error ? error->message : "?");
    ck_assert_ptr_null(error);
    return vmx;
}

/* The whole output must be exactly EXPECTED (byte for byte, EXPECTED_LEN bytes). */
static void assert_data_len(const VcfVmx *vmx, const char *expected, gsize expected_len)
{
    g_autoptr(GError) error = NULL;
    gsize len = 0;
    g_autofree char *data = vcf_vmx_to_data(vmx, &len, &error);
    ck_assert_msg(data != NULL, "to_data failed: %s", error ? error->message : "?");
    /* A string comparison first, for a readable failure. */
    ck_assert_str_eq(data, expected);
    ck_assert_uint_eq(len, expected_len);
    ck_assert_int_eq(memcmp(data, expected, len), 0);
}

#define assert_data(vmx, expected) assert_data_len((vmx), (expected), sizeof(expected) - 1)

static char *make_tmp_dir(void)
{
    g_autoptr(GError) error = NULL;
    char *dir = g_dir_make_tmp("check-vmx-XXXXXX", &error);
    ck_assert_msg(dir != NULL, "g_dir_make_tmp: %s", error ? error->message : "?");
    return dir;
}

static gint compare_names(gconstpointer a, gconstpointer b)
{
    /* GPtrArray passes pointers to its elements. */
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names in DIR, joined by spaces: shows leftover temporary files. */
static char *dir_listing(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    ck_assert_ptr_nonnull(d);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *name;
    while ((name = g_dir_read_name(d)) != NULL)
        g_ptr_array_add(names, g_strdup(name));
    g_ptr_array_sort(names, compare_names);
    g_ptr_array_add(names, NULL);
    return g_strjoinv(" ", (char **)names->pdata);
}

/* Our test folders hold files and empty folders only. */
static void remove_tmp_dir(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    ck_assert_ptr_nonnull(d);
    const char *name;
    while ((name = g_dir_read_name(d)) != NULL) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        ck_assert_int_eq(g_remove(path), 0);
    }
    ck_assert_int_eq(g_rmdir(dir), 0);
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_mode & 07777;
}

START_TEST(test_get)
{
    g_autoptr(VcfVmx) vmx = parse_ok(VMX, strlen(VMX));

    ck_assert_str_eq(vcf_vmx_get(vmx, ".ENCODING"), "UTF-8");
    ck_assert_str_eq(vcf_vmx_get(vmx, "displayname"), "Ubuntu 22.04");
    ck_assert_str_eq(vcf_vmx_get(vmx, "DISPLAYNAME"), "Ubuntu 22.04");
    ck_assert_str_eq(vcf_vmx_get(vmx, "SCSI0:0.FILENAME"), "Ubuntu-000001.vmdk");
    ck_assert_str_eq(vcf_vmx_get(vmx, "Ethernet0.GeneratedAddress"), "00:0c:29:c6:d7:e8");
    ck_assert_str_eq(vcf_vmx_get(vmx, "uuid.bios"),
                     "56 4d 8a 1b 2c 3d 4e 5f-60 71 82 93 a4 b5 c6 d7");
    ck_assert_str_eq(vcf_vmx_get(vmx, "checkpoint.vmState"), "");
    ck_assert_str_eq(vcf_vmx_get(vmx, "mks.enable3d"), "FALSE");
    ck_assert_str_eq(vcf_vmx_get(vmx, "tools.upgrade.policy"), "upgradeAtPowerCycle");
    /* |0A, |22 and a lowercase |7c. */
    ck_assert_str_eq(vcf_vmx_get(vmx, "annotation"),
                     "Base image\nbuilt by \"ops\" | do not edit");
    ck_assert_ptr_null(vcf_vmx_get(vmx, "scsi0:1.fileName"));
    ck_assert_ptr_null(vcf_vmx_get(vmx, "displayName2"));
    ck_assert_ptr_null(vcf_vmx_get(vmx, "# hand-edited: no 3D on the CI hosts"));

    ck_assert(vcf_vmx_get_bool(vmx, "cleanShutdown", FALSE));
    ck_assert(!vcf_vmx_get_bool(vmx, "MKS.ENABLE3D", TRUE));
    ck_assert(!vcf_vmx_get_bool(vmx, "floppy0.present", TRUE));
    ck_assert(vcf_vmx_get_bool(vmx, "guestOS", TRUE));      /* not a boolean */
    ck_assert(!vcf_vmx_get_bool(vmx, "guestOS", FALSE));
    ck_assert(vcf_vmx_get_bool(vmx, "no.such.key", TRUE));
    ck_assert(!vcf_vmx_get_bool(vmx, "no.such.key", FALSE));

    g_auto(GStrv) keys = vcf_vmx_keys(vmx);
    ck_assert_uint_eq(g_strv_length(keys), VMX_KEYS);
    ck_assert_str_eq(keys[0], ".encoding");
    ck_assert_str_eq(keys[1], "config.version");
    ck_assert_str_eq(keys[15], "displayName");
    ck_assert_str_eq(keys[22], "scsi0:0.fileName");
    ck_assert_str_eq(keys[24], "mks.enable3d");
    ck_assert_str_eq(keys[VMX_KEYS - 1], "annotation");
}
END_TEST

START_TEST(test_bool_spellings)
{
    static const char text[] =
        "a = \"TRUE\"\nb = \"true\"\nc = \"1\"\nd = \"yes\"\n"
        "e = \"FALSE\"\nf = \"false\"\ng = \"0\"\nh = \"no\"\ni = \"maybe\"\n";
    g_autoptr(VcfVmx) vmx = parse_ok(text, strlen(text));
    for (const char *k = "abcd"; *k; k++) {
        char key[2] = { *k, 0 };
        ck_assert_msg(vcf_vmx_get_bool(vmx, key, FALSE), "%s", key);
    }
    for (const char *k = "efgh"; *k; k++) {
        char key[2] = { *k, 0 };
        ck_assert_msg(!vcf_vmx_get_bool(vmx, key, TRUE), "%s", key);
    }
    ck_assert(vcf_vmx_get_bool(vmx, "i", TRUE));
    ck_assert(!vcf_vmx_get_bool(vmx, "i", FALSE));
}
END_TEST

START_TEST(test_untouched_round_trip)
{
    g_autoptr(VcfVmx) vmx = parse_ok(VMX, strlen(VMX));
    assert_data(vmx, VMX);

    /* Setting a value to what it already is changes nothing, even on the
     * unquoted and unspaced hand-edited lines. */
    vcf_vmx_set(vmx, "memsize", "4096");
    vcf_vmx_set(vmx, "MKS.enable3d", "FALSE");
    vcf_vmx_set(vmx, "tools.upgrade.policy", "upgradeAtPowerCycle");
    vcf_vmx_set(vmx, "annotation", "Base image\nbuilt by \"ops\" | do not edit");
    assert_data(vmx, VMX);
}
END_TEST

START_TEST(test_set_existing)
{
    g_autoptr(VcfVmx) vmx = parse_ok(VMX, strlen(VMX));
    vcf_vmx_set(vmx, "DISPLAYNAME", "web1");
    vcf_vmx_set(vmx, "ETHERNET0.GENERATEDADDRESS", "00:0c:29:aa:bb:cc");
    vcf_vmx_set(vmx, "mks.enable3d", "TRUE");
    vcf_vmx_set(vmx, "tools.upgrade.policy", "manual");

    assert_data(vmx,
                VMX_HEAD
                "displayName = \"web1\"\n"
                VMX_MID1 VMX_COMMENT
                "mks.enable3d = \"TRUE\"\n"
                "tools.upgrade.policy=\"manual\"\n"
                VMX_MID2
                "ethernet0.generatedAddress = \"00:0c:29:aa:bb:cc\"\n"
                VMX_TAIL VMX_CKPT VMX_ANNOT);
    ck_assert_str_eq(vcf_vmx_get(vmx, "displayName"), "web1");
    ck_assert(vcf_vmx_get_bool(vmx, "mks.enable3d", FALSE));

    g_auto(GStrv) keys = vcf_vmx_keys(vmx);
    ck_assert_uint_eq(g_strv_length(keys), VMX_KEYS);
    ck_assert_str_eq(keys[15], "displayName"); /* the file's spelling */
}
END_TEST

START_TEST(test_set_new)
{
    g_autoptr(VcfVmx) vmx = parse_ok(VMX, strlen(VMX));
    vcf_vmx_set(vmx, "guestinfo.vmclonefs.source", "Ubuntu@Fresh install");
    vcf_vmx_set(vmx, "uuid.action", "create");
    assert_data(vmx, VMX
                "guestinfo.vmclonefs.source = \"Ubuntu@Fresh install\"\n"
                "uuid.action = \"create\"\n");

    /* Once added, a key is changed in place like any other. */
    vcf_vmx_set(vmx, "GUESTINFO.vmclonefs.SOURCE", "web1");
    assert_data(vmx, VMX
                "guestinfo.vmclonefs.source = \"web1\"\n"
                "uuid.action = \"create\"\n");
    g_auto(GStrv) keys = vcf_vmx_keys(vmx);
    ck_assert_uint_eq(g_strv_length(keys), VMX_KEYS + 2);
    ck_assert_str_eq(keys[VMX_KEYS + 1], "uuid.action");
}
END_TEST

START_TEST(test_new_empty)
{
    g_autoptr(VcfVmx) vmx = vcf_vmx_new();
    ck_assert_ptr_null(vcf_vmx_get(vmx, "displayName"));
    assert_data(vmx, "");
    g_auto(GStrv) none = vcf_vmx_keys(vmx);
    ck_assert_uint_eq(g_strv_length(none), 0);

    vcf_vmx_set(vmx, ".encoding", "UTF-8");
    vcf_vmx_set(vmx, "displayName", "Café \"1\"");
    assert_data(vmx, ".encoding = \"UTF-8\"\ndisplayName = \"Café |221|22\"\n");
}
END_TEST

START_TEST(test_remove)
{
    g_autoptr(VcfVmx) vmx = parse_ok(VMX, strlen(VMX));
    ck_assert(vcf_vmx_remove(vmx, "CHECKPOINT.VMSTATE"));
    ck_assert(!vcf_vmx_remove(vmx, "checkpoint.vmState"));
    ck_assert(vcf_vmx_remove(vmx, "Annotation"));
    ck_assert(vcf_vmx_remove(vmx, "MKS.Enable3D"));
    ck_assert(!vcf_vmx_remove(vmx, "no.such.key"));
    ck_assert_ptr_null(vcf_vmx_get(vmx, "checkpoint.vmState"));
    ck_assert_ptr_null(vcf_vmx_get(vmx, "annotation"));
    assert_data(vmx, VMX_HEAD VMX_NAME VMX_MID1 VMX_COMMENT VMX_POLICY VMX_MID2
                VMX_MAC VMX_TAIL);

    g_auto(GStrv) keys = vcf_vmx_keys(vmx);
    ck_assert_uint_eq(g_strv_length(keys), VMX_KEYS - 3);
    ck_assert_str_eq(keys[VMX_KEYS - 4], "cleanShutdown");

    /* A key removed and set again goes to the end. */
    vcf_vmx_set(vmx, "mks.enable3d", "FALSE");
    assert_data(vmx, VMX_HEAD VMX_NAME VMX_MID1 VMX_COMMENT VMX_POLICY VMX_MID2
                VMX_MAC VMX_TAIL "mks.enable3d = \"FALSE\"\n");
}
END_TEST

START_TEST(test_remove_prefix)
{
    static const char vmsd[] = VMSD_HEAD VMSD_S0 VMSD_S1 VMSD_S10 VMSD_TAIL;
    g_autoptr(VcfVmx) vmx = parse_ok(vmsd, strlen(vmsd));
    assert_data(vmx, VMSD_HEAD VMSD_S0 VMSD_S1 VMSD_S10 VMSD_TAIL);

    ck_assert_uint_eq(vcf_vmx_remove_prefix(vmx, "SNAPSHOT1."), 9);
    assert_data(vmx, VMSD_HEAD VMSD_S0 VMSD_S10 VMSD_TAIL);
    ck_assert_ptr_null(vcf_vmx_get(vmx, "snapshot1.uid"));
    ck_assert_str_eq(vcf_vmx_get(vmx, "snapshot10.uid"), "11");
    ck_assert_str_eq(vcf_vmx_get(vmx, "snapshot0.displayName"), "Fresh install");
    ck_assert_uint_eq(vcf_vmx_remove_prefix(vmx, "snapshot1."), 0);

    ck_assert_uint_eq(vcf_vmx_remove_prefix(vmx, "snapshot10."), 4);
    ck_assert_uint_eq(vcf_vmx_remove_prefix(vmx, "Snapshot0.Disk0."), 2);
    assert_data(vmx, VMSD_HEAD
                "snapshot0.uid = \"1\"\n"
                "snapshot0.filename = \"Ubuntu-Snapshot1.vmsn\"\n"
                "snapshot0.displayName = \"Fresh install\"\n"
                "snapshot0.description = \"Before apt upgrade\"\n"
                "snapshot0.createTimeHigh = \"399645\"\n"
                "snapshot0.createTimeLow = \"-1389497344\"\n"
                "snapshot0.numDisks = \"1\"\n"
                VMSD_TAIL);
}
END_TEST

START_TEST(test_duplicate_keys)
{
    static const char text[] =
        "memsize = \"2048\"\n"
        "numvcpus = \"2\"\n"
        "MEMSIZE = \"4096\"\n";
    g_autoptr(VcfVmx) vmx = parse_ok(text, strlen(text));
    ck_assert_str_eq(vcf_vmx_get(vmx, "memsize"), "4096");

    g_auto(GStrv) keys = vcf_vmx_keys(vmx);
    ck_assert_uint_eq(g_strv_length(keys), 2);
    ck_assert_str_eq(keys[0], "numvcpus");
    ck_assert_str_eq(keys[1], "MEMSIZE");

    vcf_vmx_set(vmx, "memSize", "8192");
    assert_data(vmx, "memsize = \"2048\"\nnumvcpus = \"2\"\nMEMSIZE = \"8192\"\n");
    ck_assert_str_eq(vcf_vmx_get(vmx, "memsize"), "8192");

    ck_assert(vcf_vmx_remove(vmx, "memsize"));
    assert_data(vmx, "numvcpus = \"2\"\n");
    ck_assert_ptr_null(vcf_vmx_get(vmx, "memsize"));
}
END_TEST

START_TEST(test_escapes)
{
    static const char text[] = "displayName = \"x\"\nannotation = \"\"\n";
    static const char value[] = "say \"hi\" | tab\there\r\nnext # not a comment";
    g_autoptr(VcfVmx) vmx = parse_ok(text, strlen(text));
    vcf_vmx_set(vmx, "annotation", value);
    ck_assert_str_eq(vcf_vmx_get(vmx, "annotation"), value);
    assert_data(vmx, "displayName = \"x\"\n"
                "annotation = \"say |22hi|22 |7C tab|09here|0D|0Anext # not a comment\"\n");

    /* Read back, the escapes decode to the same value. */
    gsize len = 0;
    g_autofree char *data = vcf_vmx_to_data(vmx, &len, NULL);
    ck_assert_ptr_nonnull(data);
    g_autoptr(VcfVmx) again = parse_ok(data, len);
    ck_assert_str_eq(vcf_vmx_get(again, "annotation"), value);
    assert_data(again, "displayName = \"x\"\n"
                "annotation = \"say |22hi|22 |7C tab|09here|0D|0Anext # not a comment\"\n");

    /* An escaped '#' (|23) and non-ASCII UTF-8 escaped byte by byte decode too. */
    static const char esc[] = "a = \"|23 no|7Cpipe|7c |C3|A9\"\n";
    g_autoptr(VcfVmx) third = parse_ok(esc, strlen(esc));
    ck_assert_str_eq(vcf_vmx_get(third, "a"), "# no|pipe| \xc3\xa9");
    assert_data(third, "a = \"|23 no|7Cpipe|7c |C3|A9\"\n");
}
END_TEST

START_TEST(test_unquoted_and_spacing)
{
    static const char text[] =
        "  a=\"1\"\n"
        "b   =   plain   \n"
        "\tc = \"3\"   # trailing note\n"
        "d = \n"
        "   \n";
    g_autoptr(VcfVmx) vmx = parse_ok(text, strlen(text));
    ck_assert_str_eq(vcf_vmx_get(vmx, "a"), "1");
    ck_assert_str_eq(vcf_vmx_get(vmx, "b"), "plain");
    ck_assert_str_eq(vcf_vmx_get(vmx, "c"), "3");
    ck_assert_str_eq(vcf_vmx_get(vmx, "d"), "");
    assert_data(vmx, "  a=\"1\"\nb   =   plain   \n\tc = \"3\"   # trailing note\nd = \n   \n");

    vcf_vmx_set(vmx, "A", "one");
    vcf_vmx_set(vmx, "B", "two words");
    vcf_vmx_set(vmx, "C", "three");
    assert_data(vmx, "  a=\"one\"\nb   =   \"two words\"   \n"
                "\tc = \"three\"   # trailing note\nd = \n   \n");
}
END_TEST

START_TEST(test_crlf)
{
    static const char text[] =
        ".encoding = \"UTF-8\"\r\n"
        "config.version = \"8\"\r\n"
        "displayName = \"Windows 10 x64\"\r\n"
        "memsize = \"8192\"\r\n";
    g_autoptr(VcfVmx) vmx = parse_ok(text, strlen(text));
    ck_assert_str_eq(vcf_vmx_get(vmx, "displayName"), "Windows 10 x64");
    assert_data(vmx, ".encoding = \"UTF-8\"\r\n"
                "config.version = \"8\"\r\n"
                "displayName = \"Windows 10 x64\"\r\n"
                "memsize = \"8192\"\r\n");

    vcf_vmx_set(vmx, "displayName", "web1");
    vcf_vmx_set(vmx, "uuid.action", "create");
    assert_data(vmx, ".encoding = \"UTF-8\"\r\n"
                "config.version = \"8\"\r\n"
                "displayName = \"web1\"\r\n"
                "memsize = \"8192\"\r\n"
                "uuid.action = \"create\"\r\n");
}
END_TEST

START_TEST(test_no_final_newline)
{
    static const char text[] = "a = \"1\"\nb = \"2\"";
    g_autoptr(VcfVmx) vmx = parse_ok(text, strlen(text));
    ck_assert_str_eq(vcf_vmx_get(vmx, "b"), "2");
    assert_data(vmx, "a = \"1\"\nb = \"2\"");
    vcf_vmx_set(vmx, "c", "3");
    assert_data(vmx, "a = \"1\"\nb = \"2\"\nc = \"3\"\n");
}
END_TEST

START_TEST(test_windows_1252)
{
    g_autoptr(VcfVmx) vmx = parse_ok(CP1252_VMX, strlen(CP1252_VMX));
    ck_assert_str_eq(vcf_vmx_get(vmx, "displayName"), "Caf\xc3\xa9");
    ck_assert_str_eq(vcf_vmx_get(vmx, "annotation"), "na\xc3\xafve \"quoted\"");
    /* Written back in windows-1252: the very same bytes. */
    assert_data(vmx, CP1252_VMX);

    vcf_vmx_set(vmx, "displayName", "Cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e");
    assert_data(vmx, ".encoding = \"windows-1252\"\r\n"
                "displayName = \"Cr\xe8me br\xfbl\xe9" "e\"\r\n"
                "annotation = \"na\xefve |22quoted|22\"\r\n");

    /* Japanese has no windows-1252 spelling: an error naming the line. */
    vcf_vmx_set(vmx, "annotation", "\xe6\x97\xa5\xe6\x9c\xac");
    g_autoptr(GError) error = NULL;
    gsize len = 0;
    g_autofree char *data = vcf_vmx_to_data(vmx, &len, &error);
    ck_assert_ptr_null(data);
    assert_error(error, EINVAL, "test.vmx:3:");
    ck_assert_msg(strstr(error->message, "windows-1252") != NULL, "%s", error->message);

    /* An .encoding set to nonsense cannot be written. */
    vcf_vmx_set(vmx, ".encoding", "klingon-8");
    g_autoptr(GError) error2 = NULL;
    g_autofree char *data2 = vcf_vmx_to_data(vmx, &len, &error2);
    ck_assert_ptr_null(data2);
    assert_error(error2, EINVAL, "test.vmx: unknown .encoding \"klingon-8\"");

    /* Switching the file to UTF-8 makes it writable. */
    vcf_vmx_set(vmx, ".encoding", "UTF-8");
    assert_data(vmx, ".encoding = \"UTF-8\"\r\n"
                "displayName = \"Cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e\"\r\n"
                "annotation = \"\xe6\x97\xa5\xe6\x9c\xac\"\r\n");
}
END_TEST

START_TEST(test_shift_jis)
{
    /* "ポ" is 0x83 0x7C in Shift_JIS: its second byte is '|', which must not
     * be taken for an escape. "日本" follows. */
    static const char text[] =
        ".encoding = \"Shift_JIS\"\n"
        "displayName = \"\x83\x7c\x93\xfa\x96\x7b\"\n";
    g_autoptr(VcfVmx) vmx = parse_ok(text, strlen(text));
    ck_assert_str_eq(vcf_vmx_get(vmx, "displayName"),
                     "\xe3\x83\x9d\xe6\x97\xa5\xe6\x9c\xac");
    assert_data(vmx, ".encoding = \"Shift_JIS\"\n"
                "displayName = \"\x83\x7c\x93\xfa\x96\x7b\"\n");
}
END_TEST

/* The code pages of Workstation on Korean, Chinese, Japanese, Thai and
 * other Windows, under the names VMware writes. The bytes were made with
 * glibc's iconv from the UTF-8 (e.g. printf '%s' "한국어" | iconv -t CP949). */
static const struct {
    const char *encoding;
    const char *bytes;
    const char *utf8;
} code_pages[] = {
    /* "한국어 똠방각하": 똠 (8c 63) is outside EUC-KR, its trail byte is 'c'. */
    { "windows-949-2000", "\xc7\xd1\xb1\xb9\xbe\xee\x20\x8c\x63\xb9\xe6\xb0\xa2\xc7\xcf",
      "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4\x20\xeb\x98\xa0\xeb\xb0\xa9\xea\xb0\x81"
      "\xed\x95\x98" },
    /* "中文 虚拟机 €" */
    { "windows-936-2000", "\xd6\xd0\xce\xc4\x20\xd0\xe9\xc4\xe2\xbb\xfa\x20\x80",
      "\xe4\xb8\xad\xe6\x96\x87\x20\xe8\x99\x9a\xe6\x8b\x9f\xe6\x9c\xba\x20\xe2\x82\xac" },
    { "GBK", "\xd6\xd0\xce\xc4\x20\xd0\xe9\xc4\xe2\xbb\xfa\x20\x80",
      "\xe4\xb8\xad\xe6\x96\x87\x20\xe8\x99\x9a\xe6\x8b\x9f\xe6\x9c\xba\x20\xe2\x82\xac" },
    /* "繁體 許功蓋": each of the last three ends in 0x5C, a backslash in ASCII,
     * the last one just before the closing quote. */
    { "windows-950-2000", "\xc1\x63\xc5\xe9\x20\xb3\x5c\xa5\x5c\xbb\x5c",
      "\xe7\xb9\x81\xe9\xab\x94\x20\xe8\xa8\xb1\xe5\x8a\x9f\xe8\x93\x8b" },
    { "Big5", "\xc1\x63\xc5\xe9\x20\xb3\x5c\xa5\x5c\xbb\x5c",
      "\xe7\xb9\x81\xe9\xab\x94\x20\xe8\xa8\xb1\xe5\x8a\x9f\xe8\x93\x8b" },
    /* "C:\仮想マシン\①": 0x5C stays a backslash (not a yen sign), ① is a
     * Windows extension. */
    { "Shift_JIS", "\x43\x3a\x5c\x89\xbc\x91\x7a\x83\x7d\x83\x56\x83\x93\x5c\x87\x40",
      "\x43\x3a\x5c\xe4\xbb\xae\xe6\x83\xb3\xe3\x83\x9e\xe3\x82\xb7\xe3\x83\xb3\x5c"
      "\xe2\x91\xa0" },
    /* "ภาษาไทย" */
    { "windows-874-2000", "\xc0\xd2\xc9\xd2\xe4\xb7\xc2",
      "\xe0\xb8\xa0\xe0\xb8\xb2\xe0\xb8\xa9\xe0\xb8\xb2\xe0\xb9\x84\xe0\xb8\x97\xe0\xb8\xa2" },
    /* "Привет", "Łódź" */
    { "windows-1251", "\xcf\xf0\xe8\xe2\xe5\xf2", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82" },
    { "ISO-8859-2", "\xa3\xf3\x64\xbc", "\xc5\x81\xc3\xb3\x64\xc5\xba" },
};

START_TEST(test_code_pages)
{
    const char *enc = code_pages[_i].encoding;
    g_autofree char *text = g_strdup_printf(".encoding = \"%s\"\r\n"
                                            "displayName = \"%s\"\r\n"
                                            "sharedFolder0.hostPath = \"C:\\share\"\r\n",
                                            enc, code_pages[_i].bytes);
    g_autoptr(VcfVmx) vmx = parse_ok(text, strlen(text));
    ck_assert_str_eq(vcf_vmx_get(vmx, "displayName"), code_pages[_i].utf8);
    ck_assert_str_eq(vcf_vmx_get(vmx, "sharedFolder0.hostPath"), "C:\\share");
    ck_assert_ptr_null(vcf_vmx_get_warnings(vmx)[0]);
    /* Untouched: the same bytes, .encoding line included. */
    assert_data_len(vmx, text, strlen(text));
    /* A new value is written in the file's charset. */
    g_autofree char *value = g_strconcat(code_pages[_i].utf8, " 2", NULL);
    vcf_vmx_set(vmx, "displayName", value);
    g_autofree char *want = g_strdup_printf(".encoding = \"%s\"\r\n"
                                            "displayName = \"%s 2\"\r\n"
                                            "sharedFolder0.hostPath = \"C:\\share\"\r\n",
                                            enc, code_pages[_i].bytes);
    assert_data_len(vmx, want, strlen(want));
}
END_TEST

START_TEST(test_code_page_names)
{
    /* Every name VMware writes that we know of opens. */
    static const char *const names[] = {
        "UTF-8", "utf-8", "Shift_JIS", "shift_jis", "GBK", "Big5", "windows-949-2000",
        "windows-936-2000", "windows-950-2000", "windows-874-2000", "windows-1250",
        "windows-1251", "windows-1252", "windows-1253", "windows-1254", "windows-1255",
        "windows-1256", "windows-1257", "windows-1258", "ISO-8859-1", "ISO-8859-2",
        "ISO-8859-3", "ISO-8859-4", "ISO-8859-5", "ISO-8859-6", "ISO-8859-7", "ISO-8859-8",
        "ISO-8859-9", "ISO-8859-10", "ISO-8859-11", "ISO-8859-13", "ISO-8859-14",
        "ISO-8859-15", "EUC-JP", "EUC-KR", "GB18030",
    };
    for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
        g_autofree char *text = g_strdup_printf(".encoding = \"%s\"\nx = \"C:\\a~b\"\n",
                                                names[i]);
        g_autoptr(GError) error = NULL;
        g_autoptr(VcfVmx) vmx = vcf_vmx_parse(text, strlen(text), "n.vmx", &error);
        ck_assert_msg(vmx != NULL, "%s: %s", names[i], error ? error->message : "");
        ck_assert_str_eq(vcf_vmx_get(vmx, "x"), "C:\\a~b");
    }
}
END_TEST

START_TEST(test_round_trip_duplicate_spelling)
{
    /* "∵" has two spellings in Windows' Shift_JIS (81 e6 and 87 9a); iconv
     * writes back the first. A line nobody changed keeps its own. */
    static const char text[] = ".encoding = \"Shift_JIS\"\n"
                               "annotation = \"\x87\x9a\"\n"
                               "displayName = \"a\"\n";
    g_autoptr(VcfVmx) vmx = parse_ok(text, strlen(text));
    ck_assert_str_eq(vcf_vmx_get(vmx, "annotation"), "\xe2\x88\xb5");
    vcf_vmx_set(vmx, "displayName", "\xe2\x88\xb5");
    assert_data(vmx, ".encoding = \"Shift_JIS\"\n"
                "annotation = \"\x87\x9a\"\n"
                "displayName = \"\x81\xe6\"\n");
}
END_TEST

/* Lines whose value cannot be read: kept as they are, with a warning. */
static const struct {
    const char *text;
    const char *key;      /* the unreadable key */
    guint line;
    const char *why;
} unreadable_inputs[] = {
    { "a = \"|2\"\n", "a", 1, "bad |XX escape" },
    { "a = \"1\"\nb = \"|zz\"\n", "b", 2, "bad |XX escape" },
    { "a = \"ends in |\"\n", "a", 1, "bad |XX escape" },
    { "a = \"|00\"\n", "a", 1, "bad |XX escape" },
    { "a = \"|FF\"\n", "a", 1, "bad |XX escape" },
    { "a = \"1\"\ndisplayName = \"Caf\xe9\"\n", "displayName", 2, "text is not valid UTF-8" },
    { ".encoding = \"UTF-8\"\na = \"1\"\nb = \"\xc3\"\n", "b", 3, "text is not valid UTF-8" },
    /* 0x81 is a hole in windows-1252. */
    { ".encoding = \"windows-1252\"\na = \"1\"\nb = \"\x81\"\n", "b", 3,
      "text is not valid windows-1252" },
    /* A Shift_JIS lead byte before the closing quote; and one at the end
     * of a line, which a whole-file conversion would pair with its '\n'. */
    { ".encoding = \"Shift_JIS\"\nsharedFolder0.hostPath = \"C:\\\x83\"\n", "sharedFolder0.hostPath",
      2, "text is not valid Shift_JIS" },
    { ".encoding = \"Shift_JIS\"\nsharedFolder0.hostPath = C:\\\x83\n", "sharedFolder0.hostPath",
      2, "text is not valid Shift_JIS" },
    { ".encoding = \"windows-949-2000\"\r\nannotation = \"\xc7\"\r\n", "annotation", 2,
      "text is not valid windows-949-2000" },
};

START_TEST(test_unreadable_line)
{
    const char *bad = unreadable_inputs[_i].text;
    const char *key = unreadable_inputs[_i].key;
    /* The bad line between good ones. */
    g_autofree char *text = g_strconcat(bad, "scsi0:0.fileName = \"disk.vmdk\"\n", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(VcfVmx) vmx = vcf_vmx_parse(text, strlen(text), "bad.vmx", &error);
    ck_assert_msg(vmx != NULL, "input %d: %s", _i, error ? error->message : "");
    ck_assert_ptr_null(vcf_vmx_get(vmx, key));
    ck_assert(vcf_vmx_key_unreadable(vmx, key));
    ck_assert(!vcf_vmx_key_unreadable(vmx, "scsi0:0.fileName"));
    ck_assert(!vcf_vmx_key_unreadable(vmx, "no.such.key"));
    ck_assert_str_eq(vcf_vmx_get(vmx, "scsi0:0.fileName"), "disk.vmdk");
    ck_assert(vcf_vmx_check_readable(vmx, "scsi0:0.fileName", NULL));

    g_autofree char *where = g_strdup_printf("bad.vmx:%u: %s", unreadable_inputs[_i].line, key);
    const char *const *warnings = vcf_vmx_get_warnings(vmx);
    ck_assert_ptr_nonnull(warnings[0]);
    ck_assert_ptr_null(warnings[1]);
    ck_assert_msg(g_str_has_prefix(warnings[0], where) &&
                  strstr(warnings[0], unreadable_inputs[_i].why) != NULL, "%s", warnings[0]);
    ck_assert(!vcf_vmx_check_readable(vmx, key, &error));
    g_autofree char *needed = g_strdup_printf("%s cannot be read", where);
    assert_error(error, EINVAL, needed);

    /* The key is listed, and the file written back as it was. */
    g_auto(GStrv) keys = vcf_vmx_keys(vmx);
    ck_assert(g_strv_contains((const char *const *)keys, key));
    assert_data_len(vmx, text, strlen(text));
    /* Other changes leave the line alone ... */
    vcf_vmx_set(vmx, "scsi0:0.fileName", "web1.vmdk");
    g_autofree char *want = g_strconcat(bad, "scsi0:0.fileName = \"web1.vmdk\"\n", NULL);
    assert_data_len(vmx, want, strlen(want));
    /* ... and setting its key makes it readable again. */
    vcf_vmx_set(vmx, key, "new");
    ck_assert_str_eq(vcf_vmx_get(vmx, key), "new");
    ck_assert(!vcf_vmx_key_unreadable(vmx, key));
    gsize len = 0;
    g_autofree char *data = vcf_vmx_to_data(vmx, &len, NULL);
    g_autoptr(VcfVmx) again = parse_ok(data, len);
    ck_assert_str_eq(vcf_vmx_get(again, key), "new");
    ck_assert_ptr_null(vcf_vmx_get_warnings(again)[0]);
}
END_TEST

START_TEST(test_unreadable_line_other_charset)
{
    /* Bytes that are not Shift_JIS cannot be written in UTF-8 either. */
    static const char text[] = ".encoding = \"Shift_JIS\"\n"
                               "a = \"\x83\"\n";
    g_autoptr(VcfVmx) vmx = parse_ok(text, strlen(text));
    vcf_vmx_set(vmx, ".encoding", "UTF-8");
    g_autoptr(GError) error = NULL;
    gsize len = 0;
    g_autofree char *data = vcf_vmx_to_data(vmx, &len, &error);
    ck_assert_ptr_null(data);
    assert_error(error, EINVAL, "test.vmx:2: cannot be written in UTF-8");
    /* The same charset under another of its names keeps the bytes. */
    vcf_vmx_set(vmx, ".encoding", "SJIS");
    g_autofree char *sjis = vcf_vmx_to_data(vmx, &len, NULL);
    ck_assert_str_eq(sjis, ".encoding = \"SJIS\"\na = \"\x83\"\n");
}
END_TEST

/* Malformed input: each must be EINVAL naming the file and the line. */
static const struct {
    const char *text;
    gsize len; /* 0: strlen */
    const char *message;
} bad_inputs[] = {
    { "config.version = \"8\"\nthis is not a setting\n", 0,
      "bad.vmx:2: line is not key = \"value\"" },
    { "a = \"1\"\nb = \"unterminated\nc = \"3\"\n", 0, "bad.vmx:2: unterminated quote" },
    { "= \"x\"\n", 0, "bad.vmx:1: line is not key" },
    { "a \"x\"\n", 0, "bad.vmx:1: line is not key" },
    { "a b = \"x\"\n", 0, "bad.vmx:1: line is not key" },
    { "a = \"x\" trailing\n", 0, "bad.vmx:1: line is not key" },
    { "a = \"x\"\"y\"\n", 0, "bad.vmx:1: line is not key" },
    { "a = \"1\"\n\n# c\nb = x\"y\n", 0, "bad.vmx:4: line is not key" },
    { "a = \"1\"\r\nb = \"2\"\r\nkey only\r\n", 0, "bad.vmx:3: line is not key" },
    { "a = \"1\"\nb = \"x\0y\"\n", 18, "bad.vmx:2: NUL byte" },
    { ".encoding = \"klingon-8\"\na = \"1\"\n", 0, "bad.vmx:1: unknown .encoding" },
    { "a = \"1\"\n.encoding = \"\n", 0, "bad.vmx:2: unterminated quote" },
    { "a = \"1\"\n.encoding = \"UTF-16\"\n", 0,
      "bad.vmx:2: unusable .encoding (not ASCII-compatible) \"UTF-16\"" },
    { ".encoding = \"UTF-8//IGNORE\"\n", 0, "bad.vmx:1: .encoding is not a charset name" },
    { ".encoding = \"windows-1252//IGNORE\"\n", 0,
      "bad.vmx:1: .encoding is not a charset name" },
    /* Bytes that do not convert are kept only on a key = value line with
     * an ASCII key: else it could be any key. */
    { "a = \"1\"\n\xe9t\xe9 = \"2\"\n", 0, "bad.vmx:2: text is not valid UTF-8" },
    { "a = \"1\"\nb = \"\xe9\n", 0, "bad.vmx:2: text is not valid UTF-8" },
    /* .encoding itself stays strict. */
    { ".encoding = \"UTF-8\" # \xe9\na = \"1\"\n", 0, "bad.vmx:1: text is not valid UTF-8" },
    { ".encoding = \"UTF-8|zz\"\n", 0, "bad.vmx:1: bad |XX escape" },
    { ".encoding = \"|2\"\n", 0, "bad.vmx:1: bad |XX escape" },
    /* A Shift_JIS lead byte with nothing after it. */
    { ".encoding = \"Shift_JIS\"\na = \"1\"\n\x83", 0, "bad.vmx:3: text is not valid Shift_JIS" },
};

START_TEST(test_malformed)
{
    const char *text = bad_inputs[_i].text;
    gsize len = bad_inputs[_i].len ? bad_inputs[_i].len : strlen(text);
    g_autoptr(GError) error = NULL;
    g_autoptr(VcfVmx) vmx = vcf_vmx_parse(text, len, "bad.vmx", &error);
    ck_assert_msg(vmx == NULL, "input %d parsed", _i);
    assert_error(error, EINVAL, bad_inputs[_i].message);
}
END_TEST

START_TEST(test_too_big)
{
    /* Valid content (one long comment), just too much of it. */
    gsize len = 16 * 1024 * 1024 + 1;
    g_autofree char *big = g_malloc(len);
    memset(big, 'x', len);
    big[0] = '#';
    big[len - 1] = '\n';
    big[len - 2] = '\n';
    g_autoptr(GError) error = NULL;
    g_autoptr(VcfVmx) vmx = vcf_vmx_parse(big, len, "big.vmx", &error);
    ck_assert_ptr_null(vmx);
    assert_error(error, EINVAL, "big.vmx: file is larger than 16 MiB");

    /* Exactly 16 MiB is accepted. */
    g_autoptr(VcfVmx) ok = parse_ok(big, len - 1);
    g_auto(GStrv) keys = vcf_vmx_keys(ok);
    ck_assert_uint_eq(g_strv_length(keys), 0);

    /* Too many lines: refused before a line is stored. */
    gsize many = (1u << 20) + 1;
    memset(big, '\n', many);
    g_autoptr(GError) error3 = NULL;
    g_autoptr(VcfVmx) lines = vcf_vmx_parse(big, many, "lines.vmx", &error3);
    ck_assert_ptr_null(lines);
    assert_error(error3, EINVAL, "lines.vmx: more than 1048576 lines");
    g_autoptr(VcfVmx) fewer = parse_ok(big, many - 1);

    /* From a file too (sparse, so cheap). */
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *path = g_build_filename(dir, "big.vmx", NULL);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(ftruncate(fileno(f), 17 * 1024 * 1024), 0);
    fclose(f);
    g_autoptr(GError) error2 = NULL;
    g_autoptr(VcfVmx) none = vcf_vmx_load(path, &error2);
    ck_assert_ptr_null(none);
    assert_error(error2, EINVAL, path);
    remove_tmp_dir(dir);
}
END_TEST

START_TEST(test_load_errors)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *missing = g_build_filename(dir, "missing.vmx", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(VcfVmx) vmx = vcf_vmx_load(missing, &error);
    ck_assert_ptr_null(vmx);
    assert_error(error, ENOENT, missing);

    /* A folder where the file should be. */
    g_autoptr(GError) error2 = NULL;
    g_autoptr(VcfVmx) vmx2 = vcf_vmx_load(dir, &error2);
    ck_assert_ptr_null(vmx2);
    assert_error(error2, EINVAL, dir);

    /* A malformed file names its path and line. */
    g_autofree char *bad = g_build_filename(dir, "Ubuntu.vmx", NULL);
    ck_assert(g_file_set_contents(bad, "a = \"1\"\nb = \"2\"\nc \"3\"\n", -1, NULL));
    g_autoptr(GError) error3 = NULL;
    g_autoptr(VcfVmx) vmx3 = vcf_vmx_load(bad, &error3);
    ck_assert_ptr_null(vmx3);
    g_autofree char *want = g_strdup_printf("%s:3: line is not key = \"value\"", bad);
    assert_error(error3, EINVAL, want);
    remove_tmp_dir(dir);
}
END_TEST

START_TEST(test_save_load)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *path = g_build_filename(dir, "web1.vmx", NULL);
    static const char expected[] =
        VMX_HEAD "displayName = \"web1\"\n" VMX_MID1 VMX_COMMENT VMX_3D VMX_POLICY
        VMX_MID2 VMX_MAC VMX_TAIL VMX_CKPT VMX_ANNOT "uuid.action = \"create\"\n";

    g_autoptr(VcfVmx) vmx = parse_ok(VMX, strlen(VMX));
    vcf_vmx_set(vmx, "displayName", "web1");
    vcf_vmx_set(vmx, "uuid.action", "create");
    g_autoptr(GError) error = NULL;
    ck_assert_msg(vcf_vmx_save(vmx, path, &error), "%s", error ? error->message : "?");

    g_autofree char *contents = NULL;
    gsize len = 0;
    ck_assert(g_file_get_contents(path, &contents, &len, NULL));
    ck_assert_str_eq(contents, expected);
    ck_assert_uint_eq(len, sizeof expected - 1);
    ck_assert_uint_eq(file_mode(path), 0644);

    g_autoptr(VcfVmx) loaded = vcf_vmx_load(path, &error);
    ck_assert_msg(loaded != NULL, "%s", error ? error->message : "?");
    ck_assert_str_eq(vcf_vmx_get(loaded, "displayname"), "web1");
    ck_assert_str_eq(vcf_vmx_get(loaded, "annotation"),
                     "Base image\nbuilt by \"ops\" | do not edit");
    assert_data(loaded, expected);

    /* A windows-1252 file goes to disk in windows-1252, and back. */
    g_autofree char *cp_path = g_build_filename(dir, "cafe.vmx", NULL);
    g_autoptr(VcfVmx) cp = parse_ok(CP1252_VMX, strlen(CP1252_VMX));
    ck_assert(vcf_vmx_save(cp, cp_path, &error));
    g_autofree char *cp_contents = NULL;
    ck_assert(g_file_get_contents(cp_path, &cp_contents, &len, NULL));
    ck_assert_uint_eq(len, strlen(CP1252_VMX));
    ck_assert_int_eq(memcmp(cp_contents, CP1252_VMX, len), 0);
    g_autoptr(VcfVmx) cp_loaded = vcf_vmx_load(cp_path, &error);
    ck_assert_ptr_nonnull(cp_loaded);
    ck_assert_str_eq(vcf_vmx_get(cp_loaded, "displayName"), "Caf\xc3\xa9");

    /* No temporary file is left behind. */
    g_autofree char *listing = dir_listing(dir);
    ck_assert_str_eq(listing, "cafe.vmx web1.vmx");
    remove_tmp_dir(dir);
}
END_TEST

START_TEST(test_save_error)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *path = g_build_filename(dir, "no-such-folder", "x.vmx", NULL);
    g_autoptr(VcfVmx) vmx = parse_ok(VMX, strlen(VMX));
    g_autoptr(GError) error = NULL;
    ck_assert(!vcf_vmx_save(vmx, path, &error));
    assert_error(error, ENOENT, path);

    /* A file that cannot be written in its charset names the target path. */
    g_autofree char *cp_path = g_build_filename(dir, "cafe.vmx", NULL);
    g_autoptr(VcfVmx) cp = parse_ok(CP1252_VMX, strlen(CP1252_VMX));
    vcf_vmx_set(cp, "displayName", "\xe6\x97\xa5");
    g_autoptr(GError) error2 = NULL;
    ck_assert(!vcf_vmx_save(cp, cp_path, &error2));
    g_autofree char *want = g_strdup_printf("%s:2:", cp_path);
    assert_error(error2, EINVAL, want);
    ck_assert(!g_file_test(cp_path, G_FILE_TEST_EXISTS));
    remove_tmp_dir(dir);
}
END_TEST

START_TEST(test_write_atomic)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *path = g_build_filename(dir, "f.vmx", NULL);
    g_autoptr(GError) error = NULL;

    /* A new file is 0644 whatever the umask lets mkstemp do. */
    ck_assert_msg(vcf_file_write_atomic(path, "one\n", 4, &error), "%s",
                  error ? error->message : "?");
    ck_assert_uint_eq(file_mode(path), 0644);

    /* An existing file keeps its mode. */
    ck_assert_int_eq(chmod(path, 0640), 0);
    ck_assert(vcf_file_write_atomic(path, "two, longer\n", 12, &error));
    ck_assert_uint_eq(file_mode(path), 0640);
    g_autofree char *contents = NULL;
    gsize len = 0;
    ck_assert(g_file_get_contents(path, &contents, &len, NULL));
    ck_assert_uint_eq(len, 12);
    ck_assert_str_eq(contents, "two, longer\n");

    /* An empty file. */
    ck_assert(vcf_file_write_atomic(path, "", 0, &error));
    g_autofree char *empty = NULL;
    ck_assert(g_file_get_contents(path, &empty, &len, NULL));
    ck_assert_uint_eq(len, 0);
    ck_assert_uint_eq(file_mode(path), 0640);

    /* The rename fails over a folder: the temporary file is cleaned up. */
    g_autofree char *sub = g_build_filename(dir, "sub", NULL);
    ck_assert_int_eq(g_mkdir(sub, 0755), 0);
    ck_assert(!vcf_file_write_atomic(sub, "x", 1, &error));
    ck_assert_ptr_nonnull(error);
    ck_assert_uint_eq(error->domain, VCF_ERROR);
    ck_assert_int_eq(error->code, EISDIR);
    ck_assert_msg(strstr(error->message, sub) != NULL, "%s", error->message);
    g_clear_error(&error);
    g_autofree char *listing = dir_listing(dir);
    ck_assert_str_eq(listing, "f.vmx sub");

    /* A missing folder. */
    g_autofree char *lost = g_build_filename(dir, "nope", "f.vmx", NULL);
    ck_assert(!vcf_file_write_atomic(lost, "x", 1, &error));
    assert_error(error, ENOENT, lost);
    remove_tmp_dir(dir);
}
END_TEST

START_TEST(test_fsync_dir)
{
    g_autofree char *dir = make_tmp_dir();
    g_autofree char *file = g_build_filename(dir, "a", NULL);
    g_autofree char *gone = g_build_filename(dir, "gone", NULL);
    ck_assert(g_file_set_contents(file, "a", 1, NULL));
    g_autoptr(GError) error = NULL;
    ck_assert(vcf_fsync_dir(dir, &error));
    ck_assert(vcf_fsync_dir(file, &error));
    ck_assert(vcf_fsync_dir(gone, &error)); /* after an unlink: its folder */
    ck_assert_ptr_null(error);

    g_autofree char *lost = g_build_filename(dir, "nope", "x", NULL);
    g_autofree char *lost_dir = g_build_filename(dir, "nope", NULL);
    ck_assert(!vcf_fsync_dir(lost, &error));
    assert_error(error, ENOENT, lost_dir);
    remove_tmp_dir(dir);
}
END_TEST

static Suite *vmx_suite(void)
{
    Suite *s = suite_create("vmx");

    TCase *tc = tcase_create("vmx");
    tcase_add_test(tc, test_get);
    tcase_add_test(tc, test_bool_spellings);
    tcase_add_test(tc, test_untouched_round_trip);
    tcase_add_test(tc, test_set_existing);
    tcase_add_test(tc, test_set_new);
    tcase_add_test(tc, test_new_empty);
    tcase_add_test(tc, test_remove);
    tcase_add_test(tc, test_remove_prefix);
    tcase_add_test(tc, test_duplicate_keys);
    tcase_add_test(tc, test_escapes);
    tcase_add_test(tc, test_unquoted_and_spacing);
    tcase_add_test(tc, test_crlf);
    tcase_add_test(tc, test_no_final_newline);
    tcase_add_test(tc, test_windows_1252);
    tcase_add_test(tc, test_shift_jis);
    tcase_add_loop_test(tc, test_code_pages, 0, (int)G_N_ELEMENTS(code_pages));
    tcase_add_test(tc, test_code_page_names);
    tcase_add_test(tc, test_round_trip_duplicate_spelling);
    tcase_add_loop_test(tc, test_unreadable_line, 0, (int)G_N_ELEMENTS(unreadable_inputs));
    tcase_add_test(tc, test_unreadable_line_other_charset);
    tcase_add_loop_test(tc, test_malformed, 0, (int)G_N_ELEMENTS(bad_inputs));
    suite_add_tcase(s, tc);

    TCase *files = tcase_create("files");
    /* The 16 MiB inputs are slow under ASan. */
    tcase_set_timeout(files, 60);
    tcase_add_test(files, test_too_big);
    tcase_add_test(files, test_load_errors);
    tcase_add_test(files, test_save_load);
    tcase_add_test(files, test_save_error);
    tcase_add_test(files, test_write_atomic);
    tcase_add_test(files, test_fsync_dir);
    suite_add_tcase(s, files);
    return s;
}

int main(void)
{
    return test_run_suite(vmx_suite());
}
