/* VMDK descriptors as text: finding one (a descriptor file, or the one
 * embedded in a sparse extent), reading values by key, and the disk
 * database entries a guest sees (adapter type and BIOS geometry). */
#pragma once
#include <glib.h>

typedef struct {
    char adapter[32];   /* ddb.adapterType: "lsilogic", "ide", "buslogic"... */
    guint cylinders, heads, sectors;
} VcfGeometry;

/* Value of KEY=... or KEY = "..." in descriptor TEXT (quotes stripped,
 * key case-insensitive), or NULL. */
char *vcf_descriptor_get(const char *text, const char *key);

/* The descriptor text of the VMDK at PATH: the file itself when it is a
 * descriptor, the embedded one when it is a hosted sparse extent. EINVAL
 * for anything else (a FIFO included). Bytes are not checked as text:
 * only the ASCII keys are of use. */
char *vcf_descriptor_load(const char *path, GError **error);

/* What VMware computes for a disk of CAPACITY bytes on ADAPTER: 16 heads
 * on IDE, 255 elsewhere; 63 sectors; cylinders capped at 65535 (16383 on
 * IDE). */
void vcf_geometry_default(VcfGeometry *g, guint64 capacity, const char *adapter);

/* The geometry in descriptor TEXT; what is absent or malformed comes from
 * vcf_geometry_default (with FALLBACK_ADAPTER if there is no adapter). */
void vcf_geometry_from_descriptor(VcfGeometry *g, const char *text, guint64 capacity,
                                  const char *fallback_adapter);

/* The geometry of the VMDK at PATH (its descriptor, loaded). */
gboolean vcf_geometry_of_disk(VcfGeometry *g, const char *path, guint64 capacity,
                              const char *fallback_adapter, GError **error);

/* The ddb lines for G, each ending in a newline. */
char *vcf_geometry_ddb_lines(const VcfGeometry *g);
