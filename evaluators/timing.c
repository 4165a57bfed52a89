/* timing.c -- the measured speed costs of structured levels (see evb_timing.h). */
#include "evobudget/evb_timing.h"
#include "evobudget/evb_status.h"
#include "core/json.h"
#include "evobudget/evobudget.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void cpu_name(char *out, size_t n) {
    snprintf(out, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        colon[strcspn(colon, "\n")] = 0;
        snprintf(out, n, "%s", colon);
        break;
    }
    fclose(f);
}

static int n_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* What a table is measured on, from the model and the machine. */
static void describe(evb_cost_table *t, const evb_model *m, int B, int T) {
    const evb_config *c = &m->config;
    cpu_name(t->cpu, sizeof t->cpu);
    snprintf(t->compute, sizeof t->compute, "%s", evb_compute_name((evb_compute)m->compute));
    snprintf(t->kernel, sizeof t->kernel, "%s",
             m->compute == EVB_COMPUTE_BF16 ? evb_compute_kernel() : evb_blas_core());
    t->threads = n_threads(); t->batch = B; t->seq = T;
    t->dim = c->dim; t->hidden = c->hidden_dim; t->heads = c->n_heads; t->kv_heads = c->n_kv_heads;
    t->head_dim = c->head_dim; t->vocab = c->vocab_size; t->layers = c->n_layers;
}

/* Random tokens of a B x T batch (fixed seed: the times do not depend on them). */
static void random_tokens(int32_t *tok, size_t n, int V) {
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((x >> 33) % (uint64_t)V);
    }
}

/* One timed run of every block (after one untimed) from the embedded batch x0, divided by the blocks. */
static int time_blocks(const evb_model *m, evb_state *s, const float *x0, double *out) {
    size_t nx = (size_t)s->B * s->T * m->config.dim;
    int st = EVB_SUCCESS, L = m->config.n_layers;
    for (int r = 0; r < 2 && !st; r++) {
        memcpy(s->x, x0, nx * sizeof(float));
        double t0 = now();
        st = evb_forward_blocks(m, s, 0, L);
        *out = (now() - t0) / L;
    }
    return st;
}

/* Times one level of the sub-block (mlp) keeping n_kept groups or channels, a compensation bias on: every
 * block at that level and the other sub-blocks skipped, so that the weights stream through the caches as in a
 * whole forward (one block timed alone keeps its weights in cache and runs faster than it does in a model).
 * */
static int time_level(evb_model *m, evb_state *s, const float *x0, int mlp, int n_kept, int full,
                      const float *bias,
                      double *out) {
    int L = m->config.n_layers, st = EVB_SUCCESS;
    evb_layer *saved = malloc(sizeof(evb_layer) * (size_t)L);
    evb_block_level **b = calloc((size_t)L, sizeof *b);
    int *kept = malloc(sizeof(int) * ((size_t)n_kept + 1));
    if (!saved || !b || !kept) st = EVB_RAISEF(EVB_ENOMEM, "timing: out of memory");
    for (int i = 0; !st && i < n_kept; i++) kept[i] = i;
    if (!st) memcpy(saved, m->layers, sizeof(evb_layer) * (size_t)L);
    for (int l = 0; l < L && !st; l++) {
        if (n_kept < full && !(st = evb_block_level_make(m, l, mlp, kept, n_kept, NULL, bias, &b[l])))
            evb_block_level_apply(m, b[l]);
        m->layers[l].skip_attn = mlp; m->layers[l].skip_mlp = !mlp;
    }
    if (!st) st = time_blocks(m, s, x0, out);
    if (saved) memcpy(m->layers, saved, sizeof(evb_layer) * (size_t)L);
    for (int l = 0; b && l < L; l++) evb_block_level_free(b[l]);
    free(saved); free(b); free(kept);
    return st;
}

/* The median of `repeats` runs of run(ctx) after one untimed. */
static int median_runs(int (*run)(void *ctx), void *ctx, int repeats, double *out) {
    double *v = malloc(sizeof(double) * (size_t)repeats);
    if (!v) EVB_ERROR("timing: out of memory", EVB_ENOMEM);
    int st = EVB_SUCCESS;
    for (int r = -1; r < repeats && !st; r++) {
        double t0 = now();
        st = run(ctx);
        if (r >= 0) v[r] = now() - t0;
    }
    if (!st) *out = median(v, repeats);
    free(v);
    return st;
}

typedef struct fwd_run { const evb_model *m; evb_state *s; const int32_t *tok; } fwd_run;

/* The fixed costs: the embedding, the final norm and the classifier. */
static int run_fixed(void *ctx) {
    fwd_run *f = ctx;
    int st = evb_forward_embed(f->m, f->s, f->tok, f->s->B, f->s->T);
    return st ? st : evb_forward_logits(f->m, f->s);
}

