#include "config.h"
#include "vmdk-files.h"
#include "vcf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------ */

/* libvmdk_error_sprint only gives the outermost frame ("unable to open
 * handle using a file IO handle"); the cause is the innermost one, the
 * first line of the backtrace. */
static char *libyal_message(char *text)
{
    g_strstrip(text);
    char *nl = strchr(text, '\n');
    if (nl != NULL)
        *nl = '\0';
    gsize n = strlen(text);
    if (n > 0 && text[n - 1] == '.')
        text[n - 1] = '\0';
    return text;
}

void vcf_set_vmdk_error(GError **error, int code, libvmdk_error_t **verr,
                           const char *format, ...)
{
    char text[2048] = "";
    if (verr != NULL && *verr != NULL) {
        if (libvmdk_error_backtrace_sprint(*verr, text, sizeof text) < 0)
            libvmdk_error_sprint(*verr, text, sizeof text);
        libvmdk_error_free(verr);
    }
    va_list ap;
    va_start(ap, format);
    g_autofree char *what = g_strdup_vprintf(format, ap);
    va_end(ap);
    libyal_message(text);
    if (text[0] != '\0')
        g_set_error(error, VCF_ERROR, code, "%s: %s", what, text);
    else
        g_set_error(error, VCF_ERROR, code, "%s", what);
}

void vcf_set_bfio_error(GError **error, libbfio_error_t **berr,
                           const char *format, ...)
{
    char text[2048] = "";
    if (berr != NULL && *berr != NULL) {
        if (libbfio_error_backtrace_sprint(*berr, text, sizeof text) < 0)
            libbfio_error_sprint(*berr, text, sizeof text);
        libbfio_error_free(berr);
    }
    va_list ap;
    va_start(ap, format);
    g_autofree char *what = g_strdup_vprintf(format, ap);
    va_end(ap);
    libyal_message(text);
    g_set_error(error, VCF_ERROR, EIO, "%s%s%s", what, text[0] ? ": " : "",
                text);
}

/* ---- paths ------------------------------------------------------------- */

static gboolean is_inside(const char *real, const char *confine_real)
{
    if (strcmp(confine_real, "/") == 0)
        return TRUE;
    gsize n = strlen(confine_real);
    return strncmp(real, confine_real, n) == 0 && real[n] == '/';
}

/* realpath of PATH, which must be a regular file inside CONFINE_REAL. The
 * checks are on the resolved name so symbolic links cannot lead out; the
 * caller then opens the resolved name. WHAT prefixes messages ("parent of
 * X"), or is NULL for the top disk. */
char *vcf_resolve_disk_file(const char *path, const char *confine_real,
                          const char *what, GError **error)
{
    g_autofree char *prefix = what ? g_strdup_printf("%s: ", what) : g_strdup("");
    char *real = realpath(path, NULL);
    if (real == NULL) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e, "%s%s: %s", prefix, path, g_strerror(e));
        return NULL;
    }
    g_autofree char *owned = g_strdup(real);
    free(real);
    if (!is_inside(owned, confine_real)) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s%s resolves to %s, outside %s",
                    prefix, path, owned, confine_real);
        return NULL;
    }
    struct stat st;
    if (stat(owned, &st) != 0) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e, "%s%s: %s", prefix, owned, g_strerror(e));
        return NULL;
    }
    /* A FIFO would block the open, a folder or device is never a disk. */
    if (!S_ISREG(st.st_mode)) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s%s is not a regular file",
                    prefix, owned);
        return NULL;
    }
    return g_steal_pointer(&owned);
}

/* A single-file sparse disk (monolithicSparse, streamOptimized) starts with
 * the sparse extent magic; a descriptor-based disk starts with text. */
gboolean vcf_is_sparse_file(const char *path, gboolean *sparse, GError **error)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        g_set_error(error, VCF_ERROR, e, "%s: %s", path, g_strerror(e));
        return FALSE;
    }
    char magic[4] = { 0 };
    ssize_t n;
    do
        n = pread(fd, magic, sizeof magic, 0);
    while (n < 0 && errno == EINTR);
    int e = errno;
    close(fd);
    if (n < 0) {
        g_set_error(error, VCF_ERROR, e, "%s: %s", path, g_strerror(e));
        return FALSE;
    }
    *sparse = n == (ssize_t) sizeof magic && memcmp(magic, "KDMV", 4) == 0;
    return TRUE;
}

