/* fuzz_common.h -- code shared by the libFuzzer targets: one temporary directory per process (created on
 * first use, removed at exit) into which each input is written as a file, for the entry points that take
 * a path; and FUZZ_CHECK for the invariants a target asserts. */
#ifndef EVB_FUZZ_COMMON_H
#define EVB_FUZZ_COMMON_H
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_dir_path[512];
static const char *fuzz_dir_files[8];
static int fuzz_dir_n_files;

/* Removes a directory holding only plain files. */
static inline void fuzz_rmdir(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", path, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(path);
}

static inline void fuzz_dir_cleanup(void) {
    if (fuzz_dir_path[0]) fuzz_rmdir(fuzz_dir_path);
}

/* The per-process directory $TMPDIR (else /tmp)/evb-fuzz-<pid> (run_fuzz.sh sets TMPDIR=/dev/shm),
 * removed at exit. A crash, a timeout or libFuzzer's fork mode ends processes without running exit
 * handlers, so the first call also removes the directories of processes that no longer exist. */
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_path[0]) {
        const char *base = getenv("TMPDIR");
        if (!base || !*base) base = "/tmp";
        DIR *d = opendir(base);
        if (d) {
            struct dirent *e;
            char stale[768];
            while ((e = readdir(d))) {
                int pid = 0, used = 0;
                if (sscanf(e->d_name, "evb-fuzz-%d%n", &pid, &used) == 1 && e->d_name[used] == '\0' && pid > 0 &&
                    pid != (int)getpid() && kill(pid, 0) != 0 && errno == ESRCH) {
                    snprintf(stale, sizeof stale, "%s/%s", base, e->d_name);
                    fuzz_rmdir(stale);
                }
            }
            closedir(d);
        }
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/evb-fuzz-%d", base, (int)getpid());
        if (mkdir(fuzz_dir_path, 0700) != 0 && errno != EEXIST) { perror(fuzz_dir_path); abort(); }
        atexit(fuzz_dir_cleanup);
    }
    return fuzz_dir_path;
}

/* Writes data to <fuzz_dir>/name (name: a constant string) and returns the full path (static storage,
 * one buffer per distinct name slot). */
static inline const char *fuzz_write(const char *name, const uint8_t *data, size_t size) {
    static char paths[8][640];
    int slot = -1;
    for (int i = 0; i < fuzz_dir_n_files; i++)
        if (strcmp(fuzz_dir_files[i], name) == 0) slot = i;
    if (slot < 0) {
        if (fuzz_dir_n_files == 8) abort();
        slot = fuzz_dir_n_files++;
        fuzz_dir_files[slot] = name;
    }
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fuzz_dir(), name);
    /* A new file each time: rewriting the old one in place can wait for its pages' writeback. */
    unlink(paths[slot]);
    FILE *f = fopen(paths[slot], "wb");
    if (!f) { perror(paths[slot]); abort(); }
    if (size && fwrite(data, 1, size, f) != size) { perror(paths[slot]); abort(); }
    if (fclose(f) != 0) { perror(paths[slot]); abort(); }
    return paths[slot];
}

/* Fails the run with a message (a broken invariant, not a rejected input). */
#define FUZZ_CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "fuzz check failed: %s: ", #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

#endif
