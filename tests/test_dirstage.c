#define _GNU_SOURCE
/* test_dirstage.c -- core/fileio.h's atomic directory write: a staged directory appears under its target only
 * at the commit, whole; a target that exists is kept until the new one is complete, replaced only when asked
 * (an unasked-for replacement of a non-empty one fails and keeps it); a failure or an abort leaves no stage;
 * stale stages of dead processes are removed and a live one's are not; evb_dir_check_apart refuses a target
 * that is, lies inside or contains a path (through a symbolic link too); evb_dir_remove_tree does not follow
 * symbolic links. */
#include "testing.h"
#include "fixtures.h"
#include "core/fileio.h"
#include "evobudget/evb_status.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int exists(const char *p) { struct stat sb; return lstat(p, &sb) == 0; }

static void put(const char *dir, const char *name, const char *text) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) { fputs(text, f); fclose(f); }
}

/* The contents of dir/name ("" when unreadable). */
static const char *get(const char *dir, const char *name) {
    static char buf[256];
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
    return buf;
}

/* Entries of dir whose name starts with prefix. */
static void staging(const char *tmp) {
    char out[700];
    snprintf(out, sizeof out, "%s/out", tmp);
    evb_dir_stage st;
    /* a new target: the files are in the stage, not under the target, until the commit */
    int s = evb_dir_stage_begin(&st, out);
    char want[800];
    snprintf(want, sizeof want, "%s.tmp.%ld", out, (long)getpid());
    EVB_CHECK(s == EVB_SUCCESS && strcmp(st.path, want) == 0 && exists(st.path) && !exists(out), "begin: the stage %s, no target yet", st.path);
    put(st.path, "a", "new");
    EVB_CHECK(!exists(out), "a file in the stage is not under the target before the commit");
    s = evb_dir_stage_commit(&st, 0);
    EVB_CHECK(s == EVB_SUCCESS && strcmp(get(out, "a"), "new") == 0 && st.path[0] == '\0' && !st.left[0] && fixture_count_prefix(tmp, "out") == 1,
              "commit: the target holds the file, no stage left beside it (status %d)", s);

    /* an existing non-empty target: kept while the new one is written; without replace the commit fails,
     * keeps it and leaves no stage */
    s = evb_dir_stage_begin(&st, out);
    put(st.path, "b", "newer");
    EVB_CHECK(s == EVB_SUCCESS && strcmp(get(out, "a"), "new") == 0 && exists(st.path), "the old target is whole while the stage is written");
    s = evb_dir_stage_commit(&st, 0);
    EVB_CHECK(s == EVB_EIO && strstr(evb_last_error(), "hint") && strcmp(get(out, "a"), "new") == 0 && fixture_count_prefix(tmp, "out") == 1,
              "commit over a non-empty target without replace: EVB_EIO (%s), the old one kept, no stage", evb_last_error());
    /* with replace: the new one whole in its place, the old one gone, nothing beside it */
    s = evb_dir_stage_begin(&st, out);
    put(st.path, "b", "newer");
    EVB_CHECK(strcmp(get(out, "a"), "new") == 0, "the old target is whole until the commit");
    s = evb_dir_stage_commit(&st, 1);
    char pa[800];
    snprintf(pa, sizeof pa, "%s/a", out);
    EVB_CHECK(s == EVB_SUCCESS && !exists(pa) && strcmp(get(out, "b"), "newer") == 0 && !st.left[0] && fixture_count_prefix(tmp, "out") == 1,
              "commit with replace: only the new files, no stage or old directory left (status %d)", s);

    /* an empty existing target is filled without replace; a trailing slash names the same directory */
    char empty[700], slash[710];
    snprintf(empty, sizeof empty, "%s/empty", tmp);
    snprintf(slash, sizeof slash, "%s/", empty);
    mkdir(empty, 0755);
    s = evb_dir_stage_begin(&st, slash);
    put(st.path, "c", "x");
    EVB_CHECK(s == EVB_SUCCESS && strcmp(st.target, empty) == 0, "DIR/ resolves to DIR (%s)", st.target);
    s = evb_dir_stage_commit(&st, 0);
    EVB_CHECK(s == EVB_SUCCESS && strcmp(get(empty, "c"), "x") == 0 && fixture_count_prefix(tmp, "empty") == 1, "an empty target is filled");

    /* abort: the stage removed, the target untouched */
    s = evb_dir_stage_begin(&st, out);
    put(st.path, "d", "never");
    evb_dir_stage_abort(&st);
    EVB_CHECK(s == EVB_SUCCESS && !exists(want) && st.path[0] == '\0' && !st.left[0] && strcmp(get(out, "b"), "newer") == 0 &&
              fixture_count_prefix(tmp, "out") == 1, "abort: no stage, the target as it was");

    /* a target whose parent is missing: EVB_EIO with a hint, nothing created */
    char orphan[800];
    snprintf(orphan, sizeof orphan, "%s/missing/out", tmp);
    s = evb_dir_stage_begin(&st, orphan);
    EVB_CHECK(s == EVB_EIO && strstr(evb_last_error(), "create it first") && st.path[0] == '\0' && !exists(orphan),
              "a missing parent: EVB_EIO (%s), no stage", evb_last_error());
    /* commit without a stage: refused */
    EVB_CHECK(evb_dir_stage_commit(&st, 0) == EVB_EINVAL, "commit with no stage: EVB_EINVAL");
}

