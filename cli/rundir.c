/* rundir.c -- the run directory of `search`: one writer (a lock), no finished or running run overwritten
 * without --force, a resumed run's parameters checked against its manifest, files written atomically. */
#define _POSIX_C_SOURCE 200809L
#include "cli/cli.h"
#include "cli/rundir.h"
#include "core/fileio.h"
#include "core/json.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int mkdirs(const char *path) {
    char buf[1200];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') { *p = 0; if (mkdir(buf, 0755) && errno != EEXIST) return -1; *p = '/'; }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

int write_text(const char *dir, const char *name, const char *text) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int st = evb_write_atomic(path, text, strlen(text));
    return st ? fail(st) : 0;
}

int write_json(const char *dir, const char *name, json_t *j) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int st = evb_json_write_file(path, j, 1);
    return st ? fail(st) : 0;
}

/* The files a run writes, and the temporary siblings a killed writer leaves (NAME.tmp.PID.N). */
static const char *const run_files[] = {"checkpoint.msgpack", "best.json", "front.csv", "manifest.json", "sweep.json", "log.jsonl"};
enum { N_RUN_FILES = sizeof run_files / sizeof *run_files };

static void remove_files(const char *dir, int tmp_only) {
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        for (int i = 0; i < N_RUN_FILES; i++) {
            size_t n = strlen(run_files[i]);
            int ours = !strncmp(e->d_name, run_files[i], n) && (tmp_only ? !strncmp(e->d_name + n, ".tmp.", 5) : !e->d_name[n]);
            if (!ours) continue;
            char t[1400];
            snprintf(t, sizeof t, "%s/%s", dir, e->d_name);
            unlink(t);
        }
    if (d) closedir(d);
}

static int exists(const char *dir, const char *name) {
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

int rundir_open(const char *dir, const run_flags *f, const char *done_name, const char *resume_name, int *lock_fd) {
    if (f->resume && f->force) return usage_error("--resume continues the run in %s, --force starts it over: give one", dir);
    if (f->resume && !exists(dir, resume_name) && !exists(dir, done_name))
        return usage_error("--resume: %s holds no run to continue (no %s)", dir, strcmp(resume_name, ".") ? resume_name : "such directory");
    if (mkdirs(dir)) return fail(evb_errorf(__FILE__, __LINE__, EVB_EIO, "--out %s: %s", dir, strerror(errno)));
    int st = evb_lock_dir(dir, EVB_LOCK_EXCLUSIVE, 0, lock_fd);
    if (st) return fail(st);
    remove_files(dir, 1);
    /* checked under the lock: the directory cannot change between the check and the run */
    if (!f->resume && !f->force && exists(dir, done_name))
        return usage_error("--out %s already holds a finished run; choose another directory, or --force to overwrite it", dir);
    if (!f->resume && !f->force && exists(dir, "checkpoint.msgpack"))
        return usage_error("--out %s holds a run that did not finish; continue it with --resume, or --force to start over", dir);
    return 0;
}

void rundir_start_over(const char *dir, const run_flags *f) {
    if (f->force) remove_files(dir, 0);
}

int log_truncate(FILE *log, const char *path, int generation) {
    FILE *f = fopen(path, "rb");
    if (!f) return evb_errorf(__FILE__, __LINE__, EVB_EIO, "%s: %s", path, strerror(errno));
    char line[4096];
    long keep = 0;
    int g;
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n') break; /* unfinished (or longer than any line the search writes) */
        if (sscanf(line, "{\"generation\": %d,", &g) == 1 && g > generation) break;
        keep = ftell(f);
    }
    fclose(f);
    fflush(log);
    if (ftruncate(fileno(log), keep)) return evb_errorf(__FILE__, __LINE__, EVB_EIO, "%s: cannot cut it to the checkpoint's generation: %s", path, strerror(errno));
    return EVB_SUCCESS;
}

/* The first member of now that differs from was, as "key" or "search.key"; generations may grow. */
static int differs(const json_t *was, const json_t *now, const char *prefix, char *what, size_t n) {
    static const char *const free_keys[] = {"evobudget", "blas", "model", "calib", "db", "problem", "generations", "token_budget", "fitness_plugin"};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)now, key, v) {
        int skip = 0;
        for (size_t i = 0; i < sizeof free_keys / sizeof *free_keys; i++) skip |= !strcmp(key, free_keys[i]);
        json_t *w = json_object_get(was, key);
        if (skip) continue;
        if (json_is_object(v) && json_is_object(w)) {
            if (differs(w, v, key, what, n)) return 1;
            continue;
        }
        if (w && json_equal(v, w)) continue;
        char *a = w ? json_dumps(w, JSON_ENCODE_ANY | JSON_COMPACT) : NULL, *b = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        snprintf(what, n, "%s%s%s: the run has %.200s, this call %.200s", prefix, prefix[0] ? "." : "", key, a ? a : "nothing", b ? b : "?");
        free(a); free(b);
        return 1;
    }
    return 0;
}

int rundir_manifest(const char *dir, json_t *man, int resume) {
    char p[1400], what[600];
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    json_t *was = resume ? json_load_file(p, 0, NULL) : NULL;
    if (was && differs(was, man, "", what, sizeof what)) {
        json_decref(was);
        return usage_error("--resume: %s was started with other parameters (%s); give the same ones, or --force to start over", dir, what);
    }
    json_decref(was);
    return write_json(dir, "manifest.json", man);
}
