/* fileio.c -- atomic writes and directory locks (see core/fileio.h). */
#define _GNU_SOURCE
#include "core/fileio.h"

#include "evobudget/evb_status.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <signal.h>
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

struct copy { FILE *in; const char *src, *dst; };

static int copy_into(FILE *out, void *ctx) {
    const struct copy *c = ctx;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, c->in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            int e = errno ? errno : EIO;
            EVB_ERRORF(EVB_EIO, "%s: write failed: %s%s", c->dst, strerror(e), evb_write_hint(e));
        }
    if (ferror(c->in)) EVB_ERRORF(EVB_EIO, "%s: read failed: %s (hint: check the file and the device holding it)", c->src, strerror(errno));
    return EVB_SUCCESS;
}

int evb_copy_atomic(const char *src, const char *dst) {
    struct copy c = {fopen(src, "rb"), src, dst};
    if (!c.in)
        EVB_ERRORF(EVB_EIO, "%s: cannot open: %s (hint: %s)", src, strerror(errno),
                   errno == ENOENT ? "it was removed meanwhile; run again" : "check that it is readable");
    int st = evb_write_atomic_with(dst, copy_into, &c);
    fclose(c.in);
    return st;
}

// ---- the atomic directory write (see fileio.h) ----

int evb_dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 1;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d))) empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

static int remove_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)ftw;
    return (flag == FTW_DP ? rmdir(p) : unlink(p)) != 0 && errno != ENOENT ? -1 : 0;
}

/* Removes the tree at p without following symbolic links; 0 or -1 with errno. */
static int remove_tree(const char *p) {
    struct stat sb;
    if (lstat(p, &sb) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(sb.st_mode)) return unlink(p);
    return nftw(p, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

int evb_dir_remove_tree(const char *path) {
    errno = 0;
    if (remove_tree(path) != 0) {
        int e = errno ? errno : EIO;
        EVB_ERRORF(EVB_EIO, "%s: cannot remove: %s (hint: check its permissions and remove it by hand)", path, strerror(e));
    }
    return EVB_SUCCESS;
}

/* Removes p, or names it in st->left (with the reason) when that fails. */
static void remove_or_leave(evb_dir_stage *st, const char *p) {
    errno = 0;
    if (remove_tree(p) == 0) return;
    st->left_errno = errno ? errno : EIO;
    snprintf(st->left, sizeof st->left, "%s", p);
}

int evb_dir_resolve(const char *path, char *canon, size_t n) {
    char buf[PATH_MAX];
    if (realpath(path, buf)) {
        if (strlen(buf) >= n) EVB_ERRORF(EVB_EIO, "%s: its path is too long (hint: choose a shorter one)", path);
        snprintf(canon, n, "%s", buf);
        return EVB_SUCCESS;
    }
    if (errno != ENOENT) EVB_ERRORF(EVB_EIO, "%s: %s (hint: choose a directory you can write)", path, strerror(errno));
    char copy[PATH_MAX], copy2[PATH_MAX];
    if (strlen(path) >= sizeof copy) EVB_ERRORF(EVB_EIO, "%s: its path is too long (hint: choose a shorter one)", path);
    snprintf(copy, sizeof copy, "%s", path);
    snprintf(copy2, sizeof copy2, "%s", path);
    size_t len = strlen(copy);
    while (len > 1 && copy[len - 1] == '/') { len--; copy[len] = copy2[len] = '\0'; }
    const char *base = basename(copy2), *parent = dirname(copy);
    if (!realpath(parent, buf))
        EVB_ERRORF(EVB_EIO, "%s: its parent directory %s: %s (hint: create it first)", path, parent, strerror(errno));
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strlen(buf) + strlen(base) + 2 > n)
        EVB_ERRORF(EVB_EIO, "%s cannot be resolved (hint: give the directory's path)", path);
    snprintf(canon, n, "%s%s%s", buf, strcmp(buf, "/") ? "/" : "", base);
    return EVB_SUCCESS;
}

/* 1 when the directory or file `in` (an absolute, resolved path) is `dir` or lies inside it: dev and inode of
 * dir compared with in's and each of its ancestors'. */
static int lies_within(const char *in, const struct stat *dir) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", in);
    for (;;) {
        struct stat sb;
        if (stat(p, &sb) == 0 && sb.st_dev == dir->st_dev && sb.st_ino == dir->st_ino) return 1;
        char *slash = strrchr(p, '/');
        if (!slash || p[1] == '\0') return 0;
        if (slash == p) slash[1] = '\0';
        else *slash = '\0';
    }
}

int evb_dir_check_apart(const char *target, const char *const *paths, const char *const *what, int n) {
    char tc[PATH_MAX];
    int st = evb_dir_resolve(target, tc, sizeof tc);
    if (st) return st;
    struct stat tsb;
    int exists = stat(tc, &tsb) == 0;
    for (int i = 0; i < n; i++) {
        char canon[PATH_MAX];
        struct stat psb;
        if (!paths[i] || !realpath(paths[i], canon) || stat(canon, &psb) != 0) continue;
        const char *how = NULL;
        if (exists && tsb.st_dev == psb.st_dev && tsb.st_ino == psb.st_ino) how = "is";
        else if (S_ISDIR(psb.st_mode) && lies_within(tc, &psb)) how = "lies inside";
        else if (exists && lies_within(canon, &tsb)) how = "contains";
        if (how) EVB_ERRORF(EVB_EINVAL, "%s %s %s %s", target, how, what[i], paths[i]);
    }
    return EVB_SUCCESS;
}

