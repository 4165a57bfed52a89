#define _GNU_SOURCE
/* test_cache_cli.c -- `evobudget cache list|size|clear` end to end, on a cache directory written here: two level
 * databases built by `db build`, a third holding a file of the user's beside its index, and entries that are
 * not databases (a directory, a file, a symbolic link to a database outside the cache). list and size count
 * the three databases and nothing else, with the levels and fingerprints `db info` reports and bytes that add
 * up; the default directory follows $XDG_CACHE_HOME, then $HOME; clear removes nothing without --yes, leaves a
 * database whose lock another process holds and the one holding a user's file, and never touches the rest. */
#include "testing.h"
#include "fixtures.h"
#include "shell.h"
#include "standin.h"

#include <jansson.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static char MODEL[1024], CALIB[1024], TMP[512];

/* Runs `evobudget ARGS` with the environment prefix env ("" for none); its exit code, stdout and stderr
 * (malloc'd; the caller frees them). */
static int run(const char *env, const char *args, char **out, char **err) {
    char cmd[4096], o[600], e[600];
    snprintf(o, sizeof o, "%s/stdout", TMP);
    snprintf(e, sizeof e, "%s/stderr", TMP);
    snprintf(cmd, sizeof cmd, "%s '%s' %s > '%s' 2> '%s'", env, EVB_CLI, args, o, e);
    int rc = sh(cmd);
    *out = slurp(o);
    *err = slurp(e);
    return rc;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

/* `evobudget ARGS` that must exit `want` and print one JSON object on stdout; the object (NULL otherwise). */
static json_t *run_json(const char *what, const char *env, const char *args, int want) {
    char *out, *err;
    int rc = run(env, args, &out, &err);
    json_t *j = out ? json_loads(out, 0, NULL) : NULL;
    EVB_CHECK(rc == want && j && count_lines(out) == 1, "%s: exit %d (%d), one JSON object on stdout %s", what, rc, want,
              err && err[0] ? strtok(err, "\n") : "");
    free(out); free(err);
    return j;
}

/* A refusal: exit want, exactly one line on stderr containing each of needles[] (NULL-terminated), nothing on stdout. */
static void refused(const char *what, const char *args, int want, const char *const *needles) {
    char *out, *err;
    int rc = run("", args, &out, &err), has = 1;
    for (int i = 0; needles[i]; i++) has = has && err && strstr(err, needles[i]);
    EVB_CHECK(rc == want && count_lines(err) == 1 && has && out && !out[0], "%s: exit %d (%d), one line: %s", what, rc, want,
              err && err[0] ? strtok(err, "\n") : "(none)");
    free(out); free(err);
}

static int build(const char *out, const char *level) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' db build --model %s --calib %s %s --seq-len 64 --calib-windows 4 --out %s > /dev/null 2>&1",
             EVB_CLI, MODEL, CALIB, level, out);
    return sh(cmd);
}

/* The entry of list's "list" for the database directory path, NULL if absent. */
static json_t *listed(json_t *list, const char *path) {
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(list, "list"), i, x)
        if (strcmp(json_string_value(json_object_get(x, "db")), path) == 0) return x;
    return NULL;
}

