#include "config.h"
#include "test-util.h"
#include "fileutil.h"

#include <check.h>
#include <glib/gstdio.h>
#include <sys/wait.h>

char *test_tmpdir_new(void)
{
    GError *error = NULL;
    char *dir = g_dir_make_tmp("vcf-test-XXXXXX", &error);
    ck_assert_msg(dir != NULL, "mkdtemp: %s", error ? error->message : "?");
    return dir;
}

void test_tmpdir_free(char *dir)
{
    if (dir != NULL && g_getenv("VCF_KEEP_TMP") == NULL)
        vcf_remove_tree(dir, NULL);
    g_free(dir);
}

int test_run(const char *const *argv, char **out)
{
    int status = 0;
    g_autofree char *err = NULL;
    g_autofree char *ignored = NULL;
    GError *error = NULL;
    /* Output is captured either way, so tools' chatter stays out of the log. */
    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                      out ? out : &ignored, &err, &status, &error)) {
        g_clear_error(&error);
        return -1;
    }
    if (!g_spawn_check_wait_status(status, NULL))
        g_printerr("%s failed: %s\n", argv[0], err ? err : "");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

GBytes *test_read_file(const char *path)
{
    char *data = NULL;
    gsize len = 0;
    GError *error = NULL;
    ck_assert_msg(g_file_get_contents(path, &data, &len, &error), "%s: %s", path,
                  error ? error->message : "?");
    return g_bytes_new_take(data, len);
}

int test_run_suite(Suite *suite)
{
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