static int run_forward(void *ctx) {
    fwd_run *f = ctx;
    return evb_forward(f->m, f->s, f->tok, f->s->B, f->s->T);
}

/* Makes v[0..n) non-decreasing by pooling adjacent violators (least squares): keeping more heads or channels
 * never takes less work, so a level measured faster than a smaller one is noise. */
static void monotone(double *v, int n) {
    double *val = malloc(sizeof(double) * (size_t)n);
    int *cnt = malloc(sizeof(int) * (size_t)n), k = 0;
    if (!val || !cnt) { free(val); free(cnt); return; }
    for (int i = 0; i < n; i++) {
        val[k] = v[i]; cnt[k] = 1; k++;
        while (k > 1 && val[k - 2] > val[k - 1]) {
            val[k - 2] = (val[k - 2] * cnt[k - 2] + val[k - 1] * cnt[k - 1]) / (cnt[k - 2] + cnt[k - 1]);
            cnt[k - 2] += cnt[k - 1]; k--;
        }
    }
    for (int b = 0, i = 0; b < k; b++) for (int j = 0; j < cnt[b]; j++) v[i++] = val[b];
    free(val); free(cnt);
}

void evb_cost_table_free(evb_cost_table *t) {
    if (!t) return;
    free(t->attn); free(t->mlp_kept); free(t->mlp);
    free(t);
}

static int alloc_table(int n_attn, int n_mlp, evb_cost_table **out) {
    evb_cost_table *t = calloc(1, sizeof *t);
    if (t) {
        t->n_attn = n_attn; t->n_mlp = n_mlp;
        t->attn = calloc((size_t)n_attn, sizeof(double));
        t->mlp = calloc((size_t)n_mlp, sizeof(double));
        t->mlp_kept = calloc((size_t)n_mlp, sizeof(int));
    }
    if (!t || !t->attn || !t->mlp || !t->mlp_kept) {
        evb_cost_table_free(t);
        EVB_ERROR("timing: out of memory", EVB_ENOMEM);
    }
    *out = t;
    return EVB_SUCCESS;
}

/* The table's MLP kept counts: the asked ones, ascending, within [0, F], F last; -1 on a bad list. */
static int mlp_counts(const int *kept, int n, int F, int *out) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (kept[i] < 0 || kept[i] > F || (i > 0 && kept[i] <= kept[i - 1]))
            return EVB_RAISEF(EVB_EINVAL, "timing: MLP kept counts must ascend within [0, %d] (got %d)", F,
                              kept[i]), -1;
        out[k++] = kept[i];
    }
    if (k == 0 || out[k - 1] != F) out[k++] = F;
    return k;
}

int evb_cost_table_measure(evb_model *m, int B, int T, const int *mlp_kept, int n_mlp, int repeats,
                           void (*progress)(void *ctx, int done, int total), void *ctx,
                                   evb_cost_table **out) {
    *out = NULL;
    const evb_config *c = &m->config;
    if (repeats < 1 || B < 1 || T < 1 || n_mlp < 0)
        EVB_ERROR("timing: repeats and the batch shape must be positive", EVB_EINVAL);
    evb_cost_table *t = NULL;
    int st = alloc_table(c->n_kv_heads + 1, n_mlp + 1, &t);
    if (st) return st;
    int k = mlp_counts(mlp_kept, n_mlp, c->hidden_dim, t->mlp_kept);
    if (k < 0) { evb_cost_table_free(t); return EVB_EINVAL; }
    t->n_mlp = k; t->repeats = repeats;
    describe(t, m, B, T);
    evb_state *s = NULL;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * T);
    float *x0 = malloc(sizeof(float) * (size_t)B * T * c->dim), *bias = calloc((size_t)c->dim, sizeof(float));
    if (!tok || !x0 || !bias) st = EVB_RAISEF(EVB_ENOMEM, "timing: out of memory");
    if (!st) st = evb_state_alloc(m, B, T, &s);
    if (!st) { random_tokens(tok, (size_t)B * T, c->vocab_size); st = evb_forward_embed(m, s, tok, B, T); }
    if (!st) memcpy(x0, s->x, sizeof(float) * (size_t)B * T * c->dim);
    /* Rounds over every level, so that a burst of load on the machine spreads over all of them: medians. */
    int n_lv = t->n_attn + t->n_mlp;
    double *v = malloc(sizeof(double) * (size_t)n_lv * repeats);
    if (!v && !st) st = EVB_RAISEF(EVB_ENOMEM, "timing: out of memory");
    for (int r = 0; r < repeats && !st; r++) {
        for (int i = 0; i < n_lv && !st; i++) {
            int mlp = i >= t->n_attn, k = mlp ? t->mlp_kept[i - t->n_attn] : i;
            st = time_level(m, s, x0, mlp, k, mlp ? c->hidden_dim : c->n_kv_heads, bias,
                            &v[(size_t)i * repeats + r]);
        }
        if (progress) progress(ctx, r + 1, repeats + 1);
    }
    for (int i = 0; i < n_lv && !st; i++) {
        double md = median(v + (size_t)i * repeats, repeats);
        if (i < t->n_attn) t->attn[i] = md; else t->mlp[i - t->n_attn] = md;
    }
    free(v);
    if (!st) { monotone(t->attn, t->n_attn); monotone(t->mlp, t->n_mlp); }
    fwd_run f = {m, s, tok};
    if (!st) st = median_runs(run_fixed, &f, repeats, &t->fixed);
    if (!st) st = evb_time_forward(m, B, T, repeats, &t->dense);
    if (progress && !st) progress(ctx, repeats + 1, repeats + 1);
    evb_state_free(s); free(tok); free(x0); free(bias);
    if (st) { evb_cost_table_free(t); return st; }
    *out = t;
    return EVB_SUCCESS;
}

