/* Helpers shared by the Check unit tests. */
#pragma once
#include <check.h>
#include <glib.h>

/* A fresh temporary folder, removed by test_tmpdir_free. */
char *test_tmpdir_new(void);
void test_tmpdir_free(char *dir);
/* Runs ARGV (NULL-terminated); returns its exit status, -1 if it did not
 * run. Its output goes to *OUT when OUT is not NULL. */
int test_run(const char *const *argv, char **out);
/* Whole file contents; aborts the test on failure. */
GBytes *test_read_file(const char *path);
/* Runs SUITE; the exit status for main. */
int test_run_suite(Suite *suite);