/* list and size of the cache (three databases and three other entries). */
static void check_list(const char *cache, const char *a, const char *model_fp) {
    char args[2048];
    snprintf(args, sizeof args, "cache list --cache %s --json", cache);
    json_t *j = run_json("cache list --json", "", args, 0), *e = j ? listed(j, a) : NULL;
    json_int_t sum = 0;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(j, "list"), i, x) sum += json_integer_value(json_object_get(x, "bytes"));
    EVB_CHECK(j && json_integer_value(json_object_get(j, "databases")) == 3 && json_array_size(json_object_get(j, "list")) == 3 &&
              json_integer_value(json_object_get(j, "other_entries")) == 3,
              "cache list: the 3 level databases, and 3 other entries (a directory, a file, a link) not counted as databases");
    EVB_CHECK(e && json_integer_value(json_object_get(e, "levels")) == 35 && model_fp &&
              strcmp(json_string_value(json_object_get(e, "model")), model_fp) == 0 && json_integer_value(json_object_get(e, "bytes")) > 100000,
              "cache list: a database's levels (35), model fingerprint (%s) and bytes (%lld)", model_fp ? model_fp : "-",
              e ? (long long)json_integer_value(json_object_get(e, "bytes")) : -1LL);
    EVB_CHECK(j && sum == json_integer_value(json_object_get(j, "bytes")), "cache list: the databases' bytes add up to the total (%lld)", (long long)sum);
    snprintf(args, sizeof args, "cache size --cache %s --json", cache);
    json_t *s = run_json("cache size --json", "", args, 0);
    EVB_CHECK(s && j && json_integer_value(json_object_get(s, "bytes")) == json_integer_value(json_object_get(j, "bytes")) &&
              json_integer_value(json_object_get(s, "databases")) == 3, "cache size: the total list reports, over 3 databases");
    json_decref(s); json_decref(j);
    char *out, *err;
    snprintf(args, sizeof args, "cache list --cache %s", cache);
    int rc = run("", args, &out, &err);
    EVB_CHECK(rc == 0 && count_lines(out) == 5 && strstr(out, "3 level databases") && strstr(out, "35 levels") && strstr(out, model_fp ? model_fp : "?"),
              "cache list: a summary line, one line per database with its levels and model, a line on the other entries");
    free(out); free(err);
    snprintf(args, sizeof args, "cache size --cache %s", cache);
    rc = run("", args, &out, &err);
    EVB_CHECK(rc == 0 && count_lines(out) == 1 && strstr(out, " MB in 3 level databases under "), "cache size: one line (%s)", out ? strtok(out, "\n") : "");
    free(out); free(err);
}

/* The default cache directory: $XDG_CACHE_HOME/evobudget, else $HOME/.cache/evobudget. */
static void check_default_dir(const char *a) {
    char env[1200], dir[1200];
    snprintf(dir, sizeof dir, "%s/xdg/evobudget", TMP);
    snprintf(env, sizeof env, "mkdir -p %s && cp -r %s %s/ && XDG_CACHE_HOME=%s/xdg", dir, a, dir, TMP);
    json_t *j = run_json("cache list under XDG_CACHE_HOME", env, "cache list --json", 0);
    EVB_CHECK(j && strcmp(json_string_value(json_object_get(j, "cache")), dir) == 0 && json_integer_value(json_object_get(j, "databases")) == 1,
              "cache list without --cache reads $XDG_CACHE_HOME/evobudget (%s): 1 database", dir);
    json_decref(j);
    snprintf(env, sizeof env, "XDG_CACHE_HOME= HOME=%s/home", TMP);
    snprintf(dir, sizeof dir, "%s/home/.cache/evobudget", TMP);
    j = run_json("cache size under HOME, no cache yet", env, "cache size --json", 0);
    EVB_CHECK(j && strcmp(json_string_value(json_object_get(j, "cache")), dir) == 0 && json_is_false(json_object_get(j, "exists")) &&
              json_integer_value(json_object_get(j, "bytes")) == 0, "cache size without a cache directory: ~/.cache/evobudget, 0 bytes, exit 0");
    json_decref(j);
    j = run_json("cache clear --yes without a cache directory", env, "cache clear --yes --json", 0);
    EVB_CHECK(j && json_integer_value(json_object_get(j, "removed")) == 0, "cache clear --yes with nothing to remove: exit 0, 0 removed");
    json_decref(j);
}

