#define _GNU_SOURCE
/* test_numeric.c -- numbers that are not numbers. exp_fast and exp8 (models/exp_fast.h, the softmax's exp)
 * against expf: within 2 ulp over a sweep of [-80, 88.72] and random floats, and what exp_fast.h promises for
 * NaN, +-Inf, +-1e30, the largest floats, denormals and the two ends of the range. Then `evobudget eval` of a
 * copy of the demo model with NaN and with huge weights, in text and --json: an error naming the cause and
 * the tensor (or the unit whose compressed level holds the NaN), exit 1, never "perplexity nan" or "out of memory"; finite weights whose activations overflow say so. */
#include "testing.h"
#include "fixtures.h"
#include "models/exp_fast.h"
#include "evobudget/evobudget.h"

#include <float.h>
#include <stdlib.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "models/safetensors.h"

#define DEMO EVB_SOURCE_DIR "/assets/demo"

static float from_bits(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }

/* Distance in units in the last place between two finite floats of the same sign (0 when equal). */
static double ulps(float a, float b) {
    if (a == b) return 0;
    int e;
    frexpf(b, &e);
    double ulp = ldexp(1.0, (e - 24 < -149 ? -149 : e - 24));
    return fabs((double)a - (double)b) / ulp;
}

/* What exp_fast.h promises for x, as a check of got. */
static int as_promised(float x, float got, double *worst) {
    if (isnan(x)) return isnan(got);
    if (x < EXP_FAST_LO) return got == 0.0f && !signbit(got);
    if (x > EXP_FAST_HI) return isinf(got) && got > 0;
    float want = expf(x);
    if (!isfinite(got) || !isfinite(want)) return 0;
    double u = ulps(got, want);
    if (u > *worst) *worst = u;
    return u <= 2.0;
}

static float exp8_one(float x) {
#if defined(__AVX2__) && defined(__FMA__)
    float in[8], out[8];
    for (int i = 0; i < 8; i++) in[i] = i == 3 ? x : 0.0f; /* lane 3, between ordinary lanes */
    _mm256_storeu_ps(out, exp8(_mm256_loadu_ps(in)));
    return out[3];
#else
    return exp_fast(x);
#endif
}

static void test_exp(void) {
    const float special[] = {
        NAN, -NAN, INFINITY, -INFINITY, 1e30f, -1e30f, FLT_MAX, -FLT_MAX, 0.0f, -0.0f,
        1e-40f, -1e-40f, FLT_MIN, -FLT_MIN, from_bits(1), from_bits(0x80000001u), /* denormals, the smallest */
        EXP_FAST_LO, nextafterf(EXP_FAST_LO, -INFINITY), -87.3f, -88.0f, -104.0f, -1e4f,
        88.0f, 88.5f, EXP_FAST_HI, nextafterf(EXP_FAST_HI, INFINITY), 89.0f, 100.0f, 1e4f, 1.0f, -1.0f, 0.5f,
    };
    int n_special = (int)(sizeof special / sizeof *special), bad = 0, bad8 = 0;
    double worst = 0, worst8 = 0;
    for (int i = 0; i < n_special; i++) {
        float x = special[i], a = exp_fast(x), b = exp8_one(x);
        if (!as_promised(x, a, &worst)) { bad++; printf("  exp_fast(%g) = %g, expf = %g\n", x, a, expf(x)); }
        if (!as_promised(x, b, &worst8)) { bad8++; printf("  exp8(%g) = %g, expf = %g\n", x, b, expf(x)); }
    }
    EVB_CHECK(bad == 0, "exp_fast on %d special values (NaN, +-Inf, +-1e30, +-FLT_MAX, denormals, both ends): %d differ from the promise",
              n_special, bad);
    EVB_CHECK(bad8 == 0, "exp8 on the same %d values: %d differ", n_special, bad8);
    /* NaN propagates in every lane position, and a NaN lane leaves its neighbours alone */
#if defined(__AVX2__) && defined(__FMA__)
    float in[8] = {-1, NAN, 0, INFINITY, -INFINITY, 1e30f, -1e30f, 2}, out[8];
    _mm256_storeu_ps(out, exp8(_mm256_loadu_ps(in)));
    int lanes_ok = 1;
    for (int i = 0; i < 8; i++) lanes_ok &= as_promised(in[i], out[i], &worst8);
    EVB_CHECK(lanes_ok, "exp8 of a vector mixing NaN, +-Inf, +-1e30 and ordinary values: each lane as promised");
#endif
    /* a sweep of the whole finite range, and random bit patterns (every float is some bit pattern) */
    int n = 0;
    bad = bad8 = 0;
    for (double x = -80.0; x <= 88.72; x += 0.00037, n++) {
        float a = exp_fast((float)x), b = exp8_one((float)x);
        bad += !as_promised((float)x, a, &worst);
        bad8 += !as_promised((float)x, b, &worst8);
    }
    uint32_t s = 12345;
    for (int i = 0; i < 1000000; i++, n++) {
        s = s * 1664525u + 1013904223u;
        float x = from_bits(s);
        bad += !as_promised(x, exp_fast(x), &worst);
        bad8 += !as_promised(x, exp8_one(x), &worst8);
    }
    EVB_CHECK(bad == 0, "exp_fast over %d values (a sweep of [-80, 88.72] and random floats): %d beyond 2 ulp of expf (worst %.2f ulp)", n, bad, worst);
    EVB_CHECK(bad8 == 0, "exp8 over the same %d values: %d beyond 2 ulp (worst %.2f ulp)", n, bad8, worst8);
}

