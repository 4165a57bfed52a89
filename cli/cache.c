/* cache.c -- `evobudget cache list|size|clear`: the level databases search keeps under the cache directory
 * (--cache DIR, else $XDG_CACHE_HOME/evobudget, else ~/.cache/evobudget), and removing them. The options and
 * the printing live here; reading the directory and removing a database under its lock is the library's
 * (evb_db_dir_scan, evb_db_dir_remove in evb_db.h: what counts as a level database, and what is never
 * touched). */
#define _POSIX_C_SOURCE 200809L
#include "cli/cli.h"
#include "evobudget/evb_db.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *cache_dir(const opts *o, char *buf, size_t n) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (o->cache) snprintf(buf, n, "%s", o->cache);
    else if (xdg && xdg[0]) snprintf(buf, n, "%s/evobudget", xdg);
    else snprintf(buf, n, "%s/.cache/evobudget", home && home[0] ? home : ".");
    return buf;
}

/* The cache directory into dir[n] and what it holds into *d; 0, or an exit code after one line on stderr. */
static int cache_scan(const opts *o, char *dir, size_t n, evb_db_dir **d) {
    *d = NULL;
    if (strlen(cache_dir(o, dir, n)) + 1 >= n) return refuse("the cache directory's path is too long (%s...) (hint: give a shorter --cache DIR)", dir);
    int st = evb_db_dir_scan(dir, d);
    if (st == EVB_EIO) return fprintf(stderr, "%s: %s (hint: --cache DIR names the cache directory)\n", cmd_name, evb_last_error()), 1;
    return st ? fail(st) : 0;
}

// ---- list, size ----

/* "2025-01-31 14:05" (local time), or an ISO 8601 UTC time "2025-01-31T13:05:00Z" when iso. */
static const char *when(time_t t, int iso, char *buf, size_t n) {
    struct tm tm;
    if (!t || !(iso ? gmtime_r(&t, &tm) : localtime_r(&t, &tm))) snprintf(buf, n, "-");
    else strftime(buf, n, iso ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M", &tm);
    return buf;
}

/* One database of the list as JSON; "db" is its path under the cache directory dir. */
static json_t *db_json(const char *dir, const evb_db_dir_entry *e) {
    char t[32];
    json_t *j = json_pack("{s:o, s:I, s:i, s:s, s:s, s:s}", "db", json_sprintf("%s/%s", dir, e->name), "bytes", (json_int_t)e->bytes,
                          "levels", e->levels, "model", e->model_fp, "calib", e->calib_fp, "modified", when((time_t)e->mtime, 1, t, sizeof t));
    if (e->levels < 0) json_object_set_new(j, "error", json_string(e->error ? e->error : ""));
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
    evb_db_dir *d;
    if ((rc = cache_scan(&o, dir, sizeof dir, &d))) return rc;
    int n = d->n, n_other = d->n_other;
    if (o.json) {
        json_t *a = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(a, db_json(dir, &d->entries[i]));
        json_t *j = json_pack("{s:s, s:b, s:i, s:I, s:i, s:o}", "cache", dir, "exists", d->exists, "databases", n,
                              "bytes", (json_int_t)d->bytes, "other_entries", n_other, "list", a);
        evb_db_dir_free(d);
        return print_json(j);
    }
    printf("%s: %d level database%s, %.2f MB%s\n", dir, n, n == 1 ? "" : "s", d->bytes / 1e6, d->exists ? "" : " (the directory does not exist yet)");
    for (int i = 0; i < n; i++) {
        const evb_db_dir_entry *e = &d->entries[i];
        char t[32], lv[32];
        if (e->levels < 0) snprintf(lv, sizeof lv, "unreadable");
        else snprintf(lv, sizeof lv, "%d levels", e->levels);
        printf("  %10.2f MB  %-11s %s  %s  model %s, calib %s\n", e->bytes / 1e6, lv, when((time_t)e->mtime, 0, t, sizeof t),
               e->name, e->model_fp[0] ? e->model_fp : "?", e->calib_fp[0] ? e->calib_fp : "?");
    }
    if (n_other) printf("  (%d other entr%s under %s: not level databases, never removed)\n", n_other, n_other == 1 ? "y" : "ies", dir);
    evb_db_dir_free(d);
    return 0;
}

static int cache_size(int argc, char **argv) {
    opts o = {0};
    int rc = cache_opts(argc, argv, "--cache --json", "usage: evobudget cache size [--cache DIR] [--json]\n"
                        "  The bytes on disk of the level databases under the cache directory, in all.\n"
                        CACHE_HELP "  --json       one JSON object on stdout\n", &o);
    if (rc) return rc < 0 ? 0 : rc;
    char dir[1100];
    evb_db_dir *d;
    if ((rc = cache_scan(&o, dir, sizeof dir, &d))) return rc;
    uint64_t total = d->bytes;
    int n = d->n, exists = d->exists;
    evb_db_dir_free(d);
    if (o.json) return print_json(json_pack("{s:s, s:b, s:I, s:i}", "cache", dir, "exists", exists, "bytes", (json_int_t)total, "databases", n));
    printf("%.2f MB in %d level database%s under %s\n", total / 1e6, n, n == 1 ? "" : "s", dir);
    return 0;
}

// ---- clear ----

/* Removes every database of d: writes the bytes freed, and a JSON array of those left in place with why (a
 * line on stderr for each). Returns how many were removed. */
static int clear_all(const char *dir, const evb_db_dir *d, uint64_t *freed, json_t *kept) {
    int removed = 0;
    *freed = 0;
    for (int i = 0; i < d->n; i++) {
        const evb_db_dir_entry *e = &d->entries[i];
        if (evb_db_dir_remove(dir, e->name) == EVB_SUCCESS) { removed++; *freed += e->bytes; continue; }
        fprintf(stderr, "%s: %s/%s: left in place: %s\n", cmd_name, dir, e->name, evb_last_error());
        json_array_append_new(kept, json_pack("{s:o, s:s}", "db", json_sprintf("%s/%s", dir, e->name), "reason", evb_last_error()));
    }
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
    evb_db_dir *d;
    if ((rc = cache_scan(&o, dir, sizeof dir, &d))) return rc;
    uint64_t total = d->bytes, freed = 0;
    int n = d->n;
    if (n && !o.yes) {
        evb_db_dir_free(d);
        return refuse("clear would remove %d level database%s (%.2f MB, %llu bytes) under %s; nothing was removed (hint: "
                      "'evobudget cache list' shows them; add --yes to remove them)", n, n == 1 ? "" : "s", total / 1e6,
                      (unsigned long long)total, dir);
    }
    json_t *kept = json_array();
    int removed = clear_all(dir, d, &freed, kept);
    evb_db_dir_free(d);
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