int evb_time_forward(const evb_model *m, int B, int T, int repeats, double *seconds) {
    if (repeats < 1) EVB_ERROR("timing: repeats must be positive", EVB_EINVAL);
    evb_state *s = NULL;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * T);
    int st = !tok ? EVB_RAISEF(EVB_ENOMEM, "timing: out of memory") : evb_state_alloc(m, B, T, &s);
    if (!st) {
        random_tokens(tok, (size_t)B * T, m->config.vocab_size);
        s->B = B; s->T = T;
        fwd_run f = {m, s, tok};
        st = median_runs(run_forward, &f, repeats, seconds);
    }
    evb_state_free(s); free(tok);
    return st;
}

int evb_cost_table_mlp_index(const evb_cost_table *t, int kept) {
    for (int i = 0; i < t->n_mlp; i++) if (t->mlp_kept[i] == kept) return i;
    return -1;
}

double evb_cost_table_predict(const evb_cost_table *t, const int *attn_kept, const int *mlp_kept) {
    double s = t->fixed;
    for (int l = 0; l < t->layers; l++) {
        if (attn_kept[l] >= 0) s += attn_kept[l] < t->n_attn ? t->attn[attn_kept[l]] : NAN;
        if (mlp_kept[l] >= 0) {
            int i = evb_cost_table_mlp_index(t, mlp_kept[l]);
            s += i >= 0 ? t->mlp[i] : NAN;
        }
    }
    return s;
}

// ---- the cached file ----

static json_t *json_doubles(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

int evb_cost_table_write(const evb_cost_table *t, const char *path) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f}",
        "cpu", t->cpu, "compute", t->compute, "kernel", t->kernel, "threads", t->threads, "batch", t->batch,
        "seq", t->seq, "dim", t->dim, "hidden", t->hidden, "heads", t->heads, "kv_heads", t->kv_heads,
        "head_dim", t->head_dim, "vocab", t->vocab, "layers", t->layers, "repeats", t->repeats,
        "fixed", t->fixed, "dense", t->dense);
    if (!j) EVB_ERROR("timing: out of memory", EVB_ENOMEM);
    json_t *kept = json_array();
    for (int i = 0; i < t->n_mlp; i++) json_array_append_new(kept, json_integer(t->mlp_kept[i]));
    json_object_set_new(j, "attn", json_doubles(t->attn, t->n_attn));
    json_object_set_new(j, "mlp_kept", kept);
    json_object_set_new(j, "mlp", json_doubles(t->mlp, t->n_mlp));
    int st = evb_json_write_file(path, j, 2);
    json_decref(j);
    return st;
}

/* A JSON array of n seconds (finite, >= 0) into v. */
static int read_seconds(const json_t *a, int n, double *v, const char *path, const char *key) {
    if (!json_is_array(a) || (int)json_array_size(a) != n)
        EVB_ERRORF(EVB_EFORMAT, "%s: '%s' is not an array of %d times", path, key, n);
    for (int i = 0; i < n; i++) {
        const json_t *x = json_array_get(a, (size_t)i);
        if (!json_is_number(x) || !(json_number_value(x) >= 0) || !isfinite(json_number_value(x)))
            EVB_ERRORF(EVB_EFORMAT, "%s: '%s'[%d] is not a time in seconds", path, key, i);
        v[i] = json_number_value(x);
    }
    return EVB_SUCCESS;
}

static int read_string(const json_t *j, const char *key, char *out, size_t n, const char *path) {
    const json_t *v = json_object_get(j, key);
    if (!json_is_string(v) || strlen(json_string_value(v)) >= n)
        EVB_ERRORF(EVB_EFORMAT, "%s: '%s' is missing or not a string of under %zu characters", path, key, n);
    snprintf(out, n, "%s", json_string_value(v));
    return EVB_SUCCESS;
}

