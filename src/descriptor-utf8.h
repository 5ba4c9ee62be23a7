/* A text descriptor in another charset than UTF-8, converted for libvmdk:
 * libvmdk 20200926 cannot read encoding="Shift_JIS" ("unable to determine
 * codepage value from string"), which VMware writes on Japanese Windows
 * and qemu-img reads. */
#pragma once
#include <glib.h>

/* When the text descriptor at PATH names an encoding other than UTF-8:
 * its text in UTF-8, encoding= rewritten to "UTF-8", extent file names
 * converted too (in *TEXT, *LEN bytes); else *TEXT is NULL. VCF_ERROR/
 * EINVAL, naming the file and line, for an unknown encoding or a line not
 * valid in it. */
gboolean vcf_descriptor_to_utf8(const char *path, char **text, gsize *len, GError **error);