/* Stale stages: a dead process's stage and old directory are removed by the next begin, a live one's kept. */
static void stale(const char *tmp) {
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    char out[700], d1[800], d2[800], live[800];
    snprintf(out, sizeof out, "%s/st", tmp);
    snprintf(d1, sizeof d1, "%s.tmp.%ld", out, (long)dead);
    snprintf(d2, sizeof d2, "%s.old.%ld", out, (long)dead);
    snprintf(live, sizeof live, "%s.tmp.%ld", out, (long)getppid());
    mkdir(d1, 0755); mkdir(d2, 0755); mkdir(live, 0755);
    put(d1, "f", "x");
    evb_dir_stage st;
    int s = evb_dir_stage_begin(&st, out);
    EVB_CHECK(s == EVB_SUCCESS && !exists(d1) && !exists(d2) && exists(live), "begin removes a dead process's stage and old directory, keeps a live one's");
    evb_dir_stage_abort(&st);
    rmdir(live);
}

static void apart(const char *tmp) {
    char src[700], inside[800], link[700], other[700], file[800];
    snprintf(src, sizeof src, "%s/src", tmp);
    snprintf(inside, sizeof inside, "%s/sub", src);
    snprintf(link, sizeof link, "%s/link", tmp);
    snprintf(other, sizeof other, "%s/other", tmp);
    snprintf(file, sizeof file, "%s/model.bin", src);
    mkdir(src, 0755);
    put(src, "model.bin", "w");
    if (symlink(src, link) != 0) EVB_CHECK(0, "symlink %s", link);
    const char *paths[] = {NULL, src}, *what[] = {"nothing", "the source"};
    struct { const char *target, *how; } c[] = {{src, " is "}, {link, " is "}, {inside, " lies inside "}, {tmp, " contains "}};
    for (int i = 0; i < 4; i++) {
        int s = evb_dir_check_apart(c[i].target, paths, what, 2);
        EVB_CHECK(s == EVB_EINVAL && strstr(evb_last_error(), c[i].how) && strstr(evb_last_error(), "the source"),
                  "%s: refused (%s)", c[i].target, evb_last_error());
    }
    const char *fpaths[] = {file}, *fwhat[] = {"the model file"};
    EVB_CHECK(evb_dir_check_apart(tmp, fpaths, fwhat, 1) == EVB_EINVAL && strstr(evb_last_error(), "contains the model file"),
              "a directory holding a file that is read: refused (%s)", evb_last_error());
    EVB_CHECK(evb_dir_check_apart(other, paths, what, 2) == EVB_SUCCESS, "a sibling directory is apart");
    char orphan[800];
    snprintf(orphan, sizeof orphan, "%s/missing/x", tmp);
    EVB_CHECK(evb_dir_check_apart(orphan, paths, what, 2) == EVB_EIO, "an unresolvable target: EVB_EIO, not a refusal");

    /* remove_tree: a link inside the tree is removed, not what it points to */
    char tree[700];
    snprintf(tree, sizeof tree, "%s/tree", tmp);
    mkdir(tree, 0755);
    put(tree, "f", "x");
    char l2[800];
    snprintf(l2, sizeof l2, "%s/to_src", tree);
    if (symlink(src, l2) != 0) EVB_CHECK(0, "symlink %s", l2);
    EVB_CHECK(evb_dir_remove_tree(tree) == EVB_SUCCESS && !exists(tree) && strcmp(get(src, "model.bin"), "w") == 0,
              "remove_tree removes the tree and leaves what its links point to");
    EVB_CHECK(evb_dir_remove_tree(tree) == EVB_SUCCESS, "remove_tree of a missing path: success");
    EVB_CHECK(evb_dir_is_empty(other) && !evb_dir_is_empty(src), "is_empty: a missing directory counts as empty, src does not");
}

int main(void) {
    char *tmp = fixture_tmpdir();
    if (!tmp) { EVB_CHECK(0, "a temporary directory"); return evb_test_summary(); }
    staging(tmp);
    stale(tmp);
    apart(tmp);
    fixture_rmdir(tmp);
    free(tmp);
    return evb_test_summary();
}
