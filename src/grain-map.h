/* Which parts of a clone's disk the layers below its store hold, in
 * VCF_GRAIN_SIZE units: what SEEK_DATA and SEEK_HOLE answer from.
 *
 * A parent chain is mapped from its own grain tables when every file of it
 * is a hosted sparse extent covering the whole disk (monolithicSparse, as
 * VMware and qemu-img make by default); any other kind of link makes the
 * map "unknown", and then the whole disk counts as data: reporting data
 * where there is a hole is allowed, a hole where there is data never. */
#pragma once
#include <glib.h>
#include "parent.h"

typedef struct VcfGrainMap VcfGrainMap;

/* The map of PARENT's chain, or NULL with no error when it cannot be known. */
VcfGrainMap *vcf_grain_map_of_parent(const VcfParent *parent, GError **error);
void vcf_grain_map_free(VcfGrainMap *map);
/* Whether some layer holds UNIT (byte offset / VCF_GRAIN_SIZE). */
gboolean vcf_grain_map_holds(const VcfGrainMap *map, guint64 unit);
