#define _DEFAULT_SOURCE
/* test_speed_cli.c -- speed targets: structured levels in the level database (stored, read back, damage
 * found, nested), the cost table's file (read back, refused when malformed, stale on another machine), and
 * the program: search --target-speedup with evopress, uniform and FLAP's allocation (FLAP and OBS levels) on
 * the demo model, the configuration's predicted time inside the budget's band, eval timing it against the
 * dense forward, the cached table reused, and bad flags refused in one line. Times are not asserted (they are
 * the machine's): what is checked is what the program computes from them. */
#include "testing.h"
#include "shell.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_timing.h"
#include "evobudget/evb_status.h"
#include "evobudget/evobudget.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEMO EVB_SOURCE_DIR "/assets/demo"
/* A small calibration set and forward shape: the levels' times are measured on it. */
#define SHAPE "--calib-windows 4 --seq-len 64 --batch 2"
#define SMALL SHAPE " --timing-repeats 1"

static json_t *load_json(const char *path) { return json_load_file(path, 0, NULL); }
static double jnum(const json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

/* A structured level stored, read back as it was stored, refused as a weight, and found damaged. */
static void check_db(const char *tmp, const evb_model *m) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/db", tmp);
    evb_db *db = NULL;
    EVB_CHECK(evb_db_open(dir, "0123456789abcdef", "0123456789abcdef", 1, &db) == 0 && evb_db_check_model(db,
            m) == 0, "open a database (%s)",
              evb_last_error());
    if (!db) return;
    int D = m->config.dim, F = m->config.hidden_dim, kept[3] = {1, 5, 600};
    evb_db_entry key = {0};
    key.unit = 2 * EVB_LINEAR_COUNT + EVB_LINEAR_DOWN; key.kind = EVB_LEVEL_STRUCT;
    snprintf(key.method, sizeof key.method, "obs");
    key.rows = D; key.cols = F; key.group_size = 1; key.n_removed = F - 3; key.dtype = EVB_DB_BF16;
    float *bias = malloc(sizeof(float) * D), *w = malloc(sizeof(float) * D * 3);
    for (int i = 0; i < D; i++) bias[i] = 0.01f * i;
    for (int i = 0; i < 3 * D; i++) w[i] = 0.5f + 0.25f * (i % 4);    /* exact in bfloat16 */
    EVB_CHECK(evb_db_put_struct(db, &key, kept, bias, w, NAN) == 0, "store an obs level (%s)",
              evb_last_error());
    int e = evb_db_find(db, &key);
    evb_struct_level *s = NULL;
    EVB_CHECK(e >= 0 && evb_db_load_struct(db, e, &s) == 0, "read it back (%s)", evb_last_error());
    if (s) {
        EVB_CHECK(s->n_kept == 3 && s->group == 1 && !memcmp(s->kept, kept, sizeof kept) &&
                  !memcmp(s->bias, bias, sizeof(float) * D) && s->out_w && !memcmp(s->out_w, w,
                          sizeof(float) * 3 * D),
                  "kept channels, bias and updated columns as stored");
        evb_struct_level_free(s);
    }
    float *W = malloc(sizeof(float) * D * F);
    EVB_CHECK(e >= 0 && evb_db_load(db, e, W) == EVB_EINVAL,
              "a structured level is not expanded as one weight");
    int desc[3] = {5, 1, 600};
    key.n_removed = F - 3;
    snprintf(key.method, sizeof key.method, "flap");
    key.dtype = EVB_DB_F32;
    EVB_CHECK(evb_db_put_struct(db, &key, desc, bias, NULL, NAN) == EVB_EINVAL,
              "kept channels out of order are refused");
    key.group_size = 7;
    EVB_CHECK(evb_db_put_struct(db, &key, kept, bias, NULL, NAN) == EVB_EINVAL,
              "groups that do not divide the columns");
    if (e < 0) { free(bias); free(w); free(W); evb_db_close(db); return; }
    evb_db_entry got = evb_db_get(db, e);
    char path[1200], cmd[1400];
    snprintf(path, sizeof path, "%s/%s", dir, got.file);
    snprintf(cmd, sizeof cmd, "printf 'X' | dd of='%s' bs=1 seek=40 conv=notrunc 2>/dev/null", path);
    sh(cmd);
    s = NULL;
    EVB_CHECK(evb_db_load_struct(db, e, &s) == EVB_EFORMAT && !s, "a damaged payload is found (%s)",
              evb_last_error());
    free(bias); free(w); free(W);
    evb_db_close(db);
}

