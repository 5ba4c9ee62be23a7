/* The descriptor the mount shows beside a clone's flat disk: a
 * monolithicFlat VMDK whose one extent is STEM-flat.vmdk, so VMware,
 * qemu-img and libvmdk open the served disk as an ordinary flat VMDK. */
#pragma once
#include <glib.h>
#include "descriptor.h"

/* GEOMETRY: the clone's, which is its parent's (the guest sees one disk). */
char *vcf_flat_descriptor(const char *stem, guint64 capacity, guint32 cid,
                          const VcfGeometry *geometry);
