/* fileio.c -- atomic writes and directory locks (see core/fileio.h). */
#define _GNU_SOURCE
#include "core/fileio.h"

#include "evobudget/evb_status.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

const char *evb_write_hint(int e) {
    switch (e) {
    case ENOSPC: return " (hint: free disk space and run again)";
    case EDQUOT: return " (hint: the disk quota is used up; free space or raise the quota, and run again)";
    case EFBIG: return " (hint: the file would exceed the file size limit: see 'ulimit -f', or the file system's limit)";
    case ENOENT: return " (hint: the directory was removed while writing; run again)";
    case EROFS: case EACCES: case EPERM: return " (hint: the directory is not writable; choose another)";
    default: return " (hint: check the file system and the device holding it)";
    }
}

int evb_fsync_parent(const char *path) {
    char *copy = strdup(path);
    if (!copy) EVB_ERROR("out of memory", EVB_ENOMEM);
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    int ok = fd >= 0 && fsync(fd) == 0;
    int e = errno;
    if (fd >= 0) close(fd);
    if (!ok) {
        int st = evb_errorf(__FILE__, __LINE__, EVB_EIO, "%s: cannot sync directory: %s", dir, strerror(e));
        free(copy);
        return st;
    }
    free(copy);
    return EVB_SUCCESS;
}

/* The temporary sibling: path.tmp.<pid>.<n>, unique per process and call. */
static int tmp_name(const char *path, char **tmp) {
    static _Atomic unsigned counter;
    unsigned n = counter++;
    size_t len = strlen(path) + 48;
    *tmp = malloc(len);
    if (!*tmp) EVB_ERROR("out of memory", EVB_ENOMEM);
    snprintf(*tmp, len, "%s.tmp.%ld.%u", path, (long)getpid(), n);
    return EVB_SUCCESS;
}

static int finish(const char *path, char *tmp, FILE *f, int st) {
    int e = 0;
    if (st == EVB_SUCCESS) {
        if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0) { e = errno ? errno : EIO; st = EVB_EIO; }
    }
    if (fclose(f) != 0 && st == EVB_SUCCESS) { e = errno; st = EVB_EIO; }
    if (st == EVB_SUCCESS && rename(tmp, path) != 0) { e = errno; st = EVB_EIO; }
    if (st != EVB_SUCCESS) {
        unlink(tmp);
        free(tmp);
        if (e) {
            return evb_errorf(__FILE__, __LINE__, EVB_EIO, "%s: write failed: %s%s", path, strerror(e), evb_write_hint(e));
        }
        return st;
    }
    free(tmp);
    return evb_fsync_parent(path);
}

int evb_write_atomic_with(const char *path, int (*fn)(FILE *f, void *ctx), void *ctx) {
    char *tmp;
    int st = tmp_name(path, &tmp);
    if (st) return st;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        free(tmp);
        EVB_ERRORF(EVB_EIO, "%s: cannot create: %s", path, strerror(e));
    }
    errno = 0;
    st = fn(f, ctx);
    return finish(path, tmp, f, st);
}

struct bytes { const void *data; size_t n; };

static int write_bytes(FILE *f, void *ctx) {
    const struct bytes *b = ctx;
    return b->n == 0 || fwrite(b->data, 1, b->n, f) == b->n ? EVB_SUCCESS : EVB_EIO;
}

int evb_write_atomic(const char *path, const void *data, size_t n) {
    struct bytes b = {data, n};
    return evb_write_atomic_with(path, write_bytes, &b);
}

/* Opens dir/.lock into *f (-1, with success, where nobody can write the directory). */
static int lock_open(const char *dir, int mode, int *f) {
    *f = -1;
    size_t len = strlen(dir) + 8;
    char *p = malloc(len);
    if (!p) EVB_ERROR("out of memory", EVB_ENOMEM);
    snprintf(p, len, "%s/.lock", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && mode == EVB_LOCK_SHARED) fd = open(p, O_RDONLY | O_CLOEXEC); /* a read-only directory */
    int e = errno;
    free(p);
    if (fd < 0) {
        if (e == EACCES || e == EROFS) return EVB_SUCCESS; /* nobody can write here, so nobody can race us */
        EVB_ERRORF(EVB_EIO, "%s: cannot open lock file: %s", dir, strerror(e));
    }
    *f = fd;
    return EVB_SUCCESS;
}

/* flock with op; 0, or the errno that refused it (EWOULDBLOCK: held elsewhere, with LOCK_NB). */
static int lock_take(int f, int op) {
    while (flock(f, op) != 0)
        if (errno != EINTR) return errno;
    return 0;
}

static int lock_fail(const char *dir, int f, int e) {
    close(f);
    if (e == EWOULDBLOCK)
        EVB_ERRORF(EVB_EIO, "%s: in use by another evobudget process (hint: wait for it to finish, or use "
                   "another directory)", dir);
    EVB_ERRORF(EVB_EIO, "%s: cannot lock: %s", dir, strerror(e));
}

int evb_lock_dir(const char *dir, int mode, int wait, int *fd) {
    int f, st = lock_open(dir, mode, &f);
    *fd = -1;
    if (st || f < 0) return st;
    int e = lock_take(f, (mode == EVB_LOCK_EXCLUSIVE ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB));
    if (e) return lock_fail(dir, f, e);
    *fd = f;
    return EVB_SUCCESS;
}

int evb_lock_dir_waiting(const char *dir, int mode, void (*on_wait)(const char *dir), int *fd) {
    int f, st = lock_open(dir, mode, &f);
    *fd = -1;
    if (st || f < 0) return st;
    int op = mode == EVB_LOCK_EXCLUSIVE ? LOCK_EX : LOCK_SH;
    int e = lock_take(f, op | LOCK_NB);
    if (e == EWOULDBLOCK) {
        if (on_wait) on_wait(dir);
        e = lock_take(f, op);
    }
    if (e) return lock_fail(dir, f, e);
    *fd = f;
    return EVB_SUCCESS;
}

void evb_unlock_dir(int fd) {
    if (fd >= 0) close(fd);
}
