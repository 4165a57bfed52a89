#define _GNU_SOURCE
/* test_dbdir.c -- the level databases under a cache directory (evb_db_dir_scan, evb_db_dir_remove), through
 * the library: a cache holding level databases made here with evb_db_open and a few levels, one with a
 * damaged index, one holding a user's file, one whose lock is a link to another database's, and entries that
 * are not databases (a file, a directory, a symbolic link to a database outside). The scan counts the
 * databases with their levels, fingerprints and bytes, and nothing else; removal takes only what a database is
 * made of, refuses a locked database, one holding a user's file and one whose lock is not its own, and never
 * follows a link. */
#include "testing.h"
#include "fixtures.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_status.h"

#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

enum { ROWS = 8, COLS = 16 };

/* A level database in dir for the model fingerprint model_fp with n sparse levels of unit 0. */
static int make_db(const char *dir, const char *model_fp, int n) {
    evb_db *db;
    int st = evb_db_open(dir, model_fp, "00000000000000cc", 1, &db);
    for (int k = 0; !st && k < n; k++) {
        float W[ROWS * COLS];
        for (int i = 0; i < ROWS * COLS; i++) W[i] = i % (k + 2) == 0 ? 0.0f : 0.01f * (float)(i + k);
        evb_db_entry meta = {0};
        snprintf(meta.method, sizeof meta.method, "magnitude");
        meta.sparsity = 0.1 * (k + 1);
        meta.rows = ROWS;
        meta.cols = COLS;
        st = evb_db_put_sparse(db, &meta, W, 0.0);
    }
    if (!st) evb_db_close(db);
    return st;
}

static int write_file(const char *dir, const char *name, const char *text) {
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static const evb_db_dir_entry *entry(const evb_db_dir *d, const char *name) {
    for (int i = 0; d && i < d->n; i++)
        if (strcmp(d->entries[i].name, name) == 0) return &d->entries[i];
    return NULL;
}

/* The scan of the full cache: five databases, three other entries. */
static void check_scan(const char *cache) {
    evb_db_dir *d = NULL;
    int st = evb_db_dir_scan(cache, &d);
    EVB_CHECK(st == EVB_SUCCESS && d && d->exists && d->n == 5 && d->n_other == 3,
              "scan: 5 level databases and 3 other entries (a file, a directory, a link) (status %d, %d, %d)", st, d ? d->n : -1,
              d ? d->n_other : -1);
    const char *order[] = {"a", "b", "broken", "linkedlock", "mixed"};
    int sorted = d && d->n == 5;
    uint64_t sum = 0;
    for (int i = 0; sorted && i < 5; i++) { sorted = strcmp(d->entries[i].name, order[i]) == 0; sum += d->entries[i].bytes; }
    EVB_CHECK(sorted && sum == d->bytes && d->bytes > 0, "scan: the databases sorted by name, their bytes adding up to the total");
    const evb_db_dir_entry *a = entry(d, "a"), *b = entry(d, "b"), *x = entry(d, "broken");
    EVB_CHECK(a && a->levels == 3 && strcmp(a->model_fp, "00000000000000aa") == 0 && strcmp(a->calib_fp, "00000000000000cc") == 0 &&
              a->bytes >= 4 * 512 && a->mtime > 0 && !a->error, "scan: a's levels (3), fingerprints, bytes and last change");
    EVB_CHECK(b && b->levels == 2 && strcmp(b->model_fp, "00000000000000bb") == 0, "scan: b's levels (2) and model fingerprint");
    EVB_CHECK(x && x->levels == -1 && x->error && x->error[0] && !x->model_fp[0], "scan: a damaged index is reported in its entry (%s)",
              x && x->error ? x->error : "-");
    evb_db_dir_free(d);
}

/* Removals that must be refused, each leaving everything in place. */
static void check_refused(const char *cache, const char *outside) {
    char b[800], lockp[900];
    snprintf(b, sizeof b, "%s/b", cache);
    snprintf(lockp, sizeof lockp, "%s/.lock", b);  /* another writer of b holds its lock */
    int fd = open(lockp, O_RDWR | O_CREAT, 0644);
    EVB_CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0, "the test holds b's writer lock");
    int st = evb_db_dir_remove(cache, "b");
    EVB_CHECK(st == EVB_EIO && strstr(evb_last_error(), "in use") && fixture_exists(b, "index.msgpack") && fixture_exists(b, "u0000_magnitude_s0.100000.bin"),
              "a locked database is refused and left whole (status %d: %s)", st, evb_last_error());
    if (fd >= 0) close(fd);
    st = evb_db_dir_remove(cache, "mixed");
    EVB_CHECK(st == EVB_EFORMAT && strstr(evb_last_error(), "mine.txt") && fixture_exists(cache, "mixed/mine.txt") && fixture_exists(cache, "mixed/index.msgpack"),
              "a database holding a user's file is refused, naming it, and left whole (status %d: %s)", st, evb_last_error());
    st = evb_db_dir_remove(cache, "link");
    EVB_CHECK(st == EVB_EINVAL && fixture_exists(cache, "link") && fixture_exists(outside, "index.msgpack") && fixture_exists(outside, "u0000_magnitude_s0.100000.bin"),
              "a link to a database is not followed: refused, the link and the database behind it untouched (status %d)", st);
    st = evb_db_dir_remove(cache, "linkedlock");
    EVB_CHECK(st == EVB_EIO && strstr(evb_last_error(), "lock") && fixture_exists(cache, "linkedlock/index.msgpack") && fixture_exists(outside, ".lock"),
              "a database whose lock is a link elsewhere is refused and left whole (status %d: %s)", st, evb_last_error());
    int s1 = evb_db_dir_remove(cache, "notadb"), s2 = evb_db_dir_remove(cache, "notes.txt"), s3 = evb_db_dir_remove(cache, "../outside");
    EVB_CHECK(s1 == EVB_EINVAL && s2 == EVB_EINVAL && s3 == EVB_EINVAL && fixture_exists(cache, "notadb/keep.txt") && fixture_exists(cache, "notes.txt"),
              "a directory, a file and a path leading out are not level databases: refused, untouched");
}

