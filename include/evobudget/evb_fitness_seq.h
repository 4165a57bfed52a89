/* evb_fitness_seq.h -- fitnesses with the model in the loop: the compressed model's log-probabilities of
 * given token sequences, judged by a function of the caller's (a task's accuracy, the likelihood of domain
 * text, a plug-in, a worker process).
 *
 * A sequence set holds token sequences, each with the first position it wants scored (score_from: the
 * log-probabilities of tokens score_from .. len - 1 given the tokens before them) and a group: a batch takes
 * whole groups (a multiple-choice item's choices stay together). evb_fitness_seq runs the candidate's model
 * over a batch's sequences with the KL fitness's machinery (levels from the shared cache, only changed units
 * swapped, the parent's hidden states reused) and hands the log-probabilities, and the top K of every scored
 * position when asked, to a judge, which returns the fitness (lower is better).
 *
 * Batches: evb_batch (seed, n_tokens) takes groups in an order drawn from the seed until their scored
 * positions reach n_tokens; n_tokens 0, or at least all scored positions, takes every group in order. The
 * batch's sequences are forwarded in order of length, padded at the end (a causal model's earlier outputs do
 * not see the padding), so the same batch runs the same forwards in every thread and process. */
#ifndef EVB_FITNESS_SEQ_H
#define EVB_FITNESS_SEQ_H

#include <stddef.h>
#include <stdint.h>
#include "evobudget/evb_fitness_kl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- sequence sets ---- */

typedef struct evb_seqs {
    int n, cap;              /* sequences */
    int32_t *tokens;         /* all sequences' tokens, one after another */
    size_t *start;           /* [n + 1] where each sequence starts in tokens */
    int *score_from;         /* [n] first scored position, in [1, len) */
    int *group;              /* [n] group ids, >= 0 */
    size_t n_tokens, tok_cap;
} evb_seqs;

/* Appends a copy of tokens[len]. EVB_EINVAL with one line when len < 2 or score_from is outside [1, len) or
 * group < 0; EVB_ENOMEM. */
int  evb_seqs_add(evb_seqs *s, const int32_t *tokens, int len, int score_from, int group);
void evb_seqs_free(evb_seqs *s);
static inline int evb_seqs_len(const evb_seqs *s, int i) { return (int)(s->start[i + 1] - s->start[i]); }
/* Checks the set against a model: at least one sequence, every token inside the vocabulary, every sequence
 * within the model's context (max_seq_len). The message names the first sequence that is not and why. */
int  evb_seqs_check(const evb_seqs *s, const evb_model *m);
/* Scored positions of the whole set. */
size_t evb_seqs_scored(const evb_seqs *s);

/* ---- what a judge sees ---- */

/* The log-probabilities of one candidate (or the dense model) on a batch's sequences. Sequence seq[k] has
 * evb_seqs_len - score_from scored positions, at lp[off[k] ..]: lp[off[k] + j] = log p(token score_from + j
 * | the tokens before it). With top K (k > 0), top_id / top_lp [(off[k] + j) * K ..] hold the K most likely
 * next tokens at that position, most likely first. */
typedef struct evb_seq_scores {
    const evb_seqs *seqs;
    int n;                   /* sequences of the batch */
    const int *seq;          /* [n] their ids, in the set's order */
    const size_t *off;       /* [n + 1] */
    const float *lp;
    int topk;
    const int32_t *top_id;
    const float *top_lp;
} evb_seq_scores;

/* Position `pos` of the set's sequence `id` within the scores: *out points at the log-probabilities of
 * tokens pos .. pos + count - 1 (and *top_id / *top_lp at their top K when not NULL). EVB_EINVAL with one
 * line when the sequence is not in the batch or the positions are not all scored. */
int evb_seq_scores_find(const evb_seq_scores *s, int id, int pos, int count, const float **out,
                        const int32_t **top_id, const float **top_lp);

/* The judge: the fitness of a candidate from its scores. Like evb_fitness_type, with a workspace per thread
 * (may be 0 bytes); judge runs in several threads at once, each with its own workspace. */
typedef struct evb_seq_judge {
    const char *name;
    size_t (*workspace_size)(const void *ctx);
    int    (*workspace_init)(void *w, const void *ctx);   /* may be NULL */
    void   (*workspace_destroy)(void *w);                 /* may be NULL */
    int    (*judge)(const void *ctx, void *w, const evb_genome *g, const evb_batch *b, const evb_seq_scores *s,
                    double *fitness);
} evb_seq_judge;

/* ---- the fitness ---- */

typedef struct evb_seq_params {
    evb_kl_params model;     /* m, cache, n_units, units, batch, reuse_bytes; w, teacher and metric are not used */
    const evb_seqs *seqs;
    int topk;                /* K most likely tokens of every scored position, 0: none */
    const evb_seq_judge *judge;
    const void *judge_ctx;
    evb_windows w;           /* private: the sequences padded to one width (evb_seq_params_init) */
} evb_seq_params;

/* Fills p's private part from p->seqs (checked against p->model.m); evb_seq_params_free releases it. */
int  evb_seq_params_init(evb_seq_params *p);
void evb_seq_params_free(evb_seq_params *p);

extern const evb_fitness_type evb_fitness_seq;

/* The scores of the dense model (no unit changed) on every sequence of the set, with the set's top K; kept by
 * the caller (evb_seq_scores_release). Uses p's model, all its threads. */
int  evb_seq_dense(const evb_seq_params *p, evb_seq_scores *out);
void evb_seq_scores_release(evb_seq_scores *s);

/* Which sequences a batch takes: writes their ids in the set's order to seq[] (room for seqs->n) and returns
 * how many; *scored gets their scored positions. */
int evb_seq_batch(const evb_seqs *s, const evb_batch *b, int *seq, size_t *scored);

/* ---- a weighted sum of fitnesses ---- */

/* sum_i weight[i] * fitness_i, each part with its own params and workspace; the candidate, its parent and the
 * batch go to every part. */
typedef struct evb_sum_params {
    int n;
    const evb_fitness_type *part[4];
    const void *params[4];
    double weight[4];
} evb_sum_params;

extern const evb_fitness_type evb_fitness_sum;

#ifdef __cplusplus
}
#endif
#endif
