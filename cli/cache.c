/* cache.c -- `evobudget cache list|size|clear`: the level databases search keeps, and removing them.
 *
 * search builds the levels it needs into one level database per model and calibration set under the cache
 * directory (--cache DIR, else $XDG_CACHE_HOME/evobudget, else ~/.cache/evobudget), and reuses them; nothing
 * else ever removes them, so the directory only grows. These commands say what it holds and give it back.
 *
 * A directory under the cache directory counts as a level database when it is a real directory (not a
 * symbolic link) holding index.msgpack as a regular file: the index compressors/db.c writes. Nothing else
 * under the cache directory is counted or touched. clear removes a database only
 *   - under its writer lock (DIR/.lock, taken without waiting as db build takes it): a database that is being
 *     built is left in place and named, and the exit code is 1;
 *   - when every file in it is one a database is made of (index.msgpack, .lock, payloads uNNNN_*.bin and the
 *     temporary files *.tmp.* of killed writers): a directory holding anything else is left whole, and named.
 * The payloads go first and the index last, so a clear that is killed leaves either a database that db build
 * repairs or one that a second clear finishes. A search that is scoring candidates (a reader: it holds no
 * lock) loses the levels it has not read yet, and stops with an error naming the missing payload.
 *
 * Everything goes through opendir/fstatat/unlinkat relative to a descriptor opened with O_NOFOLLOW, so a
 * symbolic link swapped in under the cache directory is never followed. */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700
#include "cli/cli.h"
#include "core/fileio.h"
#include "evobudget/evb_db.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define INDEX_FILE "index.msgpack"  /* compressors/db.c's index: what makes a directory a level database */

/* One level database under the cache directory. */
typedef struct cache_db {
    char name[256];         /* its directory's name under the cache directory */
    char path[1400];        /* cache directory / name */
    uint64_t bytes;         /* on disk: the blocks its files take, as du counts them */
    int levels;             /* entries of its index; -1 when the index cannot be read */
    char model[17], calib[17];  /* fingerprints the index records ("" when unreadable) */
    time_t modified;        /* the index's last change */
    char why[200];          /* why the index cannot be read */
} cache_db;

const char *cache_dir(const opts *o, char *buf, size_t n) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (o->cache) snprintf(buf, n, "%s", o->cache);
    else if (xdg && xdg[0]) snprintf(buf, n, "%s/evobudget", xdg);
    else snprintf(buf, n, "%s/.cache/evobudget", home && home[0] ? home : ".");
    return buf;
}

// ---- reading the cache directory ----

/* Whether name is one of the files a level database is made of: its index, its lock, a payload
 * (u<unit>_<method>_<level>.bin), or a killed writer's temporary copy of one of them (NAME.tmp.PID.N). */
static int db_file(const char *name) {
    const char *tmp = strstr(name, ".tmp.");
    size_t n = tmp ? (size_t)(tmp - name) : strlen(name);
    if ((n == strlen(INDEX_FILE) && strncmp(name, INDEX_FILE, n) == 0) || (n == 5 && strncmp(name, ".lock", 5) == 0)) return 1;
    size_t d = 1;
    while (d < n && name[d] >= '0' && name[d] <= '9') d++;
    return name[0] == 'u' && d >= 5 && d < n && name[d] == '_' && n > 4 && strncmp(name + n - 4, ".bin", 4) == 0;
}

/* A stream over the entries of the directory dfd refers to, from the first, on a descriptor of its own (a dup
 * would share dfd's read position with every other stream over it); NULL with errno set. */
static DIR *dir_stream(int dfd) {
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0) close(fd);
    return d;
}

/* Sums the blocks of the regular files in the directory dfd refers to into *bytes; counts its entries that are
 * not a database's files (*n_other, the first named in other[cap]). 0, or -1 with errno set. */
static int dir_usage(int dfd, uint64_t *bytes, int *n_other, char *other, size_t cap) {
    DIR *d = dir_stream(dfd);
    if (!d) return -1;
    struct dirent *de;
    *bytes = 0;
    *n_other = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        struct stat sb;
        int st = fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW);
        if (st == 0 && S_ISREG(sb.st_mode)) *bytes += (uint64_t)sb.st_blocks * 512u;
        if (st != 0 || !db_file(de->d_name) || !(S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode))) {
            if (!*n_other && other) snprintf(other, cap, "%s", de->d_name);
            ++*n_other;
        }
    }
    closedir(d);
    return 0;
}

