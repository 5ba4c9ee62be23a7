#include "config.h"
#include "vcf-error.h"

#include <errno.h>
#include <string.h>

G_DEFINE_QUARK(vcf-error-quark, vcf_error)

void vcf_set_errno(GError **error, int errnum, const char *what)
{
    g_set_error(error, VCF_ERROR, errnum, "%s: %s", what, g_strerror(errnum));
}

int vcf_error_errno(const GError *error)
{
    if (error != NULL && error->domain == VCF_ERROR && error->code > 0)
        return error->code;
    return EIO;
}
