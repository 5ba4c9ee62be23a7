/* One error convention for the core: a GError in the VCF_ERROR domain whose
 * code is a positive errno value (EINVAL, ENOENT, EIO, ...). The FUSE layer
 * turns the code into the reply and logs the message: the message says why,
 * naming the file and offset where there is one. */
#pragma once
#include <glib.h>

#define VCF_ERROR (vcf_error_quark())
GQuark vcf_error_quark(void);

/* Sets ERROR from errno value ERRNUM (positive) with "WHAT: strerror". */
void vcf_set_errno(GError **error, int errnum, const char *what);

/* The errno value an error stands for: its code in VCF_ERROR, EIO otherwise. */
int vcf_error_errno(const GError *error);
