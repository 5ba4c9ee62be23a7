#include "config.h"
#include "names.h"
#include "vcf-error.h"

#include <errno.h>
#include <string.h>

gboolean vcf_name_check(const char *name, GError **error)
{
    const char *why = NULL;
    gsize len = strlen(name);
    if (len == 0)
        why = "it is empty";
    else if (len > VCF_NAME_MAX)
        why = "it is longer than 200 bytes";
    else if (strchr(name, '/') != NULL)
        why = "it contains '/'";
    else if (name[0] == '.')
        why = "it starts with '.' (names starting with '.' are hidden)";
    else if (strchr(name, '@') != NULL)
        why = "it contains '@', which separates a VM from a snapshot";
    else if (!g_utf8_validate(name, len, NULL))
        why = "it is not valid UTF-8";
    else
        for (const char *p = name; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                why = "it contains a control character";
                break;
            }
    if (why == NULL)
        return TRUE;
    g_autofree char *shown = g_strescape(name, NULL);
    g_set_error(error, VCF_ERROR, EINVAL, "invalid clone name \"%s\": %s",
                shown, why);
    return FALSE;
}

char *vcf_disk_stem(const char *name, guint i)
{
    return i == 0 ? g_strdup(name) : g_strdup_printf("%s_%u", name, i);
}

gboolean vcf_path_is_inside(const char *path, const char *dir)
{
    gsize n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

char *vcf_relative_path(const char *from_dir, const char *path)
{
    g_auto(GStrv) a = g_strsplit(from_dir, "/", -1);
    g_auto(GStrv) b = g_strsplit(path, "/", -1);
    guint i = 0;
    while (a[i] && b[i] && strcmp(a[i], b[i]) == 0)
        i++;
    GString *rel = g_string_new(NULL);
    for (guint j = i; a[j]; j++)
        if (*a[j])
            g_string_append(rel, "../");
    for (guint j = i; b[j]; j++) {
        if (!*b[j])
            continue;
        g_string_append(rel, b[j]);
        if (b[j + 1])
            g_string_append_c(rel, '/');
    }
    return g_string_free(rel, FALSE);
}
