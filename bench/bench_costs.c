/* bench_costs.c -- how well the cost table of structured levels (evb_timing.h) predicts the forward time of
 * whole structured models: the table is measured, then N random configurations (every sub-block at a random
 * level of the table: kept KV groups 0..G, kept MLP channels on the table's grid, or dropped) are built and
 * their whole forward timed; prints predicted against measured and the error's distribution.
 *
 *   bench_costs --model DIR [--compute auto|f32|bf16] [--batch B] [--seq T] [--repeats R] [--configs N]
 *               [--steps S] [--seed X] [--drop P]
 */
#include "evobudget/evobudget.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_timing.h"
#include "bench/bench_util.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct opts { const char *model; int compute, batch, seq, repeats, configs, steps,
                     drop_pct; unsigned seed; } opts;

static int parse(int argc, char **argv, opts *o) {
    static const struct option lo[] = {
        {"model", 1, 0, 'm'}, {"compute", 1, 0, 'c'}, {"batch", 1, 0, 'b'}, {"seq", 1, 0, 't'}, {"repeats",
                1, 0, 'r'},
        {"configs", 1, 0, 'n'}, {"steps", 1, 0, 's'}, {"seed", 1, 0, 'x'}, {"drop", 1, 0, 'd'}, {0, 0, 0, 0}};
    *o = (opts){NULL, EVB_COMPUTE_AUTO, 1, 512, 5, 20, 8, 0, 1};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'm': o->model = optarg; break;
        case 'c': o->compute = evb_compute_parse(optarg); break;
        case 'b': o->batch = atoi(optarg); break;
        case 't': o->seq = atoi(optarg); break;
        case 'r': o->repeats = atoi(optarg); break;
        case 'n': o->configs = atoi(optarg); break;
        case 's': o->steps = atoi(optarg); break;
        case 'x': o->seed = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': o->drop_pct = atoi(optarg); break;
        default: return 1;
        }
    }
    if (!o->model || o->compute < 0 || o->batch < 1 || o->seq < 1 || o->repeats < 1 || o->configs < 1 ||
        o->steps < 1) {
        fprintf(stderr,
                "usage: bench_costs --model DIR [--compute auto|f32|bf16] [--batch B] [--seq T] [--repeats R]"
                        " [--configs N] [--steps S] [--seed X] [--drop PERCENT]\n");
        return 1;
    }
    return 0;
}

/* Applies a configuration (attn[l] kept groups, mlp[l] kept channels, -1 dropped) to m; levels into bl[2 L].
 * */
static int apply_config(evb_model *m, const int *attn, const int *mlp, evb_block_level **bl) {
    const evb_config *c = &m->config;
    int *kept = malloc(sizeof(int) * (size_t)(c->hidden_dim + 1));
    for (int i = 0; i <= c->hidden_dim; i++) kept[i] = i;
    int st = 0;
    for (int l = 0; l < c->n_layers && !st; l++) {
        int k[2] = {attn[l], mlp[l]}, full[2] = {c->n_kv_heads, c->hidden_dim};
        for (int sub = 0; sub < 2 && !st; sub++) {
            bl[2 * l + sub] = NULL;
            if (sub == 0) m->layers[l].skip_attn = k[0] < 0; else m->layers[l].skip_mlp = k[1] < 0;
            if (k[sub] < 0 || k[sub] == full[sub]) continue;
            float *bias = calloc((size_t)c->dim,
                                 sizeof(float));   /* a compensation bias costs what FLAP's does */
            st = evb_block_level_make(m, l, sub, kept, k[sub], NULL, bias, &bl[2 * l + sub]);
            free(bias);   /* zero: the level holds its own copy */
            if (!st) evb_block_level_apply(m, bl[2 * l + sub]);
        }
    }
    free(kept);
    return st;
}