/* Fills d from the database in d->path (its directory open as dfd): size, levels, fingerprints, last change. */
static void db_describe(int dfd, cache_db *d) {
    struct stat sb;
    int n_other;
    if (dir_usage(dfd, &d->bytes, &n_other, NULL, 0) != 0) d->bytes = 0;
    d->modified = fstatat(dfd, INDEX_FILE, &sb, AT_SYMLINK_NOFOLLOW) == 0 ? sb.st_mtime : 0;
    evb_db *db;
    int s = evb_db_open(d->path, NULL, NULL, 0, &db);
    if (s) {
        d->levels = -1;
        snprintf(d->why, sizeof d->why, "%s", evb_last_error());
        return;
    }
    d->levels = evb_db_count(db);
    snprintf(d->model, sizeof d->model, "%s", evb_db_model_fingerprint(db));
    snprintf(d->calib, sizeof d->calib, "%s", evb_db_calib_fingerprint(db));
    evb_db_close(db);
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

static int by_name(const void *a, const void *b) { return strcmp(((const cache_db *)a)->name, ((const cache_db *)b)->name); }

/* The level databases under dir into *dbs[*n] (malloc'd, sorted by name) and how many other entries it holds
 * (*n_other). A cache directory that does not exist holds nothing (*exists 0). Returns 0, or an exit code
 * after one line on stderr. */
static int cache_scan(const char *dir, cache_db **dbs, int *n, int *n_other, int *exists) {
    *dbs = NULL; *n = 0; *n_other = 0; *exists = 1;
    int cfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cfd < 0 && errno == ENOENT) { *exists = 0; return 0; }
    if (cfd < 0) return fprintf(stderr, "%s: %s: %s (hint: --cache DIR names the cache directory)\n", cmd_name, dir, strerror(errno)), 1;
    DIR *d = dir_stream(cfd);
    if (!d) { close(cfd); return fprintf(stderr, "%s: %s: %s\n", cmd_name, dir, strerror(errno)), 1; }
    struct dirent *de;
    int cap = 0, rc = 0;
    while (!rc && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        int dfd = open_db(cfd, de->d_name);
        if (dfd < 0) { ++*n_other; continue; }
        if (*n == cap) {
            cache_db *g = realloc(*dbs, sizeof **dbs * (size_t)(cap = cap ? 2 * cap : 16));
            if (!g) { close(dfd); rc = fail(EVB_RAISEF(EVB_ENOMEM, "out of memory")); break; }
            *dbs = g;
        }
        cache_db *c = &(*dbs)[(*n)++];
        memset(c, 0, sizeof *c);
        snprintf(c->name, sizeof c->name, "%s", de->d_name);
        snprintf(c->path, sizeof c->path, "%s/%s", dir, de->d_name);
        db_describe(dfd, c);
        close(dfd);
    }
    closedir(d);
    close(cfd);
    if (rc) { free(*dbs); *dbs = NULL; *n = 0; return rc; }
    if (*n) qsort(*dbs, (size_t)*n, sizeof **dbs, by_name);
    return 0;
}

static uint64_t total_bytes(const cache_db *dbs, int n) {
    uint64_t t = 0;
    for (int i = 0; i < n; i++) t += dbs[i].bytes;
    return t;
}

// ---- list, size ----

