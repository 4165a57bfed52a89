/* dbdir.c -- the level databases under a cache directory: reading what it holds, and removing a database
 * under its writer lock (see evb_db.h).
 *
 * Everything below the cache directory goes through opendir/fstatat/unlinkat relative to descriptors opened
 * with O_NOFOLLOW, so a symbolic link swapped in under it is never followed. The writer lock is taken by
 * path (core/fileio.c's evb_lock_dir, the one lock every writer takes) and then checked to be the .lock of
 * the very directory opened: a directory swapped in between the two is refused, not emptied. */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700
#include "evobudget/evb_db.h"
#include "evobudget/evb_status.h"
#include "core/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_FILE "index.msgpack"  /* compressors/db.c's index: what makes a directory a level database */
#define LOCK_FILE ".lock"           /* core/fileio.c's evb_lock_dir */

// ---- reading a directory ----

/* Whether name is one of the files a level database is made of: its index, its lock, a payload
 * (u<unit>_<method>_<level>.bin), or a killed writer's temporary copy of one of them (NAME.tmp.PID.N). */
static int db_file(const char *name) {
    const char *tmp = strstr(name, ".tmp.");
    size_t n = tmp ? (size_t)(tmp - name) : strlen(name);
    if ((n == strlen(INDEX_FILE) && strncmp(name, INDEX_FILE, n) == 0) || (n == 5 && strncmp(name, LOCK_FILE, 5) == 0)) return 1;
    size_t d = 1;
    while (d < n && name[d] >= '0' && name[d] <= '9') d++;
    return name[0] == 'u' && d >= 5 && d < n && name[d] == '_' && n > 4 && strncmp(name + n - 4, ".bin", 4) == 0;
}

static int dot_or_dotdot(const char *name) { return strcmp(name, ".") == 0 || strcmp(name, "..") == 0; }

/* A stream over the entries of the directory dfd refers to, from the first, on a descriptor of its own (a dup
 * would share dfd's read position with every other stream over it); NULL with errno set. */
static DIR *dir_stream(int dfd) {
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0) close(fd);
    return d;
}

/* Sums the blocks of the regular files in the directory dfd refers to into *bytes; counts its entries that are
 * not a database's files (*n_other, the first named in other[cap] when other is not NULL). 0, or -1 with
 * errno set. */
static int dir_usage(int dfd, uint64_t *bytes, int *n_other, char *other, size_t cap) {
    DIR *d = dir_stream(dfd);
    if (!d) return -1;
    struct dirent *de;
    *bytes = 0;
    *n_other = 0;
    while ((de = readdir(d))) {
        if (dot_or_dotdot(de->d_name)) continue;
        struct stat sb;
        int st = fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW);
        if (st == 0 && S_ISREG(sb.st_mode)) *bytes += (uint64_t)sb.st_blocks * 512u;
        if (st != 0 || !db_file(de->d_name) || !(S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode))) {
            if (!*n_other && other) snprintf(other, cap, "%s", de->d_name);  /* a name (<= NAME_MAX) for the message */
            ++*n_other;
        }
    }
    closedir(d);
    return 0;
}

