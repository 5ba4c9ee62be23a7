/* Test helpers for disk chains: a fresh folder per test, VMDKs made and
 * written with qemu-img and qemu-io, and qemu-img's decoding as the oracle
 * that reads through a VcfParent are compared with. */
#pragma once
#include <glib.h>
#include "parent.h"

#define MiB (1024u * 1024u)
#define GiB ((guint64) 1024 * MiB)

/* The test's folder, made by chain_setup, removed by chain_teardown. */
extern char *chain_dir;
void chain_setup(void);
void chain_teardown(void);

/* NAME inside the test's folder. */
char *path_of(const char *name);
/* Runs a command (a NULL-terminated list) in the test's folder, so that
 * backing file names are relative to it as VMware writes them. */
void run(const char *prog, ...) G_GNUC_NULL_TERMINATED;
/* PATTERN over [OFFSET, OFFSET + LEN) of DISK, by qemu-io. */
void write_pattern(const char *disk, int pattern, guint64 offset, guint64 len);
/* qemu-img's decoding of DISK as a raw file; its fd. */
int oracle(const char *disk);
/* vcf_parent_open of NAME with no cache; it must open. */
VcfParent *open_ok(const char *name, guint n_chains);
/* pread until LEN or the end; how much was read. */
gsize raw_read(int fd, guint8 *buf, gsize len, guint64 offset);
/* [START, START + LEN) of P against the raw oracle, in odd chunks. */
void compare(VcfParent *p, int raw, guint64 start, guint64 len);
/* All of P, then reads across and past its end. */
void compare_all(VcfParent *p, int raw);
/* The value of KEY= (a CID) in NAME's descriptor. */
guint32 descriptor_cid(const char *name, const char *key);
/* Replaces the value of KEY= in NAME's descriptor, embedded or not. */
void edit_descriptor(const char *name, const char *key, const char *value);
/* Renames KEY= to NEW_KEY= (same length) in NAME's descriptor. */
void rename_key(const char *name, const char *key, const char *new_key);
/* P's files are the files NAMES... (NULL-terminated), in order. */
void check_files(VcfParent *p, ...);
/* base <- delta1 <- delta2, each writing its own pattern over the last. */
void make_chain3(void);
