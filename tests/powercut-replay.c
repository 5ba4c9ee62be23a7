/* powercut-replay: rebuilds from a tests/iorecord.c log what a power cut
 * could leave on disk (for tests/mount-powercut.sh).
 *
 *   powercut-replay cuts LOG MAX
 *       prints up to MAX cut points, one a line: the record count N such
 *       that the cut falls after the first N records. Candidates are the
 *       moments just before each barrier returned (the most writes are in
 *       flight then) with some write in flight, and the end of the log; MAX
 *       of them, evenly spread. Then the 8 cuts after each hard link,
 *       which only a freeze makes: every step of its renames.
 *   powercut-replay build LOG DIR CUT SEED
 *       applies the first CUT records to DIR (a copy of the recorded folder
 *       as it was before the workload) and prints the text of each marker
 *       record among them, one a line.
 *
 * The model of a power cut after CUT records:
 *   - A write to file F is on disk if F had an fsync/fdatasync that began
 *     after the write was logged and returned before the cut. F is a file,
 *     not a name: renames (of F or of a folder above it) are followed.
 *   - Any other write is in flight: with SEED 0 every one is lost (the
 *     disk wrote nothing since the barriers); with an odd seed each is kept
 *     or lost at random; with an even one, per file, a random number of the
 *     oldest are lost and the rest kept (the disk wrote the newest first:
 *     the order that hurts a store that writes pointers after data). The
 *     choices are seeded by SEED and CUT. Which writes reach the disk, not
 *     in what order, decides what is there, so subsets cover every order
 *     the disk may write them in; where two kept writes overlap, the later
 *     one wins, as it would from the page cache. A write is kept or lost whole (no torn writes): the store
 *     never relies on one write being atomic, and tearing would blur what
 *     the checker can say about a grain. In particular a table write is
 *     kept while the grain data written before it (with no barrier
 *     between) is lost: the failure a missing data sync allows.
 *   - A file's size is what its kept writes and truncations make it.
 *   - Metadata (creation, truncation, rename, link, unlink, mkdir, rmdir) up to
 *     the cut is applied in order, as a file system that orders metadata
 *     (ext4 data=ordered, XFS) would leave it; a folder's fsync therefore
 *     adds nothing here.
 * Deliberately simple: the log is read whole, a few MiB. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char type;
    guint64 shim_no;      /* number among the recorder's records (not markers) */
    guint64 covers;       /* S: records with shim_no below this are covered */
    gint64 a;
    guint64 b;
    char *p1, *p2;
    const char *data;     /* W: b bytes inside the mapped log */
    int file;             /* W, T, S: which file (after renames); -1 none */
} Rec;

static void die(const char *fmt, ...) G_GNUC_PRINTF(1, 2) G_GNUC_NORETURN;
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("powercut-replay: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* Parses the whole log. Each daemon process starts with a P record and
 * numbers its own records from there: the S records' start counts are
 * made absolute with that base. */
static GArray *parse(GMappedFile *map)
{
    const char *p = g_mapped_file_get_contents(map);
    const char *end = p + g_mapped_file_get_length(map);
    GArray *recs = g_array_new(FALSE, TRUE, sizeof(Rec));
    guint64 shim_no = 0, base = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (gsize)(end - p));
        if (nl == NULL)
            die("record %u: header cut short", recs->len);
        char type;
        unsigned long long start, b;
        long long a;
        gsize l1, l2;
        g_autofree char *head = g_strndup(p, (gsize)(nl - p));
        if (sscanf(head, "%c %llu %lld %llu %zu %zu", &type, &start, &a, &b, &l1, &l2) != 6)
            die("record %u: bad header \"%s\"", recs->len, head);
        p = nl + 1;
        gsize data_len = type == 'W' ? (gsize)b : 0;
        if ((gsize)(end - p) < l1 + l2 + data_len)
            die("record %u (%c): cut short", recs->len, type);
        Rec r = { .type = type, .a = a, .b = b, .file = -1 };
        r.p1 = g_strndup(p, l1);
        r.p2 = g_strndup(p + l1, l2);
        r.data = p + l1 + l2;
        p += l1 + l2 + data_len;
        if (type == 'P') {
            base = shim_no;
        } else if (type != 'M') {
            r.shim_no = shim_no++;
            if (type == 'S')
                r.covers = base + start;
        }
        g_array_append_val(recs, r);
    }
    return recs;
}

