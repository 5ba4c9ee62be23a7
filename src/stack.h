/* The read-only layers below a clone's store, top first: a link of a
 * VMware chain is one level of the stack, made of its extents (layer.h).
 * One lookup finds the level that holds a grain, at any depth: the answer
 * for each VCF_GRAIN_SIZE unit is found once, top down, and remembered
 * (the layers never change while the stack is open).
 *
 * Levels are read by our own readers (layer-sparse.c, layer-flat.c) from
 * the top of the chain down to the first link they cannot serve; that link
 * and all below it are one libvmdk level (layer-vmdk.c). */
#pragma once
#include <glib.h>
#include "parent.h"

typedef struct VcfStack VcfStack;

/* The stack of PARENT's chain (which libvmdk opened and checked). PARENT
 * stays the caller's and must outlive the stack. A chain libvmdk would
 * misread and we cannot serve is EINVAL. */
VcfStack *vcf_stack_new(VcfParent *parent, GError **error);
void vcf_stack_free(VcfStack *stack);

guint64 vcf_stack_get_size(const VcfStack *stack);
/* How many levels, and how many of them libvmdk reads (0 or 1). */
guint vcf_stack_get_depth(const VcfStack *stack);
guint vcf_stack_get_vmdk_levels(const VcfStack *stack);

/* Reads LEN bytes at OFFSET; bytes no level holds, and bytes past the end,
 * read as zeros. Thread-safe. */
gboolean vcf_stack_read(VcfStack *stack, void *buf, gsize len, guint64 offset,
                        GError **error);
/* Where unit UNIT lies whole in one file, as the level that holds all of
 * it stores it: *FD and *AT, or *FD -1 when it does not (see layer.h), or,
 * with UNCHECKED, when that level checks its reads against sums (a frozen
 * layer of ours: its bytes must be read to be trusted). */
gboolean vcf_stack_map_unit(VcfStack *stack, guint64 unit, gboolean unchecked, int *fd,
                            guint64 *at, GError **error);
/* A piece of a read as it lies in a file: LEN bytes at AT in FD, or LEN
 * zeros when FD is -1. */
typedef struct {
    int fd;
    guint64 at;
    gsize len;
} VcfRun;
/* [OFFSET, OFFSET + LEN) as at most MAX runs, back to back, for a reply
 * that moves the bytes from the files without reading them here (splice):
 * *N_RUNS, or 0 when some of it cannot be served so (it lies in grains
 * checked by sums, is read by libvmdk, is zeroed or split across levels).
 * The fds are the stack's: valid while it lives. */
gboolean vcf_stack_map_range(VcfStack *stack, guint64 offset, gsize len, VcfRun *runs,
                             guint max, guint *n_runs, GError **error);
/* Whether some level holds a byte of unit UNIT (offset / VCF_GRAIN_SIZE):
 * *HELD. A libvmdk level holds everything. */
gboolean vcf_stack_holds(VcfStack *stack, guint64 unit, gboolean *held, GError **error);