/* "2025-01-31 14:05" (local time), or an ISO 8601 UTC time "2025-01-31T13:05:00Z" when iso. */
static const char *when(time_t t, int iso, char *buf, size_t n) {
    struct tm tm;
    if (!t || !(iso ? gmtime_r(&t, &tm) : localtime_r(&t, &tm))) snprintf(buf, n, "-");
    else strftime(buf, n, iso ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M", &tm);
    return buf;
}

static json_t *db_json(const cache_db *c) {
    char t[32];
    json_t *j = json_pack("{s:s, s:I, s:i, s:s, s:s, s:s}", "db", c->path, "bytes", (json_int_t)c->bytes, "levels", c->levels,
                          "model", c->model, "calib", c->calib, "modified", when(c->modified, 1, t, sizeof t));
    if (c->levels < 0) json_object_set_new(j, "error", json_string(c->why));
    return j;
}

/* The options every cache command takes; 0, or an exit code (also after --help, printed from help). */
static int cache_opts(int argc, char **argv, const char *accepted, const char *help, opts *o) {
    int rc = parse_opts(argc, argv, accepted, o);
    if (o->help && !rc) printf("%s", help);
    if (o->help || rc) return rc ? rc : -1;
    if (o->cache && !is_dir(o->cache)) return refuse("--cache %s is not a directory (hint: give the directory search's --cache names)", o->cache);
    return 0;
}

#define CACHE_HELP "  --cache DIR  the cache directory (default $XDG_CACHE_HOME/evobudget, else ~/.cache/evobudget)\n"

static int cache_list(int argc, char **argv) {
    opts o = {0};
    int rc = cache_opts(argc, argv, "--cache --json", "usage: evobudget cache list [--cache DIR] [--json]\n"
                        "  One line per level database under the cache directory: its size on disk, its levels, the\n"
                        "  fingerprints of the model and calibration set it was built for (the index records no path), and\n"
                        "  when it last changed.\n" CACHE_HELP "  --json       one JSON object on stdout\n", &o);
    if (rc) return rc < 0 ? 0 : rc;
    char dir[1100];
    cache_db *dbs;
    int n, n_other, exists;
    if ((rc = cache_scan(cache_dir(&o, dir, sizeof dir), &dbs, &n, &n_other, &exists))) return rc;
    uint64_t total = total_bytes(dbs, n);
    if (o.json) {
        json_t *a = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(a, db_json(&dbs[i]));
        free(dbs);
        return print_json(json_pack("{s:s, s:b, s:i, s:I, s:i, s:o}", "cache", dir, "exists", exists, "databases", n,
                                    "bytes", (json_int_t)total, "other_entries", n_other, "list", a));
    }
    printf("%s: %d level database%s, %.2f MB%s\n", dir, n, n == 1 ? "" : "s", total / 1e6, exists ? "" : " (the directory does not exist yet)");
    for (int i = 0; i < n; i++) {
        char t[32], lv[32];
        if (dbs[i].levels < 0) snprintf(lv, sizeof lv, "unreadable");
        else snprintf(lv, sizeof lv, "%d levels", dbs[i].levels);
        printf("  %10.2f MB  %-11s %s  %s  model %s, calib %s\n", dbs[i].bytes / 1e6, lv, when(dbs[i].modified, 0, t, sizeof t),
               dbs[i].name, dbs[i].model[0] ? dbs[i].model : "?", dbs[i].calib[0] ? dbs[i].calib : "?");
    }
    if (n_other) printf("  (%d other entr%s under %s: not level databases, never removed)\n", n_other, n_other == 1 ? "y" : "ies", dir);
    free(dbs);
    return 0;
}

static int cache_size(int argc, char **argv) {
    opts o = {0};
    int rc = cache_opts(argc, argv, "--cache --json", "usage: evobudget cache size [--cache DIR] [--json]\n"
                        "  The bytes on disk of the level databases under the cache directory, in all.\n"
                        CACHE_HELP "  --json       one JSON object on stdout\n", &o);
    if (rc) return rc < 0 ? 0 : rc;
    char dir[1100];
    cache_db *dbs;
    int n, n_other, exists;
    if ((rc = cache_scan(cache_dir(&o, dir, sizeof dir), &dbs, &n, &n_other, &exists))) return rc;
    uint64_t total = total_bytes(dbs, n);
    free(dbs);
    if (o.json) return print_json(json_pack("{s:s, s:b, s:I, s:i}", "cache", dir, "exists", exists, "bytes", (json_int_t)total, "databases", n));
    printf("%.2f MB in %d level database%s under %s\n", total / 1e6, n, n == 1 ? "" : "s", dir);
    return 0;
}

// ---- clear ----

/* Removes the database's files (payloads and temporary files, then the index, then the lock) from the
 * directory dfd refers to. 0, or -1 with errno set. */
static int unlink_db_files(int dfd) {
    DIR *d = dir_stream(dfd);
    if (!d) return -1;
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        if (!db_file(de->d_name) || strcmp(de->d_name, INDEX_FILE) == 0 || strcmp(de->d_name, ".lock") == 0) continue;
        if (unlinkat(dfd, de->d_name, 0) != 0 && errno != ENOENT) rc = -1;
    }
    closedir(d);
    if (!rc && unlinkat(dfd, INDEX_FILE, 0) != 0 && errno != ENOENT) rc = -1;
    if (!rc && unlinkat(dfd, ".lock", 0) != 0 && errno != ENOENT) rc = -1;
    return rc;
}

/* Removes the level database name under the cache directory cfd (its path for messages), under its writer
 * lock. 0, or -1 with the reason it was left in place in why[n]. */
static int remove_db(int cfd, const cache_db *c, char *why, size_t n) {
    int dfd = open_db(cfd, c->name), lock = -1;
    if (dfd < 0) { snprintf(why, n, "no longer a level database"); return -1; }
    if (evb_lock_dir(c->path, EVB_LOCK_EXCLUSIVE, 0, &lock) != 0) {
        snprintf(why, n, "%s", strstr(evb_last_error(), "in use") ? "in use by another evobudget process (a build is running)" : evb_last_error());
        close(dfd);
        return -1;
    }
    uint64_t bytes;
    int n_other, rc = 0;
    char other[256] = "";
    if (dir_usage(dfd, &bytes, &n_other, other, sizeof other) != 0) { snprintf(why, n, "%s", strerror(errno)); rc = -1; }
    else if (n_other) { snprintf(why, n, "holds %d entr%s that no level database has (%s)", n_other, n_other == 1 ? "y" : "ies", other); rc = -1; }
    else if (unlink_db_files(dfd) != 0 || unlinkat(cfd, c->name, AT_REMOVEDIR) != 0) { snprintf(why, n, "%s", strerror(errno)); rc = -1; }
    evb_unlock_dir(lock);
    close(dfd);
    return rc;
}

