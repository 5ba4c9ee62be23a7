/* The descriptor the mount shows beside a clone's flat disk: a
 * monolithicFlat VMDK whose one extent is STEM-flat.vmdk, so VMware,
 * qemu-img and libvmdk open the served disk as an ordinary flat VMDK. */
#pragma once
#include <glib.h>
#include "descriptor.h"

/* GEOMETRY: the clone's, which is its parent's (the guest sees one disk). */
char *vcf_flat_descriptor(const char *stem, guint64 capacity, guint32 cid,
                          const VcfGeometry *geometry);

/* Whether EDITED (LEN bytes, maybe padded with NULs) is GENERATED with at
 * most its CID= line changed to another CID of 1 to 8 hex digits (VMware
 * pads it, qemu does not): what they write into a descriptor on the first
 * write to its disk. */
gboolean vcf_flat_descriptor_edit_ok(const char *generated, const char *edited, gsize len);
