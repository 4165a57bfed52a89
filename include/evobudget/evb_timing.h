/* evb_timing.h -- speed costs: the measured time of every structured level of a model's sub-blocks on the
 * machine and compute path in use, and the forward's measured time of a model as it stands.
 *
 * All blocks of a model share their shapes, so a level's time is that of any block: each (sub-block, kept
 * count) is timed with every block at that level and the other kind of sub-block skipped (so that the weights
 * stream through the caches as in a whole forward), divided by the blocks, at the calibration shape (B
 * windows of T positions): the median of `repeats` runs, each after one warm-up, the levels taken in rounds;
 * the medians are then made non-decreasing in the kept count (pool-adjacent-violators: noise otherwise lets a
 * level look faster than a smaller one). The fixed costs (embedding, final norm, classifier) are timed the
 * same way. A model's predicted forward time is the fixed cost plus the times of its sub-blocks at their
 * levels; evb_time_forward measures the real one.
 *
 * The table is cached as JSON (evb_cost_table_write, conventionally timings.json beside the level database)
 * with what it was measured on: the CPU's model name, the compute path and its kernel, the threads, the shape
 * of the model and of the batch. evb_cost_table_read gives EVB_EIO for a missing file,
 * EVB_EFORMAT for a damaged one, and reports a table measured on something else through *stale (the caller
 * measures again). */
#ifndef EVB_TIMING_H
#define EVB_TIMING_H

#include "evobudget/evb_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evb_cost_table {
    char   cpu[128];      /* /proc/cpuinfo's model name */
    char   compute[8];    /* "f32" or "bf16" */
    char   kernel[64];    /* the BLAS core or oneDNN kernel */
    int    threads, batch, seq;
    int    dim, hidden, heads, kv_heads, head_dim, vocab, layers;
    int    repeats;
    double fixed;         /* seconds: embedding, final norm, classifier */
    double dense;         /* seconds: the dense model's whole forward, measured */
    int    n_attn;        /* kv_heads + 1: kept KV groups 0 .. kv_heads */
    double *attn;         /* [n_attn] seconds of an attention sub-block keeping g groups */
    int    n_mlp;
    int   *mlp_kept;      /* [n_mlp] ascending kept channel counts, the last = hidden */
    double *mlp;          /* [n_mlp] seconds */
} evb_cost_table;

/* Measures the table of m (not changed on return) for the MLP kept counts mlp_kept[n_mlp] (ascending, each in
 * [0, F]; F is added when missing) at B x T. progress (may be NULL) after each level. */
int  evb_cost_table_measure(evb_model *m, int B, int T, const int *mlp_kept, int n_mlp, int repeats,
                            void (*progress)(void *ctx, int done, int total), void *ctx,
                                    evb_cost_table **out);
void evb_cost_table_free(evb_cost_table *t);
int  evb_cost_table_write(const evb_cost_table *t, const char *path);
/* Reads a table; *stale = 1 when it was measured on another CPU, path, thread count, model shape or batch
 * shape than m at B x T (the table is still returned). */
int  evb_cost_table_read(const char *path, const evb_model *m, int B, int T, evb_cost_table **out,
                         int *stale);
/* The index of kept count n in the MLP levels, or -1. */
int  evb_cost_table_mlp_index(const evb_cost_table *t, int kept);
/* The predicted forward time of a model whose block l keeps attn_kept[l] KV groups and mlp_kept[l] channels
 * (-1: the sub-block dropped, costing nothing). */
double evb_cost_table_predict(const evb_cost_table *t, const int *attn_kept, const int *mlp_kept);

/* The median of `repeats` whole forwards (after one warm-up) of m as it stands on B x T random tokens. */
int evb_time_forward(const evb_model *m, int B, int T, int repeats, double *seconds);

#ifdef __cplusplus
}
#endif
#endif
