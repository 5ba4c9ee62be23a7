#include "config.h"
#include "flat-descriptor.h"

#include <string.h>

char *vcf_flat_descriptor(const char *stem, guint64 capacity, guint32 cid,
                          const VcfGeometry *geometry)
{
    g_autofree char *ddb = vcf_geometry_ddb_lines(geometry);
    return g_strdup_printf("# Disk DescriptorFile\n"
                           "version=1\n"
                           "encoding=\"UTF-8\"\n"
                           "CID=%08x\n"
                           "parentCID=ffffffff\n"
                           "createType=\"monolithicFlat\"\n"
                           "\n"
                           "# Extent description\n"
                           "RW %" G_GUINT64_FORMAT " FLAT \"%s-flat.vmdk\" 0\n"
                           "\n"
                           "# The Disk Data Base\n"
                           "#DDB\n"
                           "\n"
                           "ddb.virtualHWVersion = \"4\"\n"
                           "%s",
                           cid, capacity / 512, stem, ddb);
}

/* "CID=" and 1 to 8 hex digits: VMware pads to 8 (%08x), qemu does not
 * (%x), so a CID with a leading zero nibble is shorter there. */
static gboolean is_cid_line(const char *line)
{
    gsize n = strlen(line);
    return n >= 5 && n <= 12 && g_ascii_strncasecmp(line, "CID=", 4) == 0
        && strspn(line + 4, "0123456789abcdefABCDEF") == n - 4;
}

gboolean vcf_flat_descriptor_edit_ok(const char *generated, const char *edited, gsize len)
{
    gsize text_len = strnlen(edited, len);
    for (gsize i = text_len; i < len; i++)
        if (edited[i] != '\0')
            return FALSE;
    g_autofree char *text = g_strndup(edited, text_len);
    g_auto(GStrv) want = g_strsplit(generated, "\n", -1);
    g_auto(GStrv) have = g_strsplit(text, "\n", -1);
    if (g_strv_length(want) != g_strv_length(have))
        return FALSE;
    for (guint i = 0; want[i] != NULL; i++) {
        if (g_str_equal(want[i], have[i]))
            continue;
        if (!is_cid_line(want[i]) || !is_cid_line(have[i]))
            return FALSE;
    }
    return TRUE;
}
