#define _GNU_SOURCE
/* test_worker_cli.c -- `evobudget search --problem FILE --fitness-cmd`: the same problem with a known optimum
 * solved through the built-in fitness, the Python worker and the C worker of examples/worker/ gives the same
 * best candidate and front; workers that exit mid-run or hang once are restarted and the run ends as an
 * undisturbed one; workers that print bytes that are not msgpack results, answer NaN or answer with the wrong
 * id are reported by name, retried a bounded number of times, and stop the run with a clear error and its
 * checkpoint intact: resumed with a good worker, the run ends as an undisturbed one. Needs /usr/bin/python3
 * with python3-msgpack (setup.sh installs it). */
#include "testing.h"
#include "fixtures.h"
#include "problem_fixture.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifndef EVB_C_WORKER
#define EVB_C_WORKER ""
#endif
#define PY_WORKER "/usr/bin/python3 " EVB_SOURCE_DIR "/examples/worker/additive_worker.py"
#define FAULTY "/usr/bin/python3 " EVB_SOURCE_DIR "/tests/tools/faulty_worker.py"
#define SEARCH "--seed 2 --generations 150 --offspring 16"

static char tmp_dir[1024], prob[1200];

static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int search(const char *name, const char *extra) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' search --problem %s " SEARCH " %s --out %s/%s > %s/%s.out 2> %s/%s.err", EVB_CLI, prob, extra,
             tmp_dir, name, tmp_dir, name, tmp_dir, name);
    return sh(cmd);
}

static int same(const char *a, const char *b, const char *file) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cmp -s %s/%s/%s %s/%s/%s", tmp_dir, a, file, tmp_dir, b, file);
    return sh(cmd) == 0;
}

static int stderr_has(const char *name, const char *text) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "grep -q -- '%s' %s/%s.err", text, tmp_dir, name);
    return sh(cmd) == 0;
}

int main(void) {
    char *t = fixture_tmpdir();
    snprintf(tmp_dir, sizeof tmp_dir, "%s", t);
    snprintf(prob, sizeof prob, "%s/problem.json", tmp_dir);
    double budget, opt = problem_fixture_write(prob, 1e-9, &budget);
    char extra[2048], cmd[4096];

    EVB_CHECK(search("builtin", "") == 0, "the built-in additive fitness");
    snprintf(cmd, sizeof cmd, "grep -q '\"fitness\": %.6f' %s/builtin/best.json", opt, tmp_dir);
    EVB_CHECK(sh(cmd) == 0, "reaches the DP optimum %.6f", opt);
    EVB_CHECK(search("python", "--fitness-cmd '" PY_WORKER "' --workers 2") == 0, "two Python workers (examples/worker/additive_worker.py)");
    EVB_CHECK(same("builtin", "python", "best.json") && same("builtin", "python", "front.csv"), "the same best.json and front.csv as the built-in fitness");
    snprintf(extra, sizeof extra, "--fitness-cmd %s --workers 2", EVB_C_WORKER);
    EVB_CHECK(search("c", extra) == 0, "two C workers (examples/worker/additive_worker.c)");
    EVB_CHECK(same("builtin", "c", "best.json") && same("builtin", "c", "front.csv"), "the same best.json and front.csv");

    /* incidents that a restart cures */
    snprintf(extra, sizeof extra, "--fitness-cmd '" FAULTY " exit_once 30 %s/state1'", tmp_dir);
    EVB_CHECK(search("exit_once", extra) == 0 && same("builtin", "exit_once", "best.json"), "a worker that exits mid-run: restarted, the same best.json");
    EVB_CHECK(stderr_has("exit_once", "exited; restarting it and retrying the candidate (attempt 1 of 3)"), "the exit is reported with the worker's pid and command");
    /* 3 s: long enough that a loaded machine's slow (restarted) Python worker is not taken for a hung one */
    snprintf(extra, sizeof extra, "--worker-timeout 3 --fitness-cmd '" FAULTY " hang_once 30 %s/state2'", tmp_dir);
    EVB_CHECK(search("hang_once", extra) == 0 && same("builtin", "hang_once", "best.json"), "a worker that hangs: killed after --worker-timeout, restarted, the same best.json");
    EVB_CHECK(stderr_has("hang_once", "did not answer in time"), "the hang is reported");

    /* incidents that do not go away: the run stops, its checkpoint resumes with a good worker */
    static const char *modes[][2] = {{"garbage", "not a result map"}, {"nan", "returned fitness nan"}, {"wrong_id", "answered id"}};
    for (int i = 0; i < 3; i++) {
        snprintf(extra, sizeof extra, "--worker-retries 2 --fitness-cmd '" FAULTY " %s 600 %s/state_%s'", modes[i][0], tmp_dir, modes[i][0]);
        int rc = search(modes[i][0], extra);
        snprintf(cmd, sizeof cmd, "grep -c 'restarting it' %s/%s.err | grep -qx 3 && tail -1 %s/%s.err | grep -q 'error: worker .* 3 times for one candidate; the run stops'",
                 tmp_dir, modes[i][0], tmp_dir, modes[i][0]);
        EVB_CHECK(rc == 1 && stderr_has(modes[i][0], modes[i][1]) && sh(cmd) == 0,
                  "%s: reported (\"%s\"), restarted 3 times, then the run stops in one error line", modes[i][0], modes[i][1]);
        snprintf(cmd, sizeof cmd, "test -f %s/%s/checkpoint.msgpack && test ! -f %s/%s/best.json", tmp_dir, modes[i][0], tmp_dir, modes[i][0]);
        EVB_CHECK(sh(cmd) == 0, "%s: the checkpoint of the last whole generation is there", modes[i][0]);
        snprintf(cmd, sizeof cmd, "'%s' search --problem %s " SEARCH " --resume --fitness-cmd '" PY_WORKER "' --out %s/%s > /dev/null 2>&1",
                 EVB_CLI, prob, tmp_dir, modes[i][0]);
        EVB_CHECK(sh(cmd) == 0 && same("builtin", modes[i][0], "best.json"), "%s: resumed with a good worker, the same best.json as the undisturbed run", modes[i][0]);
    }
    snprintf(cmd, sizeof cmd, "'%s' search --problem %s --fitness-cmd /nonexistent/worker --out %s/none 2> %s/none.err > /dev/null", EVB_CLI, prob, tmp_dir, tmp_dir);
    int rc = sh(cmd);
    EVB_CHECK(rc == 1 && stderr_has("none", "/nonexistent/worker"), "a worker command that cannot start: exit 1, named");
    if (!getenv("EVB_KEEP")) fixture_rmdir(t);
    free(t);
    return evb_test_summary();
}