/* The directory name under cfd if it is a level database: its descriptor (O_NOFOLLOW), else -1. */
static int open_db(int cfd, const char *name) {
    struct stat sb;
    if (fstatat(cfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(sb.st_mode)) return -1;
    int dfd = openat(cfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return -1;
    if (fstatat(dfd, INDEX_FILE, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode)) return dfd;
    close(dfd);
    return -1;
}

/* dir/name into *out (malloc'd). */
static int join(const char *dir, const char *name, char **out) {
    size_t len = strlen(dir) + strlen(name) + 2;
    *out = malloc(len);
    if (!*out) EVB_ERROR("out of memory", EVB_ENOMEM);
    int w = snprintf(*out, len, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= len) { free(*out); *out = NULL; EVB_ERRORF(EVB_EINVAL, "%s/%s: cannot form the path", dir, name); }
    return EVB_SUCCESS;
}

// ---- scan ----

/* Fills e from the database at path (its directory open as dfd): size, levels, fingerprints, last change. */
static int describe(int dfd, const char *path, evb_db_dir_entry *e) {
    struct stat sb;
    int n_other;
    if (dir_usage(dfd, &e->bytes, &n_other, NULL, 0) != 0) e->bytes = 0;
    e->mtime = fstatat(dfd, INDEX_FILE, &sb, AT_SYMLINK_NOFOLLOW) == 0 ? (int64_t)sb.st_mtime : 0;
    evb_db *db;
    if (evb_db_open(path, NULL, NULL, 0, &db) != EVB_SUCCESS) {
        e->levels = -1;
        e->error = strdup(evb_last_error());
        if (!e->error) EVB_ERROR("out of memory", EVB_ENOMEM);
        return EVB_SUCCESS;
    }
    e->levels = evb_db_count(db);
    snprintf(e->model_fp, sizeof e->model_fp, "%s", evb_db_model_fingerprint(db));  /* 16 hex digits */
    snprintf(e->calib_fp, sizeof e->calib_fp, "%s", evb_db_calib_fingerprint(db));
    evb_db_close(db);
    return EVB_SUCCESS;
}

/* Adds the database name (its directory open as dfd) to d, growing d->entries[*cap]. */
static int add_entry(evb_db_dir *d, int *cap, const char *cache_dir, const char *name, int dfd) {
    if (d->n == *cap) {
        int c = *cap ? 2 * *cap : 16;
        evb_db_dir_entry *g = realloc(d->entries, sizeof *g * (size_t)c);
        if (!g) EVB_ERROR("out of memory", EVB_ENOMEM);
        d->entries = g;
        *cap = c;
    }
    evb_db_dir_entry *e = &d->entries[d->n];
    memset(e, 0, sizeof *e);
    int w = snprintf(e->name, sizeof e->name, "%s", name);
    if (w < 0 || (size_t)w >= sizeof e->name) EVB_ERRORF(EVB_EINVAL, "%s/%s: name too long", cache_dir, name);
    d->n++;
    char *path;
    int st = join(cache_dir, name, &path);
    if (!st) st = describe(dfd, path, e);
    free(path);
    if (!st) d->bytes += e->bytes;
    return st;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const evb_db_dir_entry *)a)->name, ((const evb_db_dir_entry *)b)->name);
}

/* Reads the entries of the cache directory cfd into d. */
static int scan_entries(int cfd, const char *cache_dir, evb_db_dir *d) {
    DIR *ds = dir_stream(cfd);
    if (!ds) EVB_ERRORF(EVB_EIO, "%s: %s", cache_dir, strerror(errno));
    struct dirent *de;
    int cap = 0, st = EVB_SUCCESS;
    while (!st && (de = readdir(ds))) {
        if (dot_or_dotdot(de->d_name)) continue;
        int dfd = open_db(cfd, de->d_name);
        if (dfd < 0) { d->n_other++; continue; }
        st = add_entry(d, &cap, cache_dir, de->d_name, dfd);
        close(dfd);
    }
    closedir(ds);
    if (!st && d->n) qsort(d->entries, (size_t)d->n, sizeof *d->entries, by_name);
    return st;
}

int evb_db_dir_scan(const char *cache_dir, evb_db_dir **out) {
    *out = NULL;
    evb_db_dir *d = calloc(1, sizeof *d);
    if (!d) EVB_ERROR("out of memory", EVB_ENOMEM);
    int cfd = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), st = EVB_SUCCESS;
    if (cfd < 0 && errno == ENOENT) { *out = d; return EVB_SUCCESS; }
    if (cfd < 0) st = EVB_RAISEF(EVB_EIO, "%s: %s", cache_dir, strerror(errno));
    else {
        d->exists = 1;
        st = scan_entries(cfd, cache_dir, d);
        close(cfd);
    }
    if (st) { evb_db_dir_free(d); return st; }
    *out = d;
    return EVB_SUCCESS;
}

