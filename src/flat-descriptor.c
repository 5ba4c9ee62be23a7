#include "config.h"
#include "flat-descriptor.h"

char *vcf_flat_descriptor(const char *stem, guint64 capacity, guint32 cid)
{
    guint64 sectors = capacity / 512;
    guint64 cyl = MIN(sectors / (255 * 63), 65535);
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
                           "ddb.geometry.cylinders = \"%" G_GUINT64_FORMAT "\"\n"
                           "ddb.geometry.heads = \"255\"\n"
                           "ddb.geometry.sectors = \"63\"\n"
                           "ddb.adapterType = \"lsilogic\"\n",
                           cid, sectors, stem, cyl);
}