static void clear_config(evb_model *m, evb_block_level **bl) {
    for (int l = 0; l < m->config.n_layers; l++) {
        for (int sub = 0; sub < 2; sub++) { evb_block_level_clear(m, l, sub); evb_block_level_free(bl[2 * l + sub]); }
        m->layers[l].structured = 0; m->layers[l].skip_attn = m->layers[l].skip_mlp = 0;
    }
}

int main(int argc, char **argv) {
    opts o;
    if (parse(argc, argv, &o)) return 2;
    evb_init();
    evb_model *m = NULL;
    if (evb_model_load_as(o.model, (evb_compute)o.compute, &m)) { fprintf(stderr, "%s\n",
            evb_last_error()); return 1; }
    const evb_config *c = &m->config;
    int L = c->n_layers, *grid = malloc(sizeof(int) * (size_t)o.steps);
    for (int i = 0; i < o.steps; i++) grid[i] = (int)((long)c->hidden_dim * i / o.steps);
    evb_cost_table *t = NULL;
    if (evb_cost_table_measure(m, o.batch, o.seq, grid, o.steps, o.repeats, NULL, NULL, &t)) {
        fprintf(stderr, "%s\n", evb_last_error()); return 1;
    }
    printf("# %s, %s (%s), %d threads, %d x %d tokens, median of %d\n", t->cpu, t->compute, t->kernel,
           t->threads,
           o.batch, o.seq, o.repeats);
    printf("# fixed %.4f s, dense forward %.4f s measured, %.4f s predicted\n", t->fixed, t->dense,
           t->fixed + L * (t->attn[t->n_attn - 1] + t->mlp[t->n_mlp - 1]));
    printf("# attention by kept KV groups:");
    for (int g = 0; g < t->n_attn; g++) printf(" %d:%.5f", g, t->attn[g]);
    printf("\n# MLP by kept channels:");
    for (int i = 0; i < t->n_mlp; i++) printf(" %d:%.5f", t->mlp_kept[i], t->mlp[i]);
    printf("\n");
    printf("config\tpredicted_s\tmeasured_s\terror_pct\tpredicted_speedup\tmeasured_speedup\n");
    int *attn = malloc(sizeof(int) * L), *mlp = malloc(sizeof(int) * L);
    double *err = malloc(sizeof(double) * o.configs);
    evb_block_level **bl = calloc((size_t)2 * L, sizeof *bl);
    unsigned seed = o.seed;
    for (int n = 0; n < o.configs; n++) {
        for (int l = 0; l < L; l++) {
            attn[l] = rand_r(&seed) % 100 < o.drop_pct ? -1 : rand_r(&seed) % t->n_attn;
            mlp[l] = rand_r(&seed) % 100 < o.drop_pct ? -1 : t->mlp_kept[rand_r(&seed) % t->n_mlp];
        }
        double pred = evb_cost_table_predict(t, attn, mlp), meas = 0;
        if (apply_config(m, attn, mlp, bl) || evb_time_forward(m, o.batch, o.seq, o.repeats, &meas)) {
            fprintf(stderr, "%s\n", evb_last_error()); return 1;
        }
        clear_config(m, bl);
        err[n] = 100.0 * (pred - meas) / meas;
        printf("%d\t%.5f\t%.5f\t%+.2f\t%.3f\t%.3f\n", n, pred, meas, err[n], t->dense / pred,
               t->dense / meas);
        fflush(stdout);
    }
    double abs_sum = 0, mx = 0;
    for (int n = 0; n < o.configs; n++) { abs_sum += fabs(err[n]); if (fabs(err[n]) > mx) mx = fabs(err[n]); }
    qsort(err, (size_t)o.configs, sizeof *err, bench_cmp_double);
    printf("# error %%: min %+.2f, median %+.2f, max %+.2f, mean |error| %.2f, max |error| %.2f\n", err[0],
           err[o.configs / 2], err[o.configs - 1], abs_sum / o.configs, mx);
    evb_cost_table_free(t); free(attn); free(mlp); free(err); free(bl); free(grid);
    evb_model_free(m);
    return 0;
}