static int read_fields(const json_t *j, evb_cost_table *t, const char *path) {
    const char *ik[] = {"threads", "batch", "seq", "dim", "hidden", "heads", "kv_heads", "head_dim", "vocab",
                        "layers", "repeats"};
    int *iv[] = {&t->threads, &t->batch, &t->seq, &t->dim, &t->hidden, &t->heads, &t->kv_heads, &t->head_dim,
                 &t->vocab, &t->layers, &t->repeats};
    int st;
    for (size_t i = 0; i < sizeof ik / sizeof *ik; i++) {
        long long v;
        if ((st = evb_json_int(j, ik[i], 1, 0, 1, 1 << 24, &v, path))) return st;
        *iv[i] = (int)v;
    }
    if ((st = read_string(j, "cpu", t->cpu, sizeof t->cpu, path)) ||
        (st = read_string(j, "compute", t->compute, sizeof t->compute, path)) ||
        (st = read_string(j, "kernel", t->kernel, sizeof t->kernel, path)) ||
        (st = evb_json_num(j, "fixed", 1, 0, &t->fixed, path)) || (st = evb_json_num(j, "dense", 1, 0,
                &t->dense, path)))
        return st;
    if (!(t->fixed >= 0) || !(t->dense > 0)) EVB_ERRORF(EVB_EFORMAT, "%s: 'fixed' and 'dense' must be times",
                                                        path);
    return EVB_SUCCESS;
}

static int read_levels(const json_t *j, evb_cost_table *t, const char *path) {
    const json_t *kept = json_object_get(j, "mlp_kept");
    int st;
    if (!json_is_array(kept) || json_array_size(kept) < 1 || json_array_size(kept) > (size_t)t->hidden + 1)
        EVB_ERRORF(EVB_EFORMAT, "%s: 'mlp_kept' is not an array of 1 to %d counts", path, t->hidden + 1);
    t->n_mlp = (int)json_array_size(kept);
    t->n_attn = t->kv_heads + 1;
    t->attn = calloc((size_t)t->n_attn, sizeof(double));
    t->mlp = calloc((size_t)t->n_mlp, sizeof(double));
    t->mlp_kept = calloc((size_t)t->n_mlp, sizeof(int));
    if (!t->attn || !t->mlp || !t->mlp_kept) EVB_ERROR("timing: out of memory", EVB_ENOMEM);
    for (int i = 0; i < t->n_mlp; i++) {
        const json_t *x = json_array_get(kept, (size_t)i);
        long long v = json_is_integer(x) ? json_integer_value(x) : -1;
        int last = i == t->n_mlp - 1;
        if (v < 0 || v > t->hidden || (i > 0 && v <= t->mlp_kept[i - 1]) || (last && v != t->hidden))
            EVB_ERRORF(EVB_EFORMAT, "%s: 'mlp_kept'[%d] is not an ascending count in [0, %d] ending at %d",
                       path, i,
                       t->hidden, t->hidden);
        t->mlp_kept[i] = (int)v;
    }
    if ((st = read_seconds(json_object_get(j, "attn"), t->n_attn, t->attn, path, "attn")) ||
        (st = read_seconds(json_object_get(j, "mlp"), t->n_mlp, t->mlp, path, "mlp")))
        return st;
    return EVB_SUCCESS;
}

int evb_cost_table_read(const char *path, const evb_model *m, int B, int T, evb_cost_table **out,
                        int *stale) {
    *out = NULL;
    json_t *j = NULL;
    int st = evb_json_load_file(path, &j);
    if (st) return st;
    evb_cost_table *t = calloc(1, sizeof *t);
    if (!t) { json_decref(j); EVB_ERROR("timing: out of memory", EVB_ENOMEM); }
    if (!json_is_object(j)) st = EVB_RAISEF(EVB_EFORMAT, "%s: not a JSON object", path);
    if (!st) st = read_fields(j, t, path);
    if (!st) st = read_levels(j, t, path);
    json_decref(j);
    if (st) { evb_cost_table_free(t); return st; }
    evb_cost_table here;
    memset(&here, 0, sizeof here);
    describe(&here, m, B, T);
    *stale = strcmp(here.cpu, t->cpu) || strcmp(here.compute, t->compute) || strcmp(here.kernel, t->kernel) ||
             here.threads != t->threads || here.batch != t->batch || here.seq != t->seq || here.dim != t->dim ||
             here.hidden != t->hidden || here.heads != t->heads || here.kv_heads != t->kv_heads ||
             here.head_dim != t->head_dim || here.vocab != t->vocab || here.layers != t->layers;
    *out = t;
    return EVB_SUCCESS;
}
