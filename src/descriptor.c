#include "config.h"
#include "descriptor.h"
#include "fileutil.h"
#include "vcf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECTOR 512
#define MAX_DESC_BYTES (1024 * 1024)   /* far above any real descriptor */

char *vcf_descriptor_get(const char *text, const char *key)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    gsize klen = strlen(key);
    for (char **l = lines; *l != NULL; l++) {
        char *line = g_strstrip(*l);
        if (g_ascii_strncasecmp(line, key, klen) != 0)
            continue;
        char *rest = g_strchug(line + klen);
        if (*rest != '=')
            continue;
        char *v = g_strstrip(rest + 1);
        gsize vl = strlen(v);
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v[vl - 1] = '\0';
            v++;
        }
        return g_strdup(v);
    }
    return NULL;
}

static char *bad(GError **error, const char *path, const char *why)
{
    g_set_error(error, VCF_ERROR, EINVAL, "%s: %s", path, why);
    return NULL;
}

char *vcf_descriptor_load(const char *path, GError **error)
{
    /* O_NONBLOCK: a FIFO named like a disk must not hang us. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        vcf_set_errno(error, errno, path);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return bad(error, path, "not a regular file");
    }
    guint8 head[SECTOR];
    g_autofree char *text = NULL;
    gssize n = vcf_pread_all(fd, head, sizeof head, 0, path, error);
    if (n < 0)
        goto out;
    if (n >= 80 && memcmp(head, "KDMV", 4) == 0) {
        guint64 off, size;   /* sectors, little-endian at 28 and 36 */
        memcpy(&off, head + 28, 8);
        memcpy(&size, head + 36, 8);
        off = GUINT64_FROM_LE(off);
        size = GUINT64_FROM_LE(size);
        if (off == 0 || size == 0 || size > MAX_DESC_BYTES / SECTOR
            || off > (guint64)st.st_size / SECTOR) {
            bad(error, path, "sparse extent without an embedded descriptor");
            goto out;
        }
        text = g_malloc0(size * SECTOR + 1);
        gssize got = vcf_pread_all(fd, text, size * SECTOR, off * SECTOR, path, error);
        if (got == 0)
            bad(error, path, "embedded descriptor truncated");
        if (got <= 0)
            g_clear_pointer(&text, g_free);
    } else if (n > 0 && head[0] == '#') {
        text = g_malloc0(MAX_DESC_BYTES + 1);
        if (vcf_pread_all(fd, text, MAX_DESC_BYTES, 0, path, error) < 0)
            g_clear_pointer(&text, g_free);
    } else {
        bad(error, path, "not a VMDK descriptor nor a hosted sparse extent");
    }
out:
    close(fd);
    return g_steal_pointer(&text);
}

void vcf_geometry_default(VcfGeometry *g, guint64 capacity, const char *adapter)
{
    gboolean ide = g_str_equal(adapter, "ide");
    g_strlcpy(g->adapter, adapter, sizeof g->adapter);
    g->heads = ide ? 16 : 255;
    g->sectors = 63;
    g->cylinders = MIN(capacity / SECTOR / (g->heads * g->sectors), ide ? 16383u : 65535u);
}

static gboolean get_uint(const char *text, const char *key, guint max, guint *out)
{
    g_autofree char *v = vcf_descriptor_get(text, key);
    guint64 n;
    if (v == NULL || !g_ascii_string_to_unsigned(v, 10, 1, max, &n, NULL))
        return FALSE;
    *out = (guint)n;
    return TRUE;
}

void vcf_geometry_from_descriptor(VcfGeometry *g, const char *text, guint64 capacity,
                                  const char *fallback_adapter)
{
    g_autofree char *adapter = vcf_descriptor_get(text, "ddb.adapterType");
    /* Only plain words: the value goes back into descriptors we write. */
    if (adapter == NULL || *adapter == '\0' || strlen(adapter) >= sizeof g->adapter
        || strspn(adapter, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
               != strlen(adapter))
        vcf_geometry_default(g, capacity, fallback_adapter);
    else
        vcf_geometry_default(g, capacity, adapter);
    VcfGeometry d = *g;
    if (!get_uint(text, "ddb.geometry.cylinders", 16777215, &g->cylinders)
        || !get_uint(text, "ddb.geometry.heads", 255, &g->heads)
        || !get_uint(text, "ddb.geometry.sectors", 63, &g->sectors))
        *g = d;
}

gboolean vcf_geometry_of_disk(VcfGeometry *g, const char *path, guint64 capacity,
                              const char *fallback_adapter, GError **error)
{
    g_autofree char *text = vcf_descriptor_load(path, error);
    if (text == NULL)
        return FALSE;
    vcf_geometry_from_descriptor(g, text, capacity, fallback_adapter);
    return TRUE;
}

char *vcf_geometry_ddb_lines(const VcfGeometry *g)
{
    return g_strdup_printf("ddb.geometry.cylinders = \"%u\"\n"
                           "ddb.geometry.heads = \"%u\"\n"
                           "ddb.geometry.sectors = \"%u\"\n"
                           "ddb.adapterType = \"%s\"\n",
                           g->cylinders, g->heads, g->sectors, g->adapter);
}
