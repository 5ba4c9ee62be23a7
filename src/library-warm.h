/* Checking every VM's disk chains once, right after mount, in the
 * background: libvmdk's opening of a disk costs time in proportion to its
 * size (30 ms for 1 TiB), and what it finds stays in the library's link
 * cache (link-cache.h) while the files are unchanged. The first clone of
 * a large VM then costs what a small one does. */
#pragma once
#include <glib.h>
#include "library.h"

/* Opens the chain of each current disk of each VM of LIB into its link
 * cache; stops early once *STOP (read atomically) is set. How many chains
 * opened. Errors are not reported: a clone that needs the disk meets them
 * with their reasons. */
guint vcf_library_warm(VcfLibrary *lib, const gint *stop);
