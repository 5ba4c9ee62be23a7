/* powercut-check: checks a library rebuilt by powercut-replay against the
 * workload's model, reading each clone both as qemu-img did and through
 * our own core (for tests/mount-powercut.sh).
 *
 *   powercut-check LIBRARY MODEL MARKS RAWDIR
 *
 * MODEL/NAME.base is the raw disk clone NAME started from and
 * MODEL/NAME.writes lists, in order, what the workload wrote to it:
 * "ROUND OFFSET LENGTH FILE" a line, FILE holding the bytes. MARKS holds
 * the markers the replayer met before the cut: "made NAME" (mkdir of NAME
 * returned) and "ack NAME ROUND" (an fsync of NAME's flat disk returned
 * after every write of rounds up to ROUND). RAWDIR/NAME.raw is qemu-img's
 * reading of the rebuilt store, made by the caller.
 *
 * The oracle, per 4 KiB page: the versions a page went through are its
 * base and its contents after each write that touched it; the acknowledged
 * one is the last version from an acknowledged round. The page must read
 * as the acknowledged version or a later one (a write in flight may have
 * landed): never an older one, never bytes no write made. Pages, not whole
 * grains: the kernel may split one write(2) into requests at page
 * boundaries, so a grain can legitimately hold part of a write in flight;
 * a page cannot. Every grain must read through our core with no EIO, and
 * our core and qemu-img must read the same bytes. A clone whose mkdir
 * returned must be there; a clone the model does not know must not. */
#include "config.h"
#include "clone.h"
#include "clone-store.h"
#include "disk.h"
#include "grain-sums.h"
#include "library.h"
#include "sparse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define G VCF_GRAIN_SIZE
#define PAGE 4096u

typedef struct {
    int round;
    guint64 sum;
} Version;

static guint n_failures;