/* ---- names to files ------------------------------------------------------ */

/* path -> file id + 1; 0 (present, value 0) = no file there. A path not in
 * the table is as it was before the workload: a file met for the first
 * time gets an id then. */
typedef struct {
    GHashTable *names;
    int next_id;
} Names;

static int file_at(Names *n, const char *path)
{
    gpointer v;
    if (g_hash_table_lookup_extended(n->names, path, NULL, &v)) {
        int id = GPOINTER_TO_INT(v) - 1;
        return id;
    }
    int id = n->next_id++;
    g_hash_table_insert(n->names, g_strdup(path), GINT_TO_POINTER(id + 1));
    return id;
}

static void set_name(Names *n, const char *path, int id)
{
    g_hash_table_insert(n->names, g_strdup(path), GINT_TO_POINTER(id + 1));
}

/* Moves FROM (and, for a folder, everything below it) to TO. */
static void rename_names(Names *n, const char *from, const char *to)
{
    int id = file_at(n, from);
    g_autofree char *prefix = g_strconcat(from, "/", NULL);
    gsize pl = strlen(prefix);
    GPtrArray *moved_keys = g_ptr_array_new_with_free_func(g_free);
    GArray *moved_ids = g_array_new(FALSE, FALSE, sizeof(int));
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, n->names);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        if (strncmp(k, prefix, pl) == 0) {
            g_ptr_array_add(moved_keys, g_strconcat(to, "/", (char *)k + pl, NULL));
            int mid = GPOINTER_TO_INT(v) - 1;
            g_array_append_val(moved_ids, mid);
            g_hash_table_iter_replace(&it, GINT_TO_POINTER(0));
        }
    }
    /* Whatever TO named before is gone (rename replaces it). */
    g_autofree char *to_prefix = g_strconcat(to, "/", NULL);
    g_hash_table_iter_init(&it, n->names);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (g_str_has_prefix(k, to_prefix))
            g_hash_table_iter_replace(&it, GINT_TO_POINTER(0));
    set_name(n, from, -1);
    set_name(n, to, id);
    for (guint i = 0; i < moved_keys->len; i++)
        set_name(n, g_ptr_array_index(moved_keys, i), g_array_index(moved_ids, int, i));
    g_ptr_array_unref(moved_keys);
    g_array_unref(moved_ids);
}

/* Gives each W, T and S record before CUT the file it acts on, and returns
 * per file id the shim number below which its writes are durable. */
static GArray *resolve(GArray *recs, guint cut)
{
    Names n = { g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL), 0 };
    GArray *durable = g_array_new(FALSE, TRUE, sizeof(guint64));
    for (guint i = 0; i < cut; i++) {
        Rec *r = &g_array_index(recs, Rec, i);
        switch (r->type) {
        case 'C':
        case 'K':
            /* A new file or folder under this name, whatever was there. */
            set_name(&n, r->p1, n.next_id++);
            break;
        case 'U':
        case 'D':
            set_name(&n, r->p1, -1);
            break;
        case 'L':
            /* A second name of the same file: its writes and syncs are one. */
            if (file_at(&n, r->p1) < 0)
                die("record %u (L): %s names no file at this point", i, r->p1);
            set_name(&n, r->p2, file_at(&n, r->p1));
            break;
        case 'R':
            if (r->a & 2)    /* RENAME_EXCHANGE: our daemon never asks for it */
                die("record %u: rename exchange is not replayed", i);
            rename_names(&n, r->p1, r->p2);
            break;
        case 'W':
        case 'T':
        case 'S':
            r->file = file_at(&n, r->p1);
            if (r->file < 0)
                die("record %u (%c): %s names no file at this point", i, r->type, r->p1);
            break;
        default:
            break;
        }
        if (r->type == 'S') {
            if ((guint)r->file >= durable->len)
                g_array_set_size(durable, r->file + 1);
            guint64 *d = &g_array_index(durable, guint64, r->file);
            *d = MAX(*d, r->covers);
        }
    }
    g_hash_table_destroy(n.names);
    return durable;
}

