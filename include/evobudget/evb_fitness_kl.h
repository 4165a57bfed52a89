/* evb_fitness_kl.h -- the model fitness of the search: KL(dense || compressed) per token on calibration
 * windows (EvoPress's fitness), or perplexity, behind the evb_fitness_type contract of evb_search.h.
 *
 * The dense model's outputs on the calibration windows are computed once (the teacher) and kept compactly:
 * full-vocabulary log-probabilities in float32 or float16, or for large vocabularies the top K of every
 * position with the remaining mass, whose KL is that of the two distributions coarsened to K + 1 outcomes
 * (a lower bound of the full KL; evb_teacher_kl_error measures the gap).
 *
 * A candidate gives every unit a level: a linear layer's level is a database entry (or its dense weight), an
 * attention or MLP sub-block's level is kept (0) or dropped (1). Each thread's workspace holds a shallow copy
 * of the model whose weight pointers it swaps (levels come from the shared evb_level_cache), the levels now
 * applied (only changed units are swapped), and the hidden states of the reference candidate (the parent)
 * at every block boundary of the last batch, so that an offspring's forward starts at its first changed block.
 *
 * Batches: evb_batch (seed, n_tokens) selects windows in an order drawn from the seed, until n_tokens scored
 * positions, the last window cut short; n_tokens 0 or at least all scored positions means every window. */
#ifndef EVB_FITNESS_KL_H
#define EVB_FITNESS_KL_H

#include <stddef.h>
#include <stdint.h>
#include "evobudget/evb_db.h"
#include "evobudget/evb_model.h"
#include "evobudget/evb_search.h"
#include "evobudget/evb_text.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the teacher ---- */

typedef enum evb_teacher_kind { EVB_TEACHER_F32 = 0, EVB_TEACHER_F16 = 1, EVB_TEACHER_TOPK = 2 } evb_teacher_kind;
typedef struct evb_teacher evb_teacher;

/* Runs the dense model over the windows (batch at a time, all threads) and keeps its log-probabilities. A BF16
 * model's teacher is computed in float32 (evb_state.exact): candidates scored in bfloat16 are measured against
 * the float32 dense model, and the dense model itself scores the BF16 path's own error (its KL floor). */
int  evb_teacher_build(const evb_model *m, const evb_windows *w, int batch, evb_teacher_kind kind, int topk,
                       evb_teacher **out);
void evb_teacher_free(evb_teacher *t);
size_t evb_teacher_bytes(const evb_teacher *t);
/* Sum of KL(teacher || q) over positions pos0 .. pos0 + n - 1 of window i; logq [n, V] log-probabilities. */
double evb_teacher_kl(const evb_teacher *t, int window, int pos0, const float *logq, int n, float *scratch);
/* The teacher's error: over the windows, the mean per-token KL of the compressed model given by weights[U]
 * (NULL: dense) computed from this teacher and from exact float32 log-probabilities. */
int evb_teacher_kl_error(const evb_teacher *t, evb_model *m, const evb_windows *w, int batch,
                         const float *const *weights, double *kl_teacher, double *kl_exact);

/* ---- the fitness ---- */

/* ATTN_S, MLP_S: a sub-block at structured levels (heads or channels removed, run at its smaller shapes). */
typedef enum evb_unit_kind {
    EVB_UNIT_LINEAR = 0, EVB_UNIT_ATTN = 1, EVB_UNIT_MLP = 2, EVB_UNIT_ATTN_S = 3, EVB_UNIT_MLP_S = 4
} evb_unit_kind;

typedef struct evb_fit_unit {
    int kind;          /* evb_unit_kind */
    int index;         /* the model's linear unit (l * 7 + kind), or the block of a sub-block */
    int n_levels;
    const int *entry;  /* linear: [n_levels] database entry of each level, EVB_ENTRY_DENSE (-1) for the dense
                        * weight, EVB_ENTRY_ZERO (-2) for the zero matrix (the layer removed) */
    const evb_struct_level *const *recipe; /* ATTN_S, MLP_S: [n_levels] each level as stored, NULL: dense */
} evb_fit_unit;

enum { EVB_ENTRY_DENSE = -1, EVB_ENTRY_ZERO = -2 };

typedef enum evb_metric { EVB_METRIC_KL = 0, EVB_METRIC_PPL = 1 } evb_metric;

typedef struct evb_kl_params {
    const evb_model   *m;
    const evb_windows *w;        /* the calibration windows */
    const evb_teacher *teacher;  /* required for EVB_METRIC_KL */
    evb_level_cache   *cache;    /* levels of the linear units */
    int n_units;
    const evb_fit_unit *units;   /* [n_units], in the search problem's order */
    int metric;                  /* evb_metric: KL per token, or the mean NLL per token (log perplexity) */
    int batch;                   /* windows per forward */
    size_t reuse_bytes;          /* per thread, for the parent's hidden states; 0 turns reuse off */
} evb_kl_params;

extern const evb_fitness_type evb_fitness_kl;

/* The KL fitness sums each window's KL (or NLL) in units of EVB_KL_UNIT, as integers, so that a batch split
 * into parts sums to exactly the whole: evb_fitness_kl's value is units * EVB_KL_UNIT / scored tokens. */
#define EVB_KL_UNIT (1.0 / 16777216.0)
/* Part `part` of n_parts of a candidate's batch (whole chunks of windows; see kl.c): its sum in units and
 * the batch's scored tokens. ws is a workspace of evb_fitness_kl (workspace_size/init). For spreading the
 * one or two candidates of a late selection stage over more processes than candidates. */
int evb_fitness_kl_part(const evb_kl_params *p, void *ws, const evb_genome *g, const evb_batch *b, int part, int n_parts,
                        int64_t *units, size_t *n_scored);

/* The windows a batch selects: idx[*n] and the positions used of each, len[*n] (the last may be cut short).
 * idx and len hold w->n entries. Returns the scored positions. */
size_t evb_batch_windows(const evb_windows *w, const evb_batch *b, int *idx, int *len, int *n);

#ifdef __cplusplus
}
#endif
#endif