static void failure(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void failure(const char *fmt, ...)
{
    /* The first few say enough; the count says the rest. */
    if (n_failures++ < 8) {
        va_list ap;
        va_start(ap, fmt);
        fputs("powercut-check: ", stdout);
        vprintf(fmt, ap);
        fputc('\n', stdout);
        va_end(ap);
    }
}

static void die(const char *what, GError *error) G_GNUC_NORETURN;
static void die(const char *what, GError *error)
{
    fprintf(stderr, "powercut-check: %s: %s\n", what, error ? error->message : "failed");
    exit(2);
}

static guint64 page_sum(const guint8 *disk, gsize size, guint64 p)
{
    gsize off = p * PAGE, len = MIN((gsize)PAGE, size - off);
    return vcf_grain_sum(disk + off, len);
}

/* Per page, the versions it went through (GArray of Version). */
static GPtrArray *versions_of(const char *model, const char *name, gsize *size_out)
{
    g_autofree char *base_path = g_strdup_printf("%s/%s.base", model, name);
    g_autofree char *writes_path = g_strdup_printf("%s/%s.writes", model, name);
    g_autofree char *disk = NULL, *list = NULL;
    gsize size;
    GError *error = NULL;
    if (!g_file_get_contents(base_path, &disk, &size, &error))
        die(base_path, error);
    if (!g_file_get_contents(writes_path, &list, NULL, &error))
        list = g_strdup("");
    g_clear_error(&error);
    guint64 n_pages = (size + PAGE - 1) / PAGE;
    GPtrArray *vs = g_ptr_array_new_with_free_func((GDestroyNotify)g_array_unref);
    for (guint64 p = 0; p < n_pages; p++) {
        GArray *a = g_array_new(FALSE, FALSE, sizeof(Version));
        Version v = { -1, page_sum((guint8 *)disk, size, p) };
        g_array_append_val(a, v);
        g_ptr_array_add(vs, a);
    }
    g_auto(GStrv) lines = g_strsplit(list, "\n", -1);
    for (char **l = lines; *l != NULL; l++) {
        if (**l == '\0')
            continue;
        int round;
        guint64 off, len;
        char file[4096];
        if (sscanf(*l, "%d %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %4095s", &round, &off,
                   &len, file) != 4 || off + len > size || len == 0)
            die(*l, NULL);
        g_autofree char *data = NULL;
        gsize got;
        if (!g_file_get_contents(file, &data, &got, &error) || got != len)
            die(file, error);
        memcpy(disk + off, data, len);
        for (guint64 p = off / PAGE; p <= (off + len - 1) / PAGE; p++) {
            Version v = { round, page_sum((guint8 *)disk, size, p) };
            g_array_append_val(g_ptr_array_index(vs, p), v);
        }
    }
    *size_out = size;
    return vs;
}

/* Index of the acknowledged version: the last one from a round <= ACKED. */
static guint acked_version(GArray *a, int acked)
{
    guint k = 0;
    for (guint i = 0; i < a->len; i++)
        if (g_array_index(a, Version, i).round <= acked)
            k = i;
    return k;
}

/* A full clone's copy: its cursor in clone.ini never runs ahead of what
 * the store holds durably (the parent holds data in every grain, so every
 * grain below the cursor must be in the store), and "full" means the store
 * stands alone. */
static void check_copy(VcfLibrary *lib, const char *name, VcfDisk *disk)
{
    g_autoptr(VcfCloneInfo) info = vcf_clone_info_load(lib, name, NULL);
    if (info == NULL || g_strcmp0(info->type, "full") != 0)
        return;
    if (g_strcmp0(info->state, "full") == 0) {
        if (vcf_disk_has_parent(disk))
            failure("clone %s: clone.ini says full, but its store still has a parent", name);
        printf("%s full\n", name);
        return;
    }
    g_autofree char *path = g_strdup_printf("%s/%s.vmdk", info->dir, name);
    GError *error = NULL;
    VcfSparse *store = vcf_sparse_open(path, FALSE, &error);
    if (store == NULL) {
        failure("clone %s: its store does not open: %s", name, error->message);
        g_clear_error(&error);
        return;
    }
    guint64 units = vcf_disk_get_units(disk);
    guint64 upto = info->copy_disk > 0 ? units : MIN(info->copy_unit, units);
    if (vcf_disk_has_parent(disk))
        for (guint64 u = 0; u < upto; u++)
            if (vcf_sparse_grain_state(store, u) == VCF_GRAIN_ABSENT) {
                failure("clone %s: its copy's cursor is at unit %" G_GUINT64_FORMAT
                        ", but unit %" G_GUINT64_FORMAT " is not in its store", name, upto, u);
                break;
            }
    vcf_sparse_free(store);
    g_autofree char *cursor = g_strdup_printf("%s copied to %u:%" G_GUINT64_FORMAT, name,
                                              info->copy_disk, info->copy_unit);
    printf("%s\n", cursor);
}

static void check_clone(VcfLibrary *lib, const char *model, const char *rawdir,
                        const char *name, int acked)
{
    gsize size;
    g_autoptr(GPtrArray) vs = versions_of(model, name, &size);
    g_autofree char *raw_path = g_strdup_printf("%s/%s.raw", rawdir, name);
    g_autofree char *raw = NULL;
    gsize raw_size = 0;
    GError *error = NULL;
    if (!g_file_get_contents(raw_path, &raw, &raw_size, &error)) {
        failure("clone %s: no qemu-img reading of its store: %s", name, error->message);
        g_clear_error(&error);
        return;
    }
    if (raw_size != size)
        failure("clone %s: qemu-img reads %" G_GSIZE_FORMAT " bytes, the disk has %"
                G_GSIZE_FORMAT, name, raw_size, size);
    VcfClone *clone = vcf_clone_open(lib, name, 1, &error);
    if (clone == NULL) {
        failure("clone %s: our core cannot open it: %s", name, error->message);
        g_clear_error(&error);
        return;
    }
    VcfDisk *disk = vcf_clone_get_disk(clone, 0);
    if (vcf_disk_get_size(disk) != size)
        failure("clone %s: our core serves %" G_GUINT64_FORMAT " bytes, the disk has %"
                G_GSIZE_FORMAT, name, vcf_disk_get_size(disk), size);
    g_autofree guint8 *buf = g_malloc(G);
    for (guint64 g = 0; (g + 1) * G <= MIN(size, raw_size); g++) {
        if (!vcf_disk_read(disk, buf, G, g * G, &error)) {
            failure("clone %s: grain %" G_GUINT64_FORMAT " (disk offset %" G_GUINT64_FORMAT
                    "): read through our core fails: %s", name, g, g * G, error->message);
            g_clear_error(&error);
            continue;
        }
        if (memcmp(buf, raw + g * G, G) != 0)
            failure("clone %s: grain %" G_GUINT64_FORMAT ": our core and qemu-img read "
                    "different bytes", name, g);
    }
    for (guint64 p = 0; p < vs->len && (p + 1) * PAGE <= raw_size; p++) {
        GArray *a = g_ptr_array_index(vs, p);
        guint ack = acked_version(a, acked);
        guint64 sum = vcf_grain_sum(raw + p * PAGE, PAGE);
        gboolean ok = FALSE, older = FALSE;
        for (guint i = 0; i < a->len; i++) {
            if (g_array_index(a, Version, i).sum != sum)
                continue;
            if (i >= ack)
                ok = TRUE;
            else
                older = TRUE;
        }
        if (!ok)
            failure("clone %s: page at disk offset %" G_GUINT64_FORMAT " (grain %" G_GUINT64_FORMAT
                    ") reads as %s, not as its version %u of %u (%s, round %d) or a later one",
                    name, p * PAGE, p * PAGE / G, older ? "an older version" : "bytes no write made",
                    ack, a->len - 1,
                    ack > 0 ? "what an fsync acknowledged" : "as it was, no write acknowledged",
                    g_array_index(a, Version, ack).round);
    }
    check_copy(lib, name, disk);
    if (!vcf_clone_close(clone, &error)) {
        failure("clone %s: closing it: %s", name, error->message);
        g_clear_error(&error);
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s LIBRARY MODEL MARKS RAWDIR\n", argv[0]);
        return 2;
    }
    const char *model = argv[2], *rawdir = argv[4];
    GError *error = NULL;
    g_autofree char *marks = NULL;
    if (!g_file_get_contents(argv[3], &marks, NULL, &error))
        die(argv[3], error);
    /* name -> acked round + 2 (1: made, no round acknowledged yet) */
    g_autoptr(GHashTable) acked = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_auto(GStrv) lines = g_strsplit(marks, "\n", -1);
    for (char **l = lines; *l != NULL; l++) {
        char name[256];
        int round;
        if (sscanf(*l, "ack %255s %d", name, &round) == 2)
            g_hash_table_insert(acked, g_strdup(name), GINT_TO_POINTER(round + 2));
        else if (sscanf(*l, "made %255s", name) == 1 && !g_hash_table_contains(acked, name))
            g_hash_table_insert(acked, g_strdup(name), GINT_TO_POINTER(1));
    }

    g_autoptr(VcfLibrary) lib = vcf_library_open(argv[1], &error);
    if (lib == NULL) {
        printf("powercut-check: the library does not open: %s\n", error->message);
        return 1;
    }
    /* What a mount does first: finish what the cut interrupted. */
    g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
    vcf_clone_recover(lib, problems);
    for (guint i = 0; i < problems->len; i++)
        failure("recovery: %s", (char *)g_ptr_array_index(problems, i));

    g_autoptr(GPtrArray) present = vcf_clone_list(lib);
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < present->len; i++) {
        const char *name = g_ptr_array_index(present, i);
        g_autofree char *base = g_strdup_printf("%s/%s.base", model, name);
        g_hash_table_add(seen, (gpointer)name);
        if (!g_file_test(base, G_FILE_TEST_EXISTS)) {
            failure("clone %s is there, but the workload never made it", name);
            continue;
        }
        int v = GPOINTER_TO_INT(g_hash_table_lookup(acked, name));
        check_clone(lib, model, rawdir, name, v >= 2 ? v - 2 : -1);
    }
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, acked);
    while (g_hash_table_iter_next(&it, &k, NULL))
        if (!g_hash_table_contains(seen, k))
            failure("clone %s is gone, though its mkdir had returned", (char *)k);
    if (n_failures > 8)
        printf("powercut-check: ... %u failures in all\n", n_failures);
    return n_failures ? 1 : 0;
}