/* The cost table's file: read back, stale elsewhere, refused when malformed. */
static void check_table(const char *tmp, const evb_model *m) {
    int kept[2] = {0, 344};
    evb_cost_table *t = NULL, *r = NULL;
    EVB_CHECK(evb_cost_table_measure((evb_model *)m, 1, 16, kept, 2, 1, NULL, NULL, &t) == 0,
              "measure a small table (%s)",
              evb_last_error());
    if (!t) return;
    EVB_CHECK(t->n_attn == m->config.n_kv_heads + 1 && t->n_mlp == 3
              && t->mlp_kept[2] == m->config.hidden_dim,
              "levels: 0..G groups, the asked channel counts and F");
    int mono = 1;
    for (int i = 1; i < t->n_attn; i++) mono &= t->attn[i] >= t->attn[i - 1];
    for (int i = 1; i < t->n_mlp; i++) mono &= t->mlp[i] >= t->mlp[i - 1];
    EVB_CHECK(mono, "times do not fall as more is kept");
    int L = m->config.n_layers, *a = malloc(sizeof(int) * L), *f = malloc(sizeof(int) * L);
    double want = t->fixed;
    for (int l = 0; l < L; l++) {
        a[l] = l % 2 ? -1 : l % t->n_attn; f[l] = t->mlp_kept[l % 3];
        want += (a[l] < 0 ? 0 : t->attn[a[l]]) + t->mlp[l % 3];
    }
    EVB_CHECK(fabs(evb_cost_table_predict(t, a, f) - want) < 1e-12,
              "the prediction is the fixed cost plus the levels'");
    char path[512], cmd[1200];
    snprintf(path, sizeof path, "%s/timings.json", tmp);
    int stale = -1;
    EVB_CHECK(evb_cost_table_write(t, path) == 0 && evb_cost_table_read(path, m, 1, 16, &r, &stale) == 0
              && stale == 0,
              "written and read back, not stale here (%s)", evb_last_error());
    EVB_CHECK(r && r->n_mlp == t->n_mlp && r->attn[1] == t->attn[1] && r->mlp[2] == t->mlp[2]
              && r->dense == t->dense,
              "the same times");
    evb_cost_table_free(r); r = NULL;
    EVB_CHECK(evb_cost_table_read(path, m, 2, 16, &r, &stale) == 0 && stale == 1,
              "another batch shape makes it stale");
    evb_cost_table_free(r); r = NULL;
    const char *bad[] = {"s/\"threads\": [0-9]*/\"threads\": -3/",
                         "s/\"mlp_kept\": \\[/\"mlp_kept\": [9999, /",
                         "s/\"fixed\": [0-9.e-]*/\"fixed\": \"x\"/"};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "tr -d '\\n' < '%s' | sed -e 's/  */ /g' -e '%s' > '%s.bad'", path, bad[i],
                 path);
        sh(cmd);
        snprintf(cmd, sizeof cmd, "%s.bad", path);
        EVB_CHECK(evb_cost_table_read(cmd, m, 1, 16, &r, &stale) == EVB_EFORMAT && !r,
                  "malformed table %d refused (%s)", i,
                  evb_last_error());
    }
    evb_cost_table_free(t);
    free(a); free(f);
}

/* The levels of one sub-block as stored: FLAP's are nested. */
static void check_nested(const char *dbdir, const evb_model *m) {
    evb_db *db = NULL;
    EVB_CHECK(evb_db_open(dbdir, NULL, NULL, 0, &db) == 0, "open the search's database (%s)",
              evb_last_error());
    if (!db) return;
    int F = m->config.hidden_dim, n = 0, prev_kept = F + 1, nested = 1;
    unsigned char *in = calloc((size_t)F, 1), *now = calloc((size_t)F, 1);
    memset(in, 1, (size_t)F);
    for (int r = 1; r <= F; r++) {
        evb_db_entry key = {0};
        key.unit = 1 * EVB_LINEAR_COUNT + EVB_LINEAR_DOWN; key.kind = EVB_LEVEL_STRUCT; key.group_size = 1; key.n_removed = r;
        snprintf(key.method, sizeof key.method, "flap");
        int e = evb_db_find(db, &key);
        evb_struct_level *s = NULL;
        if (e < 0 || evb_db_load_struct(db, e, &s)) continue;
        memset(now, 0, (size_t)F);
        for (int i = 0; i < s->n_kept; i++) now[s->kept[i]] = 1;
        for (int c = 0; c < F; c++) nested &= !now[c] || in[c];
        nested &= s->n_kept < prev_kept;
        prev_kept = s->n_kept;
        memcpy(in, now, (size_t)F);
        n++;
        evb_struct_level_free(s);
    }
    EVB_CHECK(n == 8 && nested, "the 8 stored FLAP levels of block 1's MLP are nested (%d found)", n);
    free(in); free(now);
    evb_db_close(db);
}

