#define _GNU_SOURCE
/* test_worker_limits.c -- the worker protocol's limits and process groups (evaluators/worker.c), through
 * `evobudget search --problem FILE --fitness-cmd`:
 * - a worker that sends a 1 GiB string, the header of an array of 2^32-1 elements, or 100 nested arrays is
 *   refused at the header: reported by name with the limit, restarted, and after the retries the run stops
 *   in one error line; the largest resident size of evobudget and its workers stays far below what was sent;
 * - a worker behind a shell (`WORKER & wait`), a worker that forks a child and then hangs, and a worker
 *   that leaves a child sleeping for good all end with their whole process group: once evobudget has
 *   exited, no process of theirs is alive, and a reader of evobudget's stderr sees its end when evobudget
 *   exits; the runs that a restart cures give the same best.json as the built-in fitness;
 * - a worker that stops reading its stdin while a request larger than the pipe's buffer is written (8000
 *   units; the worker shrinks its pipe to 4 KiB) is timed out and restarted like one that does not answer,
 *   instead of blocking evobudget.
 * Needs /usr/bin/python3 with python3-msgpack (setup.sh installs it); skips (77) without them. */
#include "testing.h"
#include "fixtures.h"
#include "problem_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FAULTY "/usr/bin/python3 " EVB_SOURCE_DIR "/tests/tools/faulty_worker.py"
#define SEARCH "--seed 2 --generations 20 --offspring 8"

static char tmp_dir[1024], prob[1200];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

typedef struct outcome {
    int rc;
    long max_rss_kb;   /* evobudget's largest resident size */
    double lag;        /* seconds from evobudget's exit to the end of its stderr for a reader; -1: none in 30 s */
} outcome;

/* Runs `evobudget search` with extra flags into tmp_dir/name, its stderr read through a pipe (copied to
 * tmp_dir/name.err) until end-of-file; killed after 300 s. */
static outcome search(const char *name, const char *extra) {
    outcome o = {-1, -1, -1};
    char cmd[4096], out[1200];
    snprintf(cmd, sizeof cmd, "exec '%s' search --problem %s " SEARCH " %s --out %s/%s", EVB_CLI, prob, extra, tmp_dir, name);
    snprintf(out, sizeof out, "%s/%s.err", tmp_dir, name);
    int pfd[2];
    if (pipe(pfd)) return o;
    double t0 = now(), exited = -1, eof = -1;
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(pfd[1], 2);
        close(pfd[0]); close(pfd[1]); close(null);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fopen(out, "w");
    char buf[4096];
    struct rusage ru;
    int st;
    while (eof < 0 || exited < 0) {
        struct pollfd pf = {pfd[0], POLLIN, 0};
        if (eof < 0 && poll(&pf, 1, 100) > 0) {
            ssize_t n = read(pfd[0], buf, sizeof buf);
            if (n <= 0) eof = now();
            else if (f) fwrite(buf, 1, (size_t)n, f);
        } else if (eof >= 0) {
            struct timespec ts = {0, 100000000L};
            nanosleep(&ts, NULL);
        }
        if (exited < 0 && wait4(pid, &st, WNOHANG, &ru) == pid) {
            exited = now();
            o.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            o.max_rss_kb = ru.ru_maxrss;
        }
        if (exited >= 0 && now() - exited > 30) break;                 /* something else holds the pipe */
        if (exited < 0 && now() - t0 > 300) { kill(pid, SIGKILL); t0 = 1e30; } /* then reaped above */
    }
    if (f) fclose(f);
    close(pfd[0]);
    if (eof >= 0) o.lag = eof > exited ? eof - exited : 0;
    return o;
}

static int stderr_has(const char *name, const char *text) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "grep -q -- '%s' %s/%s.err", text, tmp_dir, name);
    return sh(cmd) == 0;
}

static int same_best(const char *a, const char *b) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cmp -s %s/%s/best.json %s/%s/best.json", tmp_dir, a, tmp_dir, b);
    return sh(cmd) == 0;
}

/* Live processes whose command line holds tmp_dir (every worker of this test carries it in its state path);
 * with kill_them, they are killed, so that a failing check leaves nothing behind. */
static int survivors(int kill_them) {
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid == getpid()) continue;
        char p[64], line[8192], stat[512];
        snprintf(p, sizeof p, "/proc/%ld/stat", pid);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        size_t k = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[k] = 0;
        char *rp = strrchr(stat, ')');
        if (!rp || rp[1] != ' ' || rp[2] == 'Z') continue; /* a zombie is dead */
        snprintf(p, sizeof p, "/proc/%ld/cmdline", pid);
        f = fopen(p, "r");
        if (!f) continue;
        k = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        for (size_t i = 0; i < k; i++) if (!line[i]) line[i] = ' ';
        line[k] = 0;
        if (strstr(line, tmp_dir)) {
            n++;
            if (kill_them) kill((pid_t)pid, SIGKILL);
        }
    }
    if (d) closedir(d);
    return n;
}

static int settled_survivors(void) {
    struct timespec ts = {0, 200000000L};
    nanosleep(&ts, NULL); /* SIGKILL is delivered by then */
    int n = survivors(0);
    if (n) survivors(1);
    return n;
}

