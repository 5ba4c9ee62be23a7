/* Promotion of a store to a standalone disk: its embedded descriptor loses
 * the parent (parentFileNameHint, parentCID), so that VMware, qemu-img and
 * libvmdk read it as a whole disk with no chain below.
 *
 * Crash safety: the caller has made every grain the parent held present
 * and durable first, so both the linked and the standalone store read the
 * same bytes. The rewrite keeps the descriptor's length (the hint line
 * becomes a comment padded with spaces, parentCID's value ffffffff). When
 * both lines lie in one sector, as in every descriptor we write, that
 * sector is written once: a sector write is whole or not at all. Else it
 * goes sector by sector in an order where each step leaves a descriptor
 * we and qemu read as the same disk: first the sector where the hint
 * line starts (a comment from then on, whatever follows), then the rest
 * of the line, a sync, then parentCID, a sync. (In between, libvmdk sees
 * a delta with no parent name; our own reader sees a whole disk, and the
 * next try of the copy finishes the rewrite.) */
#include "config.h"
#include "sparse-private.h"
#include "fileutil.h"
#include "vcf-error.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* The line of TEXT whose key is KEY: [*start, *end), without its '\n'. */
static gboolean find_line(const char *text, const char *key, gsize *start, gsize *end)
{
    gsize klen = strlen(key);
    for (const char *l = text; *l != '\0';) {
        const char *nl = strchr(l, '\n');
        gsize len = nl ? (gsize)(nl - l) : strlen(l);
        const char *p = l;
        while (p < l + len && (*p == ' ' || *p == '\t'))
            p++;
        if ((gsize)(l + len - p) > klen && g_ascii_strncasecmp(p, key, klen) == 0) {
            const char *q = p + klen;
            while (*q == ' ' || *q == '\t')
                q++;
            if (*q == '=') {
                *start = l - text;
                *end = l - text + len;
                return TRUE;
            }
        }
        if (nl == NULL)
            break;
        l = nl + 1;
    }
    return FALSE;
}

/* Writes bytes [from, to) of the descriptor area from TEXT, whole sectors,
 * the first sector first. */
static gboolean write_span(VcfSparse *s, const char *area, gsize from, gsize to,
                           GError **error)
{
    guint64 base = s->header.desc_offset * SECTOR;
    for (gsize sec = from / SECTOR * SECTOR; sec < to; sec += SECTOR)
        if (!vcf_pwrite_all(s->fd, area + sec, SECTOR, base + sec, s->path, error))
            return FALSE;
    return TRUE;
}

gboolean vcf_sparse_make_standalone(VcfSparse *s, GError **error)
{
    g_return_val_if_fail(s->writable, FALSE);
    if (s->parent_hint == NULL && s->parent_cid == VCF_CID_NONE)
        return TRUE;
    gsize room = s->header.desc_size * SECTOR;
    gsize len = strlen(s->descriptor);
    g_autofree char *area = g_malloc0(room);
    memcpy(area, s->descriptor, len);
    gsize hs = 0, he = 0, cs = 0, ce = 0;
    gboolean has_hint = find_line(area, "parentFileNameHint", &hs, &he);
    if (!find_line(area, "parentCID", &cs, &ce)) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: its descriptor has a parent but no "
                    "parentCID line", s->path);
        return FALSE;
    }
    const char *eq = memchr(area + cs, '=', ce - cs);
    gsize value = eq - area + 1;
    while (value < ce && area[value] == ' ')
        value++;
    if (ce - value < 8) {
        g_set_error(error, VCF_ERROR, EINVAL, "%s: its parentCID line is not 8 hex digits",
                    s->path);
        return FALSE;
    }
    gsize first = MIN(has_hint ? hs : value, value), last = MAX(has_hint ? he : ce, ce);
    gboolean one_sector = first / SECTOR == (last - 1) / SECTOR;
    if (has_hint) {
        area[hs] = '#';
        memset(area + hs + 1, ' ', he - hs - 1);
        if (!one_sector && (!write_span(s, area, hs, he, error) || !vcf_sparse_sync_fd(s, error)))
            return FALSE;
    }
    memcpy(area + value, "ffffffff", 8);
    memset(area + value + 8, ' ', ce - value - 8);
    if (one_sector ? !write_span(s, area, first, last, error)
                   : !write_span(s, area, value, ce, error))
        return FALSE;
    if (!vcf_sparse_sync_fd(s, error))
        return FALSE;
    g_free(s->descriptor);
    s->descriptor = g_strndup(area, len);
    g_clear_pointer(&s->parent_hint, g_free);
    s->parent_cid = VCF_CID_NONE;
    return TRUE;
}