static char tmp[512];

static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void slurp(const char *name, char *buf, size_t n) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    FILE *f = fopen(p, "r");
    size_t k = f ? fread(buf, 1, n - 1, f) : 0;
    buf[k] = '\0';
    if (f) fclose(f);
}

/* Runs `evobudget eval ARGS` on a few windows; its exit code, stdout and stderr in out and err. */
static int eval(const char *args, char *out, char *err, size_t n) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' eval %s --data %s/text.txt --seq-len 32 --max-tokens 64 > %s/stdout.txt 2> %s/stderr.txt",
             EVB_CLI, args, tmp, tmp, tmp);
    int rc = sh(cmd);
    slurp("stdout.txt", out, n);
    slurp("stderr.txt", err, n);
    return rc;
}

/* Lines of s that contain "error" (progress lines go to stderr too). */
static int error_lines(const char *s) {
    int n = 0;
    for (const char *l = s; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *end = strchr(l, '\n'), *e = strstr(l, "error");
        n += e && (!end || e < end);
    }
    return n;
}

/* A copy of the demo model in dir whose tensor `name` has value v at the given indices (count of them,
 * from index 0, or every element when count < 0). */
static int corrupt_copy(const char *dir, const char *name, float v, long count) {
    char cmd[2048], p[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp %s/config.json %s/model.safetensors %s/tokenizer.json %s/", dir, dir, DEMO, DEMO, DEMO, dir);
    if (sh(cmd)) return -1;
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    evb_safetensors st;
    evb_st_init(&st);
    if (evb_st_open(&st, p)) return -1;
    const evb_st_tensor *t = evb_st_find(&st, name);
    if (!t || strcmp(t->dtype, "F32") != 0) { evb_st_close(&st); return -1; }
    long off = (long)(st.files[t->file].data_start + t->begin), n = (long)(t->end - t->begin) / 4;
    evb_st_close(&st);
    if (count < 0 || count > n) count = n;
    FILE *f = fopen(p, "r+b");
    if (!f || fseek(f, off, SEEK_SET) != 0) { if (f) fclose(f); return -1; }
    for (long i = 0; i < count; i++) fwrite(&v, 4, 1, f);
    return fclose(f) == 0 ? 0 : -1;
}

/* eval of broken weights, in text and in --json: exit 1, one line on stderr containing each of want[], nothing
 * on stdout (no "perplexity nan", no JSON), never "out of memory". */
static void refused(const char *args, const char *what, const char *const *want, int n_want) {
    char out[8192], err[8192], a[2048];
    for (int json = 0; json < 2; json++) {
        snprintf(a, sizeof a, "%s%s", args, json ? " --json" : "");
        int rc = eval(a, out, err, sizeof out), has = 1;
        for (int i = 0; i < n_want; i++) has &= strstr(err, want[i]) != NULL;
        EVB_CHECK(rc == 1 && error_lines(err) == 1 && has && out[0] == '\0' && !strstr(err, "out of memory") && strstr(err, "hint:"),
                  "%s%s: exit %d (1), one line naming the cause with a hint, nothing on stdout: %s", what, json ? " (--json)" : "", rc, err);
    }
}

/* evb_eval_nll_kl with a compressed level holding a NaN (what a damaged database entry gives): the unit is
 * named, and the dense weights are back in place after the error. */
static void test_level_nan(void) {
    evb_model *m = NULL;
    if (evb_model_load(DEMO, &m)) { EVB_CHECK(0, "load the demo model (%s)", evb_last_error()); return; }
    int U = evb_model_n_units(m), unit = 9, r, c;
    evb_model_unit_shape(m, unit, &r, &c);
    float *level = malloc(sizeof(float) * (size_t)r * c);
    const float **weights = calloc((size_t)U, sizeof *weights);
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (int32_t)((i * 37 + 11) % m->config.vocab_size);
    evb_windows w = {0};
    evb_state *st = NULL;
    int s = !level || !weights ? EVB_ENOMEM : evb_windows_consecutive(tok, 64, 32, 1, 0, &w);
    if (!s) s = evb_state_alloc(m, 2, 32, &st);
    EVB_CHECK(s == 0, "windows and a forward state (%s)", evb_last_error());
    if (!s) {
        memcpy(level, m->layers[unit / EVB_LINEAR_COUNT].w_dense[unit % EVB_LINEAR_COUNT], sizeof(float) * (size_t)r * c);
        level[5] = NAN;
        weights[unit] = level;
        double nll, kl;
        size_t n;
        s = evb_eval_nll_kl(m, st, &w, 2, weights, NULL, &nll, &kl, &n, NULL, NULL);
        const char *msg = evb_last_error();
        EVB_CHECK(s == EVB_EFORMAT && strstr(msg, "unit 9") && strstr(msg, "level database") && strstr(msg, "hint:"),
                  "a NaN in unit 9's compressed level: status %d (EVB_EFORMAT), the unit and the database named: %s", s, msg);
        EVB_CHECK(m->layers[1].w[2] == m->layers[1].w_dense[2], "and the dense weight is back in place");
    }
    evb_state_free(st);
    evb_windows_free(&w);
    free(level); free(weights);
    evb_model_free(m);
}

int main(void) {
    test_exp();
    test_level_nan();

    char *t = fixture_tmpdir();
    snprintf(tmp, sizeof tmp, "%s", t);
    char dir[700], args[1500], out[8192], err[8192];
    snprintf(args, sizeof args, "head -c 3000 %s/calib.txt > %s/text.txt", DEMO, tmp);
    EVB_CHECK(sh(args) == 0, "the first 3000 bytes of the demo's text");
    /* the untouched copy evaluates (so what follows fails for the reason it names) */
    snprintf(dir, sizeof dir, "%s/ok", tmp);
    EVB_CHECK(corrupt_copy(dir, "model.norm.weight", 1.0f, 0) == 0, "a copy of the demo model");
    snprintf(args, sizeof args, "--model %s --json", dir);
    int rc = eval(args, out, err, sizeof out);
    EVB_CHECK(rc == 0 && strstr(out, "\"perplexity\""), "the intact copy evaluates (exit %d)", rc);

    snprintf(dir, sizeof dir, "%s/nan", tmp);
    EVB_CHECK(corrupt_copy(dir, "model.layers.1.mlp.up_proj.weight", NAN, 3) == 0, "a copy with 3 NaN weights in block 1's up_proj");
    snprintf(args, sizeof args, "--model %s", dir);
    const char *nan_want[] = {"model.layers.1.mlp.up_proj.weight", "3 NaN", dir};
    refused(args, "NaN weights", nan_want, 3);
    /* the same model as the reference of a KL: its tensor named */
    snprintf(args, sizeof args, "--model %s --reference %s", DEMO, dir);
    refused(args, "a reference with NaN weights (KL)", nan_want, 3);

    snprintf(dir, sizeof dir, "%s/inf", tmp);
    EVB_CHECK(corrupt_copy(dir, "model.norm.weight", -INFINITY, 1) == 0, "a copy with -Inf in the final norm");
    snprintf(args, sizeof args, "--model %s", dir);
    const char *inf_want[] = {"model.norm.weight", "infinite"};
    refused(args, "an infinite weight", inf_want, 2);

    snprintf(dir, sizeof dir, "%s/huge", tmp);
    EVB_CHECK(corrupt_copy(dir, "model.norm.weight", 3e38f, -1) == 0, "a copy whose final norm is 3e38 everywhere (finite, the logits not)");
    snprintf(args, sizeof args, "--model %s", dir);
    const char *huge_want[] = {"every weight is finite", "overflow"};
    refused(args, "finite weights whose logits overflow float32", huge_want, 2);

    snprintf(dir, sizeof dir, "%s/large", tmp);
    EVB_CHECK(corrupt_copy(dir, "model.norm.weight", 1e30f, -1) == 0, "a copy whose final norm is 1e30 everywhere (finite logits, a huge loss)");
    snprintf(args, sizeof args, "--model %s", dir);
    const char *large_want[] = {"perplexity overflow", "per token"};
    refused(args, "a finite loss too large for exp()", large_want, 2);

    fixture_rmdir(tmp);
    free(t);
    return evb_test_summary();
}