/* A search's best.json: the predicted time inside [0.98, 1] of the dense time over the target. */
static void check_best(const char *run, double target, const char *what) {
    char path[600];
    snprintf(path, sizeof path, "%s/best.json", run);
    json_t *b = load_json(path);
    EVB_CHECK(b != NULL, "%s: best.json written", what);
    if (!b) return;
    double sp = jnum(b, "speedup"), sec = jnum(b, "seconds"), dense = jnum(b, "dense_seconds");
    EVB_CHECK(!strcmp(json_string_value(json_object_get(b, "target_kind")), "speedup") && jnum(b,
            "target") == target,
              "%s: target kind speedup, target %g", what, target);
    EVB_CHECK(sec <= dense / target * (1 + 1e-9) && sec >= 0.98 * dense / target * (1 - 1e-9) &&
              fabs(sp - dense / sec) < 1e-9 * sp,
                      "%s: predicted %.4f s within [0.98, 1] of %.4f / %g (speedup %.3f)",
              what, sec, dense, target, sp);
    EVB_CHECK(json_array_size(json_object_get(b, "units")) == 12,
              "%s: a level for each of the 12 sub-blocks", what);
    json_decref(b);
}

static void check_program(const char *tmp, const evb_model *m) {
    char cmd[4096], run[600], dbdir[600];
    snprintf(dbdir, sizeof dbdir, "%s/sdb", tmp);
    const char *methods[] = {"evopress", "uniform", "flap"};
    for (int i = 0; i < 3; i++) {
        snprintf(run, sizeof run, "%s/run-%s", tmp, methods[i]);
        snprintf(cmd, sizeof cmd,
                 "'%s' search --model %s --target-speedup 1.4 --method %s " SMALL " --generations 3 "
                 "--offspring 4 --db %s --out %s > /dev/null 2> "
                 "%s/err-%s.txt", EVB_CLI, DEMO, methods[i], dbdir, run, tmp,
                 methods[i]);
        EVB_CHECK(sh(cmd) == 0, "search --target-speedup 1.4 --method %s runs", methods[i]);
        check_best(run, 1.4, methods[i]);
    }
    snprintf(cmd, sizeof cmd,
             "grep -q 'measuring the time' %s/err-evopress.txt && ! grep -q 'measuring the time' "
             "%s/err-uniform.txt && test -s %s/timings.json", tmp, tmp, dbdir);
    EVB_CHECK(sh(cmd) == 0, "the first search measures the levels' times, the next reuses %s/timings.json",
              dbdir);
    check_nested(dbdir, m);
    snprintf(cmd, sizeof cmd,
             "'%s' eval --config %s/run-evopress --seq-len 64 --batch 2 --max-tokens 256 --timing-repeats 1 "
             "--json > %s/eval.json 2> /dev/null", EVB_CLI, tmp, tmp);
    EVB_CHECK(sh(cmd) == 0, "eval --config of the speed run");
    snprintf(run, sizeof run, "%s/eval.json", tmp);
    json_t *j = load_json(run), *sp = json_object_get(j, "speed");
    /* the JSON's numbers carry 10 significant digits: the ratio agrees to that, relatively */
    double ratio = sp ? jnum(sp, "dense_seconds") / jnum(sp, "seconds") : NAN;
    EVB_CHECK(sp && jnum(sp, "speedup") > 0 && fabs(jnum(sp, "speedup") / ratio - 1) < 1e-8 &&
              jnum(sp, "target_speedup") == 1.4 && jnum(sp, "predicted_speedup") >= 1.4 && jnum(j, "kl") > 0,
              "eval times the configuration against the dense forward (measured %.3fx, predicted %.3fx) and "
              "scores its KL",
              jnum(sp, "speedup"), jnum(sp, "predicted_speedup"));
    json_decref(j);
    snprintf(run, sizeof run, "%s/run-obs", tmp);
    snprintf(cmd, sizeof cmd,
             "'%s' search --model %s --target-speedup 1.25 --method uniform --compressor obs " SMALL
             " --db %s --out %s > /dev/null 2>&1", EVB_CLI, DEMO, dbdir, run);
    EVB_CHECK(sh(cmd) == 0, "search with OBS levels runs");
    check_best(run, 1.25, "obs");
    /* a latency: seven tenths of the dense forward's measured time */
    snprintf(run, sizeof run, "%s/timings.json", dbdir);
    json_t *t = load_json(run);
    double lat = 0.7 * jnum(t, "dense");
    json_decref(t);
    snprintf(run, sizeof run, "%s/run-latency", tmp);
    snprintf(cmd, sizeof cmd, "'%s' search --model %s --target-latency %.9g --method uniform " SMALL " --db %s --out %s "
             "> /dev/null 2>&1", EVB_CLI, DEMO, lat, dbdir, run);
    EVB_CHECK(lat > 0 && sh(cmd) == 0, "search --target-latency %.4g s runs", lat);
    snprintf(run, sizeof run, "%s/run-latency/best.json", tmp);
    json_t *b = load_json(run);
    double sec = jnum(b, "seconds");
    EVB_CHECK(b && !strcmp(json_string_value(json_object_get(b, "target_kind")), "latency") && sec <= lat * (1 + 1e-9) &&
              sec >= 0.98 * lat * (1 - 1e-9), "latency: predicted %.5f s within [0.98, 1] of %.5f s", sec, lat);
    json_decref(b);
}

