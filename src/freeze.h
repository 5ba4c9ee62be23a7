/* Freezing a clone's store: its delta becomes a read-only layer and an
 * empty delta takes its place above it, as VMware does when it snapshots
 * a linked clone. A clone of the clone then sits on the frozen layer.
 *
 * Files, in the folder of the store STEM.vmdk of disk D:
 *   .vcf-layer-D-N.vmdk, .xxh   frozen layers, N = 1, 2, ...; never
 *                               written again (VMware deltas all the same)
 *   .vcf-next-D.vmdk, .xxh      the new top while it is put in place
 * The frozen names do not carry the stem, so renaming the clone leaves the
 * chain inside its folder as it is.
 *
 * Order: the next delta is made durable first (its parent hint the frozen
 * name, its parentCID the store's CID); then STEM.vmdk.xxh and STEM.vmdk
 * move to the frozen name, the next delta and its sums to STEM's, and the
 * folder is synced. vcf_freeze_recover() finishes or undoes a freeze that
 * a crash cut short, so that STEM.vmdk is always a whole delta: the old
 * one, or the new one over the frozen layer. */
#pragma once
#include <glib.h>

/* Freezes the store at PATH (disk INDEX of its clone), which nobody has
 * open. *LAYER gets the frozen layer's path. On failure, what was moved is
 * moved back where possible; STEM.vmdk is the old delta or, if moving back
 * failed too, vcf_freeze_recover() puts it right. */
gboolean vcf_freeze_store(const char *path, guint index, char **layer, GError **error);

/* Puts right a freeze of disk INDEX, whose top is PATH, that a crash
 * interrupted. *FIXED is set when something was done. */
gboolean vcf_freeze_recover(const char *path, guint index, gboolean *fixed, GError **error);

/* TRUE for the names vcf_freeze_store makes in a store folder. */
gboolean vcf_freeze_is_layer_name(const char *name);