/* clear: nothing without --yes; with it, all but the locked database and the one holding a user's file. */
static void check_clear(const char *cache, const char *a, const char *b, const char *outside) {
    char args[2048], lockp[1200];
    snprintf(args, sizeof args, "cache clear --cache %s", cache);
    refused("cache clear without --yes", args, 2, (const char *const[]){"would remove 3 level databases", "bytes", "--yes", NULL});
    EVB_CHECK(fixture_exists(a, "index.msgpack") && fixture_exists(b, "index.msgpack"), "cache clear without --yes removes nothing");
    snprintf(lockp, sizeof lockp, "%s/.lock", b);  /* another process building into b holds its lock */
    int fd = open(lockp, O_RDWR | O_CREAT, 0644);
    EVB_CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0, "the test holds b's writer lock");
    snprintf(args, sizeof args, "cache clear --cache %s --yes --json", cache);
    json_t *j = run_json("cache clear --yes with b locked", "", args, 1);
    size_t n_kept = json_array_size(json_object_get(j, "kept"));
    EVB_CHECK(j && json_integer_value(json_object_get(j, "removed")) == 1 && n_kept == 2 &&
              json_integer_value(json_object_get(j, "bytes_freed")) > 100000, "cache clear --yes: 1 removed, 2 left in place, exit 1");
    json_decref(j);
    EVB_CHECK(!fixture_exists(cache, "a"), "the unlocked database is gone, its directory with it");
    EVB_CHECK(fixture_exists(b, "index.msgpack") && fixture_exists(b, "u0000_magnitude_s0.500000.bin"), "the locked database is left whole");
    EVB_CHECK(fixture_exists(cache, "mixed/index.msgpack") && fixture_exists(cache, "mixed/mine.txt") && fixture_exists(cache, "mixed/u0000_magnitude_s0.300000.bin"),
              "a database directory holding a user's file is left whole");
    EVB_CHECK(fixture_exists(cache, "notadb/keep.txt") && fixture_exists(cache, "notes.txt") && fixture_exists(cache, "link") && fixture_exists(outside, "index.msgpack") &&
              fixture_exists(outside, "u0000_magnitude_s0.500000.bin"), "what is not a database, and a database linked from outside, are untouched");
    if (fd >= 0) close(fd);
    snprintf(args, sizeof args, "cache clear --cache %s --yes", cache);
    char *out, *err;
    int rc = run("", args, &out, &err);
    EVB_CHECK(rc == 1 && out && strstr(out, "removed 1 level database,") && count_lines(err) == 1 && strstr(err, "mixed: left in place") &&
              strstr(err, "mine.txt"), "cache clear --yes once b is free: exit %d (1), removed 1 (%s), mixed named: %s", rc,
              out ? strtok(out, "\n") : "", err ? strtok(err, "\n") : "");
    free(out); free(err);
    EVB_CHECK(!fixture_exists(cache, "b") && fixture_exists(cache, "mixed/mine.txt"), "b is removed once its lock is free; mixed stays");
}

int main(void) {
    char *tmp = fixture_tmpdir();
    snprintf(TMP, sizeof TMP, "%s", tmp);
    if (standin_or_stories(tmp, MODEL, sizeof MODEL, CALIB, sizeof CALIB) < 0) { printf("FAIL cannot write the stand-in in %s\n", tmp); return 1; }
    char cache[700], a[800], b[800], mixed[800], outside[800], p[900];
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    snprintf(a, sizeof a, "%s/a", cache);
    snprintf(b, sizeof b, "%s/b", cache);
    snprintf(mixed, sizeof mixed, "%s/mixed", cache);
    snprintf(outside, sizeof outside, "%s/outside", tmp);
    mkdir(cache, 0755);
    EVB_CHECK(build(a, "--method rtn --bits 4") == 0 && build(b, "--method magnitude --sparsity 0.5") == 0 &&
              build(mixed, "--method magnitude --sparsity 0.3") == 0 && build(outside, "--method magnitude --sparsity 0.5") == 0,
              "four level databases built, three of them in the cache");
    snprintf(p, sizeof p, "mkdir -p %s/notadb && echo keep > %s/notadb/keep.txt && echo notes > %s/notes.txt && echo mine > %s/mine.txt "
             "&& ln -s %s %s/link", cache, cache, cache, mixed, outside, cache);
    EVB_CHECK(sh(p) == 0, "the cache also holds a directory, a file, a link to a database outside it, and a user's file in a database");
    snprintf(p, sizeof p, "db info %s --json", a);
    json_t *info = run_json("db info of a", "", p, 0);
    check_list(cache, a, json_string_value(json_object_get(info, "model")));
    json_decref(info);
    check_default_dir(a);
    check_clear(cache, a, b, outside);

    /* the command table knows cache: help, suggestions */
    char *out, *err;
    int rc = run("", "--help", &out, &err);
    EVB_CHECK(rc == 0 && out && strstr(out, "\n  cache "), "evobudget --help lists cache");
    free(out); free(err);
    refused("a misspelt command", "cach list", 2, (const char *const[]){"unknown command 'cach'; did you mean 'cache'?", NULL});
    refused("a misspelt cache command", "cache lst", 2, (const char *const[]){"unknown cache command 'lst'; did you mean 'list'?", NULL});
    snprintf(p, sizeof p, "cache list --cache %s/notes.txt", cache);
    refused("--cache naming a file", p, 2, (const char *const[]){"notes.txt is not a directory", "hint:", NULL});
    fixture_rmdir(tmp);
    free(tmp);
    return evb_test_summary();
}
