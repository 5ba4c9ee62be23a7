#include "config.h"
#include "flat-descriptor.h"

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
