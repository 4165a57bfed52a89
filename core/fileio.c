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

int evb_lock_dir(const char *dir, int mode, int wait, int *fd) {
    *fd = -1;
    size_t len = strlen(dir) + 8;
    char *p = malloc(len);
    if (!p) EVB_ERROR("out of memory", EVB_ENOMEM);
    snprintf(p, len, "%s/.lock", dir);
    int f = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0 && mode == EVB_LOCK_SHARED) f = open(p, O_RDONLY | O_CLOEXEC); /* a read-only directory */
    if (f < 0) {
        int e = errno;
        free(p);
        if (e == EACCES || e == EROFS) return EVB_SUCCESS; /* nobody can write here, so nobody can race us */
        EVB_ERRORF(EVB_EIO, "%s: cannot open lock file: %s", dir, strerror(e));
    }
    free(p);
    int op = (mode == EVB_LOCK_EXCLUSIVE ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
    while (flock(f, op) != 0) {
        if (errno == EINTR) continue;
        int e = errno;
        close(f);
        if (e == EWOULDBLOCK)
            EVB_ERRORF(EVB_EIO, "%s: in use by another evobudget process (hint: wait for it to finish, or use "
                       "another directory)", dir);
        EVB_ERRORF(EVB_EIO, "%s: cannot lock: %s", dir, strerror(e));
    }
    *fd = f;
    return EVB_SUCCESS;
}

void evb_unlock_dir(int fd) {
    if (fd >= 0) close(fd);
}