int main(void) {
    if (sh("/usr/bin/python3 -c 'import msgpack' > /dev/null 2>&1") != 0) {
        printf("SKIP test_worker_limits: /usr/bin/python3 with msgpack is missing (hint: ./setup.sh installs python3-msgpack)\n");
        return 77;
    }
    char *t = fixture_tmpdir();
    snprintf(tmp_dir, sizeof tmp_dir, "%s", t);
    snprintf(prob, sizeof prob, "%s/problem.json", tmp_dir);
    double budget;
    problem_fixture_write(prob, 1e-9, &budget);
    char extra[2048];

    outcome b = search("builtin", "");
    EVB_CHECK(b.rc == 0, "the built-in additive fitness (largest resident size %ld kB)", b.max_rss_kb);

    /* messages beyond the limits */
    static const struct { const char *mode, *said; } big[] = {
        {"huge_string", "sent a message of more than 1048576 bytes (the limit)"},
        {"huge_array", "sent an array of 4294967295 elements (the limit is 65536)"},
        {"deep", "sent arrays or maps nested deeper than 16 levels (the limit)"},
    };
    for (int i = 0; i < 3; i++) {
        snprintf(extra, sizeof extra, "--worker-retries 2 --fitness-cmd '" FAULTY " %s 5 %s/state_%s'", big[i].mode, tmp_dir, big[i].mode);
        outcome o = search(big[i].mode, extra);
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "grep -c 'restarting it' %s/%s.err | grep -qx 3 && tail -1 %s/%s.err | grep -q 'error: worker .*%s, 3 times for one candidate; the run stops'",
                 tmp_dir, big[i].mode, tmp_dir, big[i].mode, big[i].said);
        EVB_CHECK(o.rc == 1 && stderr_has(big[i].mode, big[i].said) && sh(cmd) == 0,
                  "%s: reported with the limit (\"%s\"), restarted 3 times, then the run stops in one error line (exit %d)",
                  big[i].mode, big[i].said, o.rc);
        EVB_CHECK(o.max_rss_kb > 0 && o.max_rss_kb < 400 * 1024, "%s: evobudget's largest resident size %ld kB (the built-in run's: %ld kB; 1 GiB was offered)",
                  big[i].mode, o.max_rss_kb, b.max_rss_kb);
        EVB_CHECK(settled_survivors() == 0, "%s: no process of the workers is left", big[i].mode);
    }

    /* process groups */
    static const struct { const char *name, *cmd, *what; } groups[] = {
        /* a shell gives a background command /dev/null as stdin unless told otherwise: fd 3 keeps the pipe */
        {"shim", "exec 3<&0; " FAULTY " hang_once 10 %s/state_shim <&3 & wait", "a worker behind a shell that hangs once"},
        {"fork_hang", FAULTY " fork_hang 10 %s/state_fork", "a worker that forks a child, then hangs once"},
        {"fork_daemon", FAULTY " fork_daemon 0 %s/state_daemon", "a worker that leaves a child sleeping for good"},
        {"shim_end", "exec 3<&0; " FAULTY " fork_daemon 0 %s/state_shim_end <&3 & wait", "a worker behind a shell that leaves a child sleeping"},
    };
    for (int i = 0; i < 4; i++) {
        char c[1500];
        snprintf(c, sizeof c, groups[i].cmd, tmp_dir);
        snprintf(extra, sizeof extra, "--worker-timeout 3 --workers 2 --fitness-cmd '%s'", c);
        outcome o = search(groups[i].name, extra);
        int left = settled_survivors();
        EVB_CHECK(o.rc == 0 && same_best("builtin", groups[i].name), "%s: the run ends as the built-in one (exit %d)", groups[i].what, o.rc);
        EVB_CHECK(left == 0 && o.lag >= 0 && o.lag < 10,
                  "%s: %d processes left after the run; a reader of its stderr saw the end %.1f s after its exit (-1: not in 30 s)", groups[i].what, left, o.lag);
    }

    /* a worker that stops reading: 8000 units make a request larger than the 4 KiB it leaves its pipe */
    snprintf(prob, sizeof prob, "%s/big.json", tmp_dir);
    FILE *f = fopen(prob, "w");
    if (f) {
        fprintf(f, "{\"format\": 1, \"budget\": %d, \"tolerance\": 1e-9, \"units\": [", 8000 * 10 + 4000);
        for (int u = 0; u < 8000; u++)
            fprintf(f, "%s{\"name\": \"u%d\", \"levels\": [{\"cost\": 10, \"fitness\": 0}, {\"cost\": 11, \"fitness\": %g}]}", u ? ", " : "", u, u % 2 ? 0.5 : 1.0);
        fprintf(f, "]}\n");
        fclose(f);
    }
    outcome bb = search("big_builtin", "--generations 1 --offspring 2");
    snprintf(extra, sizeof extra, "--generations 1 --offspring 2 --worker-timeout 3 --fitness-cmd '" FAULTY " no_read 0 %s/state_no_read'", tmp_dir);
    outcome nr = search("no_read", extra);
    EVB_CHECK(bb.rc == 0 && nr.rc == 0 && same_best("big_builtin", "no_read") && stderr_has("no_read", "did not read its request in time; restarting it"),
              "a worker that stops reading an 8000-unit request: timed out, restarted, the same best.json as the built-in fitness (exit %d)", nr.rc);
    EVB_CHECK(settled_survivors() == 0, "and no process of the workers is left");
    if (!getenv("EVB_KEEP")) fixture_rmdir(t);
    free(t);
    return evb_test_summary();
}