void evb_db_dir_free(evb_db_dir *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) free(d->entries[i].error);
    free(d->entries);
    free(d);
}

// ---- remove ----

/* Removes the database's files (payloads and temporary files, then the index, then the lock) from the
 * directory dfd refers to. 0, or -1 with errno set. */
static int unlink_db_files(int dfd) {
    DIR *d = dir_stream(dfd);
    if (!d) return -1;
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        if (!db_file(de->d_name) || strcmp(de->d_name, INDEX_FILE) == 0 || strcmp(de->d_name, LOCK_FILE) == 0) continue;
        if (unlinkat(dfd, de->d_name, 0) != 0 && errno != ENOENT) rc = -1;
    }
    closedir(d);
    if (!rc && unlinkat(dfd, INDEX_FILE, 0) != 0 && errno != ENOENT) rc = -1;
    if (!rc && unlinkat(dfd, LOCK_FILE, 0) != 0 && errno != ENOENT) rc = -1;
    return rc;
}

/* Takes the writer lock of the database at path (its directory open as dfd) without waiting, into *lock,
 * and checks that it is the lock file of that very directory. */
static int lock_db(int dfd, const char *path, int *lock) {
    if (evb_lock_dir(path, EVB_LOCK_EXCLUSIVE, 0, lock) != EVB_SUCCESS) {
        if (strstr(evb_last_error(), "in use")) EVB_ERROR("in use by another evobudget process (a build is running)", EVB_EIO);
        EVB_ERRORF(EVB_EIO, "%s", evb_last_error());
    }
    struct stat held, own;
    if (*lock >= 0 && (fstat(*lock, &held) != 0 || fstatat(dfd, LOCK_FILE, &own, AT_SYMLINK_NOFOLLOW) != 0 ||
                       held.st_dev != own.st_dev || held.st_ino != own.st_ino)) {
        evb_unlock_dir(*lock);
        *lock = -1;
        EVB_ERROR("its lock file is not its own (a link, or the directory changed while it was being locked)", EVB_EIO);
    }
    return EVB_SUCCESS;
}

/* Removes the database (its directory open as dfd, name under cfd) once it holds only a database's files. */
static int remove_locked(int cfd, const char *name, int dfd) {
    uint64_t bytes;
    int n_other;
    char other[256] = "";
    if (dir_usage(dfd, &bytes, &n_other, other, sizeof other) != 0) EVB_ERRORF(EVB_EIO, "%s", strerror(errno));
    if (n_other)
        EVB_ERRORF(EVB_EFORMAT, "holds %d entr%s that no level database has (%s)", n_other, n_other == 1 ? "y" : "ies", other);
    if (unlink_db_files(dfd) != 0 || unlinkat(cfd, name, AT_REMOVEDIR) != 0) EVB_ERRORF(EVB_EIO, "%s", strerror(errno));
    return EVB_SUCCESS;
}

int evb_db_dir_remove(const char *cache_dir, const char *name) {
    if (!name[0] || strchr(name, '/') || dot_or_dotdot(name)) EVB_ERROR("not a level database's name", EVB_EINVAL);
    int cfd = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cfd < 0) EVB_ERRORF(EVB_EIO, "%s", strerror(errno));
    int dfd = open_db(cfd, name), lock = -1, st;
    char *path = NULL;
    if (dfd < 0) st = EVB_RAISEF(EVB_EINVAL, "no longer a level database");
    else if (!(st = join(cache_dir, name, &path)) && !(st = lock_db(dfd, path, &lock))) {
        st = remove_locked(cfd, name, dfd);
        evb_unlock_dir(lock);
    }
    free(path);
    if (dfd >= 0) close(dfd);
    close(cfd);
    return st;
}
