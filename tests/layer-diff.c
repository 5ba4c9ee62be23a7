/* layer-diff [--no-libvmdk] [--reads N] DISK CONFINE RAW [SEED]: reads the VMware disk DISK (its chain
 * confined to CONFINE) through our layer stack and through libvmdk, and
 * compares both with RAW, what `qemu-img convert -O raw` made of it: the
 * whole disk in 1 MiB reads, then N (2000) reads of random sizes at random
 * offsets. Prints "LEVELS VMDK_LEVELS" (how many levels, how many libvmdk
 * reads) on success; on a difference, which reader and where, exit 1.
 * A disk libvmdk refuses: its message, exit 2. A read our stack fails
 * (EIO on a damaged file, where others may make up zeros): exit 3.
 * --no-libvmdk compares only ours with RAW, for layouts libvmdk is known
 * to misread. With RAW "-" it only opens DISK: exit 0 or 2. */
#include "config.h"
#include "parent.h"
#include "stack.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int compare(const char *who, const guint8 *got, const guint8 *want, gsize n,
                   guint64 off)
{
    for (gsize i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            fprintf(stderr, "%s differs from qemu-img at byte %" G_GUINT64_FORMAT
                    ": %02x, not %02x\n", who, off + i, got[i], want[i]);
            return 1;
        }
    }
    return 0;
}

/* Set once libvmdk refuses a chain it would misread (see vmdk-chain.h):
 * from then on only our reader is compared. */
static gboolean skip_vmdk;

static int check(VcfParent *p, VcfStack *s, int raw, guint64 off, gsize n, guint8 *a,
                 guint8 *b, guint8 *c)
{
    GError *error = NULL;
    memset(c, 0, n);
    if (pread(raw, c, n, (off_t) off) < 0) {
        perror("raw");
        return 1;
    }
    if (!vcf_stack_read(s, a, n, off, &error)) {
        fprintf(stderr, "ours: %s\n", error->message);
        return 3;
    }
    if (!skip_vmdk && !vcf_parent_read(p, b, n, off, &error)) {
        if (strstr(error->message, "libvmdk misreads it") != NULL) {
            printf("# libvmdk not compared: %s\n", error->message);
            g_clear_error(&error);
            skip_vmdk = TRUE;
        } else {
            fprintf(stderr, "libvmdk: %s\n", error->message);
            return 1;
        }
    }
    return compare("ours", a, c, n, off) || (!skip_vmdk && compare("libvmdk", b, c, n, off));
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--no-libvmdk") == 0) {
        skip_vmdk = TRUE;
        argc--, argv++;
    }
    int reads = 2000;
    if (argc > 2 && strcmp(argv[1], "--reads") == 0) {
        reads = atoi(argv[2]);
        argc -= 2, argv += 2;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: layer-diff DISK CONFINE RAW [SEED]\n");
        return 2;
    }
    GError *error = NULL;
    VcfParent *p = vcf_parent_open(argv[1], argv[2], NULL, 2, &error);
    if (p == NULL) {
        printf("refused: %s\n", error->message);
        return 2;
    }
    VcfStack *s = vcf_stack_new(p, &error);
    if (s == NULL) {
        printf("refused: %s\n", error->message);
        return 2;
    }
    if (strcmp(argv[3], "-") == 0) {
        vcf_stack_free(s);
        vcf_parent_free(p);
        return 0;
    }
    int raw = open(argv[3], O_RDONLY);
    if (raw < 0) {
        perror(argv[3]);
        return 2;
    }
    guint64 size = vcf_parent_get_size(p);
    gsize chunk = 1 << 20;
    guint8 *a = g_malloc(chunk), *b = g_malloc(chunk), *c = g_malloc(chunk);
    int bad = 0;
    for (guint64 off = 0; off < size && !bad; off += chunk)
        bad = check(p, s, raw, off, (gsize) MIN((guint64) chunk, size - off), a, b, c);
    GRand *rand = g_rand_new_with_seed(argc > 4 ? (guint32) atoi(argv[4]) : 1);
    for (int i = 0; i < reads && !bad; i++) {
        guint64 off = (guint64) (g_rand_double(rand) * (double) size);
        gsize n = (gsize) g_rand_int_range(rand, 1, 300 * 1024);
        /* Some reads run past the end: those bytes read as zeros. */
        bad = check(p, s, raw, off, n, a, b, c);
    }
    if (!bad)
        printf("%u %u\n", vcf_stack_get_depth(s), vcf_stack_get_vmdk_levels(s));
    g_rand_free(rand);
    g_free(a), g_free(b), g_free(c);
    close(raw);
    vcf_stack_free(s);
    vcf_parent_free(p);
    return bad;
}