/* Removals that succeed, and the scan after them. */
static void check_removed(const char *cache) {
    int st = evb_db_dir_remove(cache, "a");
    EVB_CHECK(st == EVB_SUCCESS && !fixture_exists(cache, "a"), "an unlocked database is removed with its directory and a killed writer's file (%s)",
              st ? evb_last_error() : "");
    st = evb_db_dir_remove(cache, "b");
    EVB_CHECK(st == EVB_SUCCESS && !fixture_exists(cache, "b"), "b is removed once its lock is free (%s)", st ? evb_last_error() : "");
    st = evb_db_dir_remove(cache, "broken");
    EVB_CHECK(st == EVB_SUCCESS && !fixture_exists(cache, "broken"), "a database with a damaged index is removed (%s)", st ? evb_last_error() : "");
    st = evb_db_dir_remove(cache, "a");
    EVB_CHECK(st == EVB_EINVAL, "removing it again: not a level database (status %d)", st);
    evb_db_dir *d = NULL;
    st = evb_db_dir_scan(cache, &d);
    EVB_CHECK(st == EVB_SUCCESS && d && d->n == 2 && entry(d, "mixed") && entry(d, "linkedlock") && d->n_other == 3,
              "the scan after: the 2 refused databases and the 3 other entries");
    evb_db_dir_free(d);
}

int main(void) {
    char *tmp = fixture_tmpdir();
    char cache[700], outside[800], p[2400];
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    snprintf(outside, sizeof outside, "%s/outside", tmp);
    evb_db_dir *d = NULL;
    int st = evb_db_dir_scan(cache, &d);
    EVB_CHECK(st == EVB_SUCCESS && d && !d->exists && d->n == 0 && d->bytes == 0, "scan of a cache directory that does not exist: empty");
    evb_db_dir_free(d);
    mkdir(cache, 0755);
    char a[800], b[800], mixed[800], broken[800], linked[800];
    snprintf(a, sizeof a, "%s/a", cache);
    snprintf(b, sizeof b, "%s/b", cache);
    snprintf(mixed, sizeof mixed, "%s/mixed", cache);
    snprintf(broken, sizeof broken, "%s/broken", cache);
    snprintf(linked, sizeof linked, "%s/linkedlock", cache);
    EVB_CHECK(make_db(a, "00000000000000aa", 3) == 0 && make_db(b, "00000000000000bb", 2) == 0 && make_db(mixed, "00000000000000aa", 1) == 0 &&
              make_db(outside, "00000000000000aa", 1) == 0 && make_db(linked, "00000000000000aa", 1) == 0,
              "level databases made with evb_db_open and a few levels (%s)", evb_last_error());
    snprintf(p, sizeof p, "mkdir -p %s/notadb %s && echo keep > %s/notadb/keep.txt && ln -s %s %s/link && echo garbage > %s/index.msgpack && "
             "rm -f %s/.lock && ln -s %s/.lock %s/.lock", cache, broken, cache, outside, cache, broken, linked, outside, linked);
    EVB_CHECK(system(p) == 0 && write_file(cache, "notes.txt", "notes\n") == 0 && write_file(mixed, "mine.txt", "mine\n") == 0 &&
              write_file(a, "u0000_magnitude_s0.100000.bin.tmp.99.1", "x") == 0,
              "the cache also holds a file, a directory, a link to a database, a damaged index, a user's file and a linked lock");
    check_scan(cache);
    snprintf(p, sizeof p, "%s/notes.txt", cache);
    st = evb_db_dir_scan(p, &d);
    EVB_CHECK(st == EVB_EIO && !d && strstr(evb_last_error(), "notes.txt"), "scan of a file: EVB_EIO naming it (%s)", evb_last_error());
    check_refused(cache, outside);
    check_removed(cache);
    fixture_rmdir(tmp);
    free(tmp);
    return evb_test_summary();
}
