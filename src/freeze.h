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
 * name, its parentCID the store's CID); then the frozen names are made as
 * hard links of STEM.vmdk and its sums, and the next delta and its sums
 * are renamed over STEM's; the folder is synced between the steps. So
 * STEM.vmdk is at every moment a whole VMware delta, for qemu-img and
 * VMware too: the old one, or the new one over the frozen layer. After a
 * crash, vcf_freeze_recover() undoes a freeze whose new top did not get
 * its name, and finishes one whose sums did not. Each delta's embedded
 * descriptor names its own file as its extent (libvmdk opens that name):
 * the new top is made so, the frozen layer renamed so once linked. */
#pragma once
#include <glib.h>

/* Freezes the store at PATH (disk INDEX of its clone), which nobody has
 * open. *LAYER gets the frozen layer's path. On failure STEM.vmdk is the
 * old delta, or the new one if only its sums failed to move (which
 * vcf_freeze_recover() and the store's own checks put right). A file
 * system without hard links is EOPNOTSUPP. */
gboolean vcf_freeze_store(const char *path, guint index, char **layer, GError **error);

/* Puts right a freeze of disk INDEX, whose top is PATH, that a crash
 * interrupted. *FIXED is set when something was done. */
gboolean vcf_freeze_recover(const char *path, guint index, gboolean *fixed, GError **error);

/* Undoes a freeze just made, whose new top at PATH holds nothing yet:
 * LAYER gets the top's name again (for a new top that cannot be opened). */
gboolean vcf_freeze_undo(const char *path, const char *layer, GError **error);

/* TRUE for the names vcf_freeze_store makes in a store folder. */
gboolean vcf_freeze_is_layer_name(const char *name);