/* Removes every database of dbs[n]: writes the bytes freed, and a JSON array of those left in place with why
 * (a line on stderr for each). Returns how many were removed. */
static int clear_all(const char *dir, const cache_db *dbs, int n, uint64_t *freed, json_t *kept) {
    int cfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), removed = 0;
    *freed = 0;
    for (int i = 0; i < n; i++) {
        char why[400];
        if (cfd < 0) snprintf(why, sizeof why, "%s", strerror(errno));
        if (cfd >= 0 && remove_db(cfd, &dbs[i], why, sizeof why) == 0) { removed++; *freed += dbs[i].bytes; continue; }
        fprintf(stderr, "%s: %s: left in place: %s\n", cmd_name, dbs[i].path, why);
        json_array_append_new(kept, json_pack("{s:s, s:s}", "db", dbs[i].path, "reason", why));
    }
    if (cfd >= 0) close(cfd);
    return removed;
}

static int cache_clear(int argc, char **argv) {
    opts o = {0};
    int rc = cache_opts(argc, argv, "--cache --yes --json", "usage: evobudget cache clear [--cache DIR] [--yes] [--json]\n"
                        "  Removes the level databases under the cache directory (search builds them again when it needs\n"
                        "  them). Without --yes it removes nothing and says what it would remove. Only directories holding a\n"
                        "  level database's index are removed, each under its lock: one being built is left in place.\n"
                        CACHE_HELP "  --yes        remove them\n  --json       one JSON object on stdout\n", &o);
    if (rc) return rc < 0 ? 0 : rc;
    char dir[1100];
    cache_db *dbs;
    int n, n_other, exists;
    if ((rc = cache_scan(cache_dir(&o, dir, sizeof dir), &dbs, &n, &n_other, &exists))) return rc;
    uint64_t total = total_bytes(dbs, n), freed = 0;
    if (n && !o.yes) {
        free(dbs);
        return refuse("clear would remove %d level database%s (%.2f MB, %llu bytes) under %s; nothing was removed (hint: "
                      "'evobudget cache list' shows them; add --yes to remove them)", n, n == 1 ? "" : "s", total / 1e6,
                      (unsigned long long)total, dir);
    }
    json_t *kept = json_array();
    int removed = clear_all(dir, dbs, n, &freed, kept);
    free(dbs);
    rc = json_array_size(kept) ? 1 : 0;
    if (o.json) {
        int prc = print_json(json_pack("{s:s, s:i, s:I, s:o}", "cache", dir, "removed", removed, "bytes_freed", (json_int_t)freed, "kept", kept));
        return rc ? rc : prc;
    }
    json_decref(kept);
    if (!n) printf("%s: no level databases to remove\n", dir);
    else printf("%s: removed %d level database%s, %.2f MB freed\n", dir, removed, removed == 1 ? "" : "s", freed / 1e6);
    return rc;
}

// ---- the command ----

static const struct { const char *name; int (*run)(int, char **); const char *help; } cache_commands[] = {
    {"list", cache_list, "one line per level database under the cache directory: size, levels, model, last change"},
    {"size", cache_size, "the bytes the level databases take on disk, in all"},
    {"clear", cache_clear, "remove the level databases (--yes; each under its lock)"},
};

int cmd_cache(int argc, char **argv) {
    enum { N = sizeof cache_commands / sizeof *cache_commands };
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        FILE *f = argc < 1 ? stderr : stdout;
        fprintf(f, "usage: evobudget cache <command> [--cache DIR] [--json]\n");
        for (size_t i = 0; i < N; i++) fprintf(f, "  %-6s %s\n", cache_commands[i].name, cache_commands[i].help);
        return argc < 1 ? 2 : 0;
    }
    const char *names[N];
    for (size_t i = 0; i < N; i++) {
        names[i] = cache_commands[i].name;
        if (strcmp(argv[0], cache_commands[i].name) == 0) return cache_commands[i].run(argc - 1, argv + 1);
    }
    char hint[128];
    return usage_error("unknown cache command '%s'%s", argv[0], did_you_mean(argv[0], names, N, hint, sizeof hint));
}
