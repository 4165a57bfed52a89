#define _GNU_SOURCE
/* test_export_safety.c -- `evobudget export` writes OUT whole or not at all, on a copy of the demo model
 * (assets/demo): an export leaves OUT loadable and no stage beside it; --force replaces a directory whole; an OUT
 * that is, lies inside or contains the model, the run directory, the database or the configuration is refused
 * in one line and the source is unchanged; a stage left by a killed export is not OUT and is removed by the next
 * export; kill -9 at several moments leaves OUT absent or whole; a full disk (a 4 MB tmpfs, where this process may mount one) and a file size limit (RLIMIT_FSIZE)
 * exit 1 with a hint naming the cause, leave no OUT and no stage, and keep an existing OUT as it was. */
#include "testing.h"
#include "fixtures.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEMO EVB_SOURCE_DIR "/assets/demo"

static char tmp[512];

static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs `evobudget ARGS` (stdout and stderr into tmp/cli_stdout.txt and tmp/cli_stderr.txt); its exit code. */
static int evb(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s > %s/cli_stdout.txt 2> %s/cli_stderr.txt", EVB_CLI, args, tmp, tmp);
    return sh(cmd);
}

static int err_lines(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/cli_stderr.txt", tmp);
    FILE *f = fopen(p, "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF) n += c == '\n';
    if (f) fclose(f);
    return n;
}

static int err_has(const char *what) {
    char p[600], buf[4096] = "";
    snprintf(p, sizeof p, "%s/cli_stderr.txt", tmp);
    FILE *f = fopen(p, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
    return strstr(buf, what) != NULL;
}

static int exists(const char *p) { struct stat sb; return lstat(p, &sb) == 0; }

/* Entries of dir whose name starts with prefix (the stages and old directories of OUT). */
/* `evobudget info` accepts dir as a model. */
static int loads(const char *dir) {
    char args[1200];
    snprintf(args, sizeof args, "info --model %s --json", dir);
    return evb(args) == 0;
}

/* The files of a model or an export, as checksum lines (to see that nothing touched them, or that two exports are the same). */
static void sums(const char *dir, char *out, size_t n) {
    char cmd[1200], p[700];
    snprintf(p, sizeof p, "%s/sums.txt", tmp);
    snprintf(cmd, sizeof cmd, "cd %s 2>/dev/null && md5sum config.json model.safetensors tokenizer.json compression.json > %s 2>&1", dir, p);
    sh(cmd);
    FILE *f = fopen(p, "r");
    size_t k = f ? fread(out, 1, n - 1, f) : 0;
    out[k] = '\0';
    if (f) fclose(f);
}

/* Runs `evobudget ARGS` with a file size limit of limit bytes (SIGXFSZ ignored, so a write past it fails with
 * EFBIG); its exit code. */
static int evb_fsize(const char *args, rlim_t limit) {
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit r = {limit, limit};
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &r) != 0) _exit(99);
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "exec '%s' %s > %s/cli_stdout.txt 2> %s/cli_stderr.txt", EVB_CLI, args, tmp, tmp);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(98);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(void) {
    char *t = fixture_tmpdir();
    snprintf(tmp, sizeof tmp, "%s", t);
    char src[600], cfg[700], args[4000], out[700], p[900], before[1024], after[1024];
    snprintf(src, sizeof src, "%s/src", tmp);
    snprintf(args, sizeof args, "mkdir -p %s && cp %s/config.json %s/model.safetensors %s/tokenizer.json %s/", src, DEMO, DEMO, DEMO, src);
    if (sh(args) != 0) { EVB_CHECK(0, "copy the demo model from %s", DEMO); fixture_rmdir(tmp); return evb_test_summary(); }
    sums(src, before, sizeof before);
    /* a configuration with no levels (a dropped MLP): no database needed */
    snprintf(cfg, sizeof cfg, "%s/cfg.json", tmp);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "{\"model\": \"%s\", \"units\": [], \"drop\": [{\"block\": 1, \"sub\": \"mlp\"}]}\n", src);
    fclose(f);

    /* an export: OUT complete and loadable, nothing beside it */
    snprintf(out, sizeof out, "%s/out", tmp);
    snprintf(args, sizeof args, "export --config %s --out %s --json", cfg, out);
    EVB_CHECK(evb(args) == 0 && loads(out), "export writes %s, which info loads", out);
    snprintf(p, sizeof p, "%s/compression.json", out);
    EVB_CHECK(exists(p) && fixture_count_prefix(tmp, "out.") == 0, "compression.json is there, and no stage or old directory beside OUT");

    /* no --force: a non-empty OUT is refused and left alone */
    snprintf(p, sizeof p, "%s/marker", out);
    fclose(fopen(p, "w"));
    EVB_CHECK(evb(args) == 2 && err_lines() == 1 && exists(p), "a non-empty OUT without --force: exit 2, one line, untouched");
    /* --force replaces it whole: the marker goes, the new export is complete */
    snprintf(args, sizeof args, "export --config %s --out %s --force", cfg, out);
    EVB_CHECK(evb(args) == 0 && !exists(p) && loads(out) && fixture_count_prefix(tmp, "out.") == 0,
              "--force replaces OUT whole (the old directory's files gone, no stage or old directory left)");
    /* an empty directory is replaced too, and a path with a trailing slash names the same directory */
    char empty[700];
    snprintf(empty, sizeof empty, "%s/empty", tmp);
    mkdir(empty, 0755);
    snprintf(args, sizeof args, "export --config %s --out %s/", cfg, empty);
    EVB_CHECK(evb(args) == 0 && loads(empty) && fixture_count_prefix(tmp, "empty.") == 0, "an empty OUT (given as DIR/) is filled");

    /* what export reads is never OUT: the model, inside it, its parent, a symlink to it, the run directory,
     * the database, the directory of the configuration */
    char run[700], db[700], link[700];
    snprintf(run, sizeof run, "%s/run", tmp);
    snprintf(db, sizeof db, "%s/db", tmp);
    snprintf(link, sizeof link, "%s/link", tmp);
    snprintf(args, sizeof args, "mkdir -p %s %s && cp %s %s/best.json && echo '{}' > %s/manifest.json && ln -s %s %s", run, db, cfg, run, run, src, link);
    sh(args);
    struct { const char *out, *flags, *what; } bad[] = {
        {src, "--force", "OUT is the source model"},
        {link, "--force", "OUT is a symbolic link to the source model"},
        {tmp, "--force", "OUT contains the source model"},
        {NULL, "", "OUT lies inside the source model"},
        {run, "--force", "OUT is the run directory of the configuration"},
        {NULL, "--force", "OUT lies inside the database"},
        {db, "--force", "OUT is the database"},
    };
    char inside[700], in_db[700];
    snprintf(inside, sizeof inside, "%s/sub", src);
    snprintf(in_db, sizeof in_db, "%s/x", db);
    bad[3].out = inside;
    bad[5].out = in_db;
    int nb = (int)(sizeof bad / sizeof *bad);
    for (int i = 0; i < nb; i++) {
        const char *c = i == 4 ? run : NULL;
        char cpath[800];
        snprintf(cpath, sizeof cpath, "%s/best.json", run);
        snprintf(args, sizeof args, "export --config %s --db %s --out %s %s", c ? cpath : cfg, db, bad[i].out, bad[i].flags);
        int rc = evb(args);
        sums(src, after, sizeof after);
        snprintf(p, sizeof p, "%s/manifest.json", run);
        EVB_CHECK(rc == 2 && err_lines() == 1 && strcmp(before, after) == 0 && exists(p) && exists(db) && exists(cfg) && !exists(inside),
                  "%s: refused in one line (exit %d), the model, run directory, database and configuration unchanged", bad[i].what, rc);
    }

    /* a stage left by a killed export: OUT absent (nothing to take for a model), and the next export removes it */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    char out2[700], stale[800];
    snprintf(out2, sizeof out2, "%s/out2", tmp);
    snprintf(stale, sizeof stale, "%s.tmp.%ld", out2, (long)dead);
    snprintf(args, sizeof args, "mkdir -p %s && cp %s/config.json %s/", stale, src, stale);
    sh(args);
    EVB_CHECK(!exists(out2), "a killed export's stage is not OUT");
    snprintf(args, sizeof args, "export --config %s --out %s", cfg, out2);
    EVB_CHECK(evb(args) == 0 && loads(out2) && !exists(stale), "the next export writes OUT and removes the dead process's stage");

    /* kill -9 at several moments of an export (the invariant holds whatever the timing): OUT is absent or the
     * whole export, byte for byte the one above; with --force over it, the old or the new one, never a mix */
    char ref[700], sref[1024], sout[1024];
    snprintf(ref, sizeof ref, "%s/out2", tmp);
    sums(ref, sref, sizeof sref);
    int n_kill = 0, n_ok = 0;
    for (int i = 0; i < 8; i++) {
        char killed[700];
        snprintf(killed, sizeof killed, "%s/killed%d", tmp, i % 2);
        if (i % 2) { snprintf(args, sizeof args, "rm -rf %s && cp -r %s %s", killed, ref, killed); sh(args); }
        snprintf(args, sizeof args, "'%s' export --config %s --out %s %s > /dev/null 2>&1 & sleep %.2f; kill -9 $! 2>/dev/null; wait",
                 EVB_CLI, cfg, killed, i % 2 ? "--force" : "", 0.1 * (i + 1));
        sh(args);
        sums(killed, sout, sizeof sout);
        n_kill++;
        n_ok += i % 2 ? strcmp(sout, sref) == 0 : (!exists(killed) || strcmp(sout, sref) == 0);
        snprintf(args, sizeof args, "rm -rf %s", killed);
        sh(args);
    }
    EVB_CHECK(n_ok == n_kill, "kill -9 at %d moments (0.1 to 0.8 s, half with --force over a complete OUT): OUT absent or whole in %d", n_kill, n_ok);

    /* a file size limit of 4 MB (the demo model's weights are 21 MB): EFBIG, exit 1, one line with the hint */
    char out3[700];
    snprintf(out3, sizeof out3, "%s/out3", tmp);
    snprintf(args, sizeof args, "export --config %s --out %s", cfg, out3);
    int rc = evb_fsize(args, 4 << 20);
    EVB_CHECK(rc == 1 && err_lines() == 1 && err_has("ulimit -f") && !exists(out3) && fixture_count_prefix(tmp, "out3") == 0,
              "a file size limit of 4 MB: exit %d (1), one line naming the limit, no OUT and no stage", rc);
    snprintf(args, sizeof args, "export --config %s --out %s --force", cfg, out);
    snprintf(p, sizeof p, "%s/compression.json", out);
    rc = evb_fsize(args, 4 << 20);
    EVB_CHECK(rc == 1 && loads(out) && exists(p) && fixture_count_prefix(tmp, "out.") == 0,
              "the same with --force over a complete OUT: exit %d (1), the old OUT intact, no stage", rc);

    /* a full disk: a 4 MB tmpfs, where this process may mount one (root, or CAP_SYS_ADMIN) */
    char mnt[700];
    snprintf(mnt, sizeof mnt, "%s/small", tmp);
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0) {
        printf("SKIP the full-disk checks: cannot mount a tmpfs at %s (%s); run as root to include them\n", mnt, strerror(errno));
    } else {
        char out4[800], old[900];
        snprintf(out4, sizeof out4, "%s/out", mnt);
        snprintf(args, sizeof args, "export --config %s --out %s", cfg, out4);
        rc = evb(args);
        EVB_CHECK(rc == 1 && err_lines() == 1 && err_has("free disk space") && !exists(out4) && fixture_count_prefix(mnt, "out") == 0,
                  "disk full: exit %d (1), one line with the hint to free space, no OUT and no stage", rc);
        /* an OUT already there (a small directory standing for an earlier export) survives a failed --force */
        snprintf(old, sizeof old, "%s/keep", out4);
        mkdir(out4, 0755);
        fclose(fopen(old, "w"));
        snprintf(args, sizeof args, "export --config %s --out %s --force", cfg, out4);
        rc = evb(args);
        EVB_CHECK(rc == 1 && exists(old) && fixture_count_prefix(mnt, "out") == 1, "disk full with --force: exit %d (1), the old OUT intact, no stage", rc);
        snprintf(args, sizeof args, "export --config %s --out %s --force --dtype bf16", cfg, out4);
        EVB_CHECK(evb(args) == 1 && exists(old), "and in bfloat16 (11 MB): the same");
        umount(mnt);
    }

    sums(src, after, sizeof after);
    EVB_CHECK(strcmp(before, after) == 0, "the source model's files are unchanged after all of it");
    fixture_rmdir(tmp);
    free(t);
    return evb_test_summary();
}