/* Removes the stages and old directories of target left by writers that were killed (their process is gone). */
static void remove_stale(const char *target) {
    char parent[PATH_MAX], base[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", target);
    char *slash = strrchr(parent, '/');
    if (!slash) return;
    snprintf(base, sizeof base, "%s", slash + 1);
    if (slash == parent) slash[1] = '\0';
    else *slash = '\0';
    DIR *d = opendir(parent);
    if (!d) return;
    size_t bl = strlen(base);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *rest = e->d_name + bl;
        if (strncmp(e->d_name, base, bl) != 0 || (strncmp(rest, ".tmp.", 5) != 0 && strncmp(rest, ".old.", 5) != 0)) continue;
        char *end;
        long pid = strtol(rest + 5, &end, 10);
        if (*end || end == rest + 5 || pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[PATH_MAX + 256];
        snprintf(p, sizeof p, "%s/%s", strcmp(parent, "/") ? parent : "", e->d_name);
        remove_tree(p);
    }
    closedir(d);
}

int evb_dir_stage_begin(evb_dir_stage *st, const char *target) {
    memset(st, 0, sizeof *st);
    int s = evb_dir_resolve(target, st->target, sizeof st->target);
    if (s) return s;
    remove_stale(st->target);
    char stage[sizeof st->path];
    snprintf(stage, sizeof stage, "%s.tmp.%ld", st->target, (long)getpid());
    remove_tree(stage);
    if (mkdir(stage, 0755) != 0) {
        int e = errno;
        EVB_ERRORF(EVB_EIO, "%s: cannot create: %s%s", stage, strerror(e), evb_write_hint(e));
    }
    memcpy(st->path, stage, sizeof stage);
    return EVB_SUCCESS;
}

void evb_dir_stage_abort(evb_dir_stage *st) {
    if (st->path[0]) remove_or_leave(st, st->path);
    st->path[0] = '\0';
}

/* The stage to a target that does not exist (RENAME_NOREPLACE where the file system has it). */
static int commit_new(evb_dir_stage *st) {
    int r = renameat2(AT_FDCWD, st->path, AT_FDCWD, st->target, RENAME_NOREPLACE);
    if (r != 0 && (errno == EINVAL || errno == ENOSYS)) r = rename(st->path, st->target);
    if (r == 0) return EVB_SUCCESS;
    int e = errno;
    EVB_ERRORF(EVB_EIO, "%s: cannot rename %s to it: %s%s", st->target, st->path, strerror(e),
               e == EEXIST || e == ENOTEMPTY ? " (hint: another process created it meanwhile; run again)" : evb_write_hint(e));
}

/* The stage over an existing target that must be empty (rename(2) refuses a non-empty directory). */
static int commit_empty(evb_dir_stage *st) {
    if (rename(st->path, st->target) == 0) return EVB_SUCCESS;
    int e = errno;
    EVB_ERRORF(EVB_EIO, "%s: cannot rename %s to it: %s%s", st->target, st->path, strerror(e),
               e == EEXIST || e == ENOTEMPTY ? " (hint: another process wrote into it meanwhile; choose a new directory, or replace it)"
                                             : evb_write_hint(e));
}

/* The stage over an existing target, which is removed after: swapped in one rename, else renamed aside first. */
static int commit_replace(evb_dir_stage *st) {
    if (renameat2(AT_FDCWD, st->path, AT_FDCWD, st->target, RENAME_EXCHANGE) == 0) {
        remove_or_leave(st, st->path); /* the stage's name now holds the old directory */
        return EVB_SUCCESS;
    }
    char old[sizeof st->path];
    snprintf(old, sizeof old, "%s.old.%ld", st->target, (long)getpid());
    remove_tree(old);
    if (rename(st->target, old) != 0 || rename(st->path, st->target) != 0) {
        int e = errno;
        rename(old, st->target); /* the old directory back where it was (a no-op if the first rename failed) */
        EVB_ERRORF(EVB_EIO, "%s: cannot replace it: %s%s", st->target, strerror(e), evb_write_hint(e));
    }
    remove_or_leave(st, old);
    return EVB_SUCCESS;
}

int evb_dir_stage_commit(evb_dir_stage *st, int replace) {
    if (!st->path[0]) EVB_ERROR("evb_dir_stage_commit: no stage (hint: call evb_dir_stage_begin first)", EVB_EINVAL);
    int fd = open(st->path, O_RDONLY | O_DIRECTORY);
    int synced = fd >= 0 && fsync(fd) == 0;
    int e = errno;
    if (fd >= 0) close(fd);
    int s = EVB_SUCCESS;
    if (!synced) s = EVB_RAISEF(EVB_EIO, "%s: cannot sync: %s%s", st->path, strerror(e), evb_write_hint(e));
    struct stat sb;
    int exists = lstat(st->target, &sb) == 0;
    if (!s) s = !exists ? commit_new(st) : replace ? commit_replace(st) : commit_empty(st);
    if (s) { evb_dir_stage_abort(st); return s; }
    st->path[0] = '\0';
    return evb_fsync_parent(st->target);
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