/* A table of coarse, uneven steps (as a noisy machine measures: levels pooled into plateaus) leaves the greedy
 * moves short of the band; the start and FLAP's allocation still reach it (the nearest levels that do). */
static void check_coarse_table(const char *tmp) {
    static const double attn[] = {0.02, 0.02, 0.33, 1, 1}, mlp[] = {0.33, 0.57, 0.57, 0.57, 0.97, 0.99, 0.99, 1, 1};
    char path[600], cmd[2048];
    snprintf(path, sizeof path, "%s/sdb/timings.json", tmp);
    json_t *t = load_json(path);
    EVB_CHECK(t != NULL, "the cached table");
    if (!t) return;
    double dense = jnum(t, "dense"), fixed = 0.02 * dense, per = (dense - fixed) / 6;
    json_t *a = json_array(), *m = json_array();
    for (int i = 0; i < 5; i++) json_array_append_new(a, json_real(0.4 * per * attn[i]));
    for (int i = 0; i < 9; i++) json_array_append_new(m, json_real(0.6 * per * mlp[i]));
    json_object_set_new(t, "attn", a);
    json_object_set_new(t, "mlp", m);
    json_object_set_new(t, "fixed", json_real(fixed));
    EVB_CHECK(json_dump_file(t, path, 0) == 0, "a coarse table written");
    json_decref(t);
    const char *methods[] = {"uniform", "flap"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/coarse-%s", tmp, methods[i]);
        snprintf(cmd, sizeof cmd, "'%s' search --model %s --target-speedup 1.5 --method %s " SMALL " --db %s/sdb "
                 "--out %s > /dev/null 2>&1", EVB_CLI, DEMO, methods[i], tmp, path);
        EVB_CHECK(sh(cmd) == 0, "coarse table: search --method %s reaches the band", methods[i]);
        check_best(path, 1.5, methods[i]);
    }
}

/* Bad flags: one line, a non-zero exit, naming the flag. */
static void check_refusals(const char *tmp) {
    const char *bad[][2] = {
        {"--target-speedup 0.5", "--target-speedup"},
        {"--target-speedup 1.5 --compressor sparsegpt", "--compressor"},
        {"--target-sparsity 0.5 --struct-steps 4", "--struct-steps"},
        {"--target-sparsity 0.5 --method flap", "flap"},
        {"--target-speedup 1.5 --method owl", "owl"},
        {"--target-speedup 1.5 --target-bits 3", "one of"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "'%s' search --model %s %s " SHAPE " --db %s/sdb --out %s/bad > /dev/null 2> %s/err.txt; "
                 "rc=$?; test $rc -ne 0 && test $(wc -l < %s/err.txt) = 1 && grep -q -- '%s' "
                 "%s/err.txt", EVB_CLI, DEMO,
                 bad[i][0], tmp, tmp, tmp, tmp, bad[i][1], tmp);
        EVB_CHECK(sh(cmd) == 0, "refused in one line naming '%s': %s", bad[i][1], bad[i][0]);
    }
}

int main(void) {
    evb_init();
    char tmp[] = "/tmp/evb_speed_XXXXXX";
    EVB_CHECK(mkdtemp(tmp) != NULL, "a temporary directory");
    evb_model *m = NULL;
    EVB_CHECK(evb_model_load(DEMO, &m) == 0, "load the demo model (%s)", evb_last_error());
    if (!m) return evb_test_summary();
    check_db(tmp, m);
    check_table(tmp, m);
    check_program(tmp, m);
    check_coarse_table(tmp);
    check_refusals(tmp);
    evb_model_free(m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    sh(cmd);
    return evb_test_summary();
}