/* Whether a barrier before the cut covers write R. */
static gboolean is_durable(const Rec *r, GArray *durable)
{
    return (guint)r->file < durable->len && r->shim_no < g_array_index(durable, guint64, r->file);
}

/* How many writes among the first CUT records no barrier covers. */
static guint in_flight(GArray *recs, guint cut)
{
    g_autoptr(GArray) durable = resolve(recs, cut);
    guint n = 0;
    for (guint i = 0; i < cut; i++) {
        const Rec *r = &g_array_index(recs, Rec, i);
        n += r->type == 'W' && !is_durable(r, durable);
    }
    return n;
}

/* ---- applying ---------------------------------------------------------------- */

static void check(int rc, guint i, const Rec *r, const char *what)
{
    if (rc < 0)
        die("record %u (%c %s): %s: %s", i, r->type, r->p1, what, g_strerror(errno));
}

static void apply(int dir, GArray *recs, guint cut, guint32 seed, guint *kept,
                  guint *lost, guint *durable_writes)
{
    g_autoptr(GArray) durable = resolve(recs, cut);
    GRand *rand = g_rand_new_with_seed(seed * 1000003u + cut);
    /* Per file: how many of its writes are in flight, and (even seeds) how
     * many of the oldest of them are lost. */
    g_autoptr(GArray) n_flying = g_array_new(FALSE, TRUE, sizeof(guint));
    g_autoptr(GArray) n_lost = g_array_new(FALSE, TRUE, sizeof(guint));
    g_array_set_size(n_flying, durable->len + 1);
    for (guint i = 0; i < cut; i++) {
        const Rec *r = &g_array_index(recs, Rec, i);
        if (r->type == 'W' && !is_durable(r, durable)) {
            if ((guint)r->file >= n_flying->len)
                g_array_set_size(n_flying, r->file + 1);
            g_array_index(n_flying, guint, r->file)++;
        }
    }
    g_array_set_size(n_lost, n_flying->len);
    for (guint f = 0; f < n_flying->len; f++) {
        guint n = g_array_index(n_flying, guint, f);
        /* Some lost and some kept where there are two or more. */
        g_array_index(n_lost, guint, f) = n == 0 ? 0 : n == 1 ? (guint)g_rand_int_range(rand, 0, 2)
                                          : (guint)g_rand_int_range(rand, 1, (gint32)n);
        g_array_index(n_flying, guint, f) = 0;   /* from here on: how many seen */
    }
    for (guint i = 0; i < cut; i++) {
        const Rec *r = &g_array_index(recs, Rec, i);
        int fd;
        switch (r->type) {
        case 'K':
            check(mkdirat(dir, r->p1, 0755), i, r, "mkdir");
            break;
        case 'C':
            fd = openat(dir, r->p1, O_WRONLY | O_CREAT | O_CLOEXEC | (r->a ? O_TRUNC : 0), 0644);
            check(fd, i, r, "create");
            close(fd);
            break;
        case 'T':
            fd = openat(dir, r->p1, O_WRONLY | O_CLOEXEC);
            check(fd, i, r, "open");
            check(ftruncate(fd, r->a), i, r, "truncate");
            close(fd);
            break;
        case 'R':
            check(renameat(dir, r->p1, dir, r->p2), i, r, "rename");
            break;
        case 'L':
            check(linkat(dir, r->p1, dir, r->p2, 0), i, r, "link");
            break;
        case 'U':
            check(unlinkat(dir, r->p1, 0), i, r, "unlink");
            break;
        case 'D':
            check(unlinkat(dir, r->p1, AT_REMOVEDIR), i, r, "rmdir");
            break;
        case 'W': {
            gboolean keep;
            if (is_durable(r, durable)) {
                (*durable_writes)++;
                keep = TRUE;
            } else {
                guint nth = g_array_index(n_flying, guint, r->file)++;
                if (seed == 0)
                    keep = FALSE;
                else if (seed % 2 == 1)
                    keep = g_rand_boolean(rand);
                else
                    keep = nth >= g_array_index(n_lost, guint, r->file);
                *(keep ? kept : lost) += 1;
            }
            if (!keep)
                break;
            fd = openat(dir, r->p1, O_WRONLY | O_CLOEXEC);
            check(fd, i, r, "open");
            gsize done = 0;
            while (done < r->b) {
                ssize_t w = pwrite(fd, r->data + done, r->b - done, r->a + (gint64)done);
                check(w < 0 ? -1 : 0, i, r, "write");
                done += (gsize)w;
            }
            close(fd);
            break;
        }
        case 'M':
            printf("%s\n", r->p1);
            break;
        default:
            break;
        }
    }
    g_rand_free(rand);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        die("usage: %s cuts LOG MAX | build LOG DIR CUT SEED", argv[0]);
    GError *error = NULL;
    GMappedFile *map = g_mapped_file_new(argv[2], FALSE, &error);
    if (map == NULL)
        die("%s", error->message);
    GArray *recs = parse(map);
    if (strcmp(argv[1], "cuts") == 0) {
        guint max = (guint)atoi(argv[3]);
        g_autoptr(GArray) cand = g_array_new(FALSE, FALSE, sizeof(guint));
        guint n_barriers = 0;
        for (guint i = 0; i < recs->len; i++) {
            if (g_array_index(recs, Rec, i).type != 'S')
                continue;
            n_barriers++;
            /* A cut with nothing in flight is the state some barrier made
             * durable: nothing a power cut could change there. */
            if (in_flight(recs, i) > 0)
                g_array_append_val(cand, i);
        }
        g_array_append_val(cand, recs->len);
        guint n = MIN(max, cand->len);
        /* Evenly spread, the end of the log always among them. */
        for (guint k = 0; k < n; k++) {
            guint idx = n == 1 ? cand->len - 1 : (guint)((guint64)k * (cand->len - 1) / (n - 1));
            printf("%u\n", g_array_index(cand, guint, idx));
        }
        /* And after every link: each moment of a freeze, whose names
         * change between its barriers. */
        guint n_links = 0;
        for (guint i = 0; i < recs->len; i++) {
            if (g_array_index(recs, Rec, i).type != 'L')
                continue;
            n_links++;
            for (guint c = i + 1; c <= MIN(i + 8, recs->len); c++)
                printf("%u\n", c);
        }
        fprintf(stderr, "%u records, %u barriers, %u with writes in flight, %u links\n",
                recs->len, n_barriers, cand->len - 1, n_links);
    } else if (strcmp(argv[1], "build") == 0 && argc == 6) {
        guint cut = (guint)atoi(argv[4]);
        guint32 seed = (guint32)atoi(argv[5]);
        if (cut > recs->len)
            die("cut %u past the log's %u records", cut, recs->len);
        int dir = open(argv[3], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0)
            die("%s: %s", argv[3], g_strerror(errno));
        guint kept = 0, lost = 0, durable = 0;
        apply(dir, recs, cut, seed, &kept, &lost, &durable);
        close(dir);
        fprintf(stderr, "cut %u seed %u: %u writes durable, %u in flight kept, %u lost\n",
                cut, seed, durable, kept, lost);
    } else {
        die("usage: %s cuts LOG MAX | build LOG DIR CUT SEED", argv[0]);
    }
    for (guint i = 0; i < recs->len; i++) {
        g_free(g_array_index(recs, Rec, i).p1);
        g_free(g_array_index(recs, Rec, i).p2);
    }
    g_array_unref(recs);
    g_mapped_file_unref(map);
    return 0;
}
