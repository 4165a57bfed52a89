/* evb_plugin.h -- a fitness in a shared object, for `evobudget search --problem FILE --fitness-plugin lib.so`
 * and for programs that link the library.
 *
 * The shared object exports one function, evb_plugin_entry, returning a description of the plug-in:
 *
 *     #include <evobudget/evb_plugin.h>
 *     static const evb_plugin me = {EVB_PLUGIN_ABI, "my-fitness", &my_fitness_type, my_create, my_destroy};
 *     const evb_plugin *evb_plugin_entry(void) { return &me; }
 *
 * evobudget checks abi against EVB_PLUGIN_ABI and refuses another value. create receives the problem file's
 * path and the units' level counts and returns the fitness's params (read-only during the search; NULL is an
 * error, reported with evb_last_error's message when the plug-in records one through evb_errorf); destroy
 * releases them. The fitness type follows evb_search.h's contract (workspaces per thread, no OpenMP regions
 * of its own, lower is better). examples/plugin/ holds a complete plug-in.
 *
 * With a model (ABI 2: `evobudget search --model DIR --target-... --fitness-plugin lib.so [--fitness-arg S]`),
 * evobudget calls create_model instead of create: the plug-in registers the token sequences it wants scored
 * (evb_plugin_api.add_sequence / add_text, evb_fitness_seq.h's sequence sets) and the top K it wants, and
 * returns its params. For every candidate, evobudget runs the compressed model over the batch's sequences
 * (whole groups, chosen by the batch as for every fitness) and calls evaluate_model, which reads what it
 * needs through the api: the batch's sequence ids, the candidate's log-probabilities at scored positions,
 * their top K, the dense model's log-probabilities, the candidate's levels. evaluate_model runs in several
 * threads at once (params are read-only); it returns EVB_SUCCESS and a fitness (lower is better) or an
 * error. An api call that asks for a sequence outside the batch or positions it did not register returns
 * EVB_EINVAL, and the search stops with one line naming the plug-in and the request, whatever the plug-in
 * returns. A plug-in built with ABI 1 headers (create and fitness only) keeps working with --problem. */
#ifndef EVB_PLUGIN_H
#define EVB_PLUGIN_H

#include "evobudget/evb_fitness_seq.h"
#include "evobudget/evb_search.h"
#include "evobudget/evb_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVB_PLUGIN_ABI 2

typedef struct evb_plugin_host evb_plugin_host;           /* registration, during create_model */
typedef struct evb_plugin_candidate evb_plugin_candidate; /* one candidate on one batch, during evaluate_model */

typedef struct evb_plugin_api {
    int abi;                                   /* EVB_PLUGIN_ABI of evobudget */
    int vocab_size, max_len, bos, eos;         /* the model's vocabulary, context, BOS and EOS ids (-1: none) */
    int n_units;
    /* create_model: a sequence's id (>= 0, in order from 0), or a negative status with evb_last_error's message */
    int (*add_sequence)(evb_plugin_host *h, const int32_t *tokens, int len, int score_from, int group);
    int (*add_text)(evb_plugin_host *h, const char *context, const char *continuation, int group);
    int (*set_topk)(evb_plugin_host *h, int k); /* 0..64 */
    /* evaluate_model */
    int (*batch)(const evb_plugin_candidate *c, const int **ids); /* the batch's sequences, ids ascending */
    int (*positions)(const evb_plugin_candidate *c, int id, int *first, int *count); /* a sequence's scored positions */
    int (*logprobs)(const evb_plugin_candidate *c, int id, int pos, int count, float *out);
    int (*topk)(const evb_plugin_candidate *c, int id, int pos, int32_t *ids, float *lp); /* K of one position */
    int (*dense_logprobs)(const evb_plugin_candidate *c, int id, int pos, int count, float *out);
    const int16_t *(*levels)(const evb_plugin_candidate *c); /* [n_units] */
} evb_plugin_api;

typedef struct evb_plugin {
    int abi;                                   /* EVB_PLUGIN_ABI of the headers it was built with: 1 or 2 */
    const char *name;
    const evb_fitness_type *fitness;           /* problem files: the fitness of levels (may be NULL in ABI 2) */
    void *(*create)(const char *problem_path, int n_units, const int *n_levels);
    void  (*destroy)(void *params);
    /* ABI 2: with a model (NULL when the plug-in scores problem files only) */
    void *(*create_model)(const evb_plugin_api *api, evb_plugin_host *host, const char *arg);
    int   (*evaluate_model)(const void *params, const evb_plugin_api *api, const evb_plugin_candidate *c, double *fitness);
} evb_plugin;

typedef const evb_plugin *(*evb_plugin_entry_fn)(void);
#define EVB_PLUGIN_ENTRY "evb_plugin_entry"

/* ---- evobudget's side of a plug-in with a model ---- */

/* A loaded ABI 2 plug-in with its registered sequences and the dense model's scores of them. */
typedef struct evb_plugin_model {
    const evb_plugin *pl;
    void *params;            /* create_model's */
    evb_seqs seqs;
    int topk;
    evb_seq_scores dense;    /* evb_plugin_model_dense */
    const evb_tokenizer *tok;
    evb_plugin_api api;
} evb_plugin_model;

/* Checks pl (ABI 1 or 2, an ABI 2 plug-in with both model functions), calls create_model with arg and checks
 * what it registered against m (evb_seqs_check). Errors name the plug-in and what is wrong. */
int  evb_plugin_model_create(const evb_plugin *pl, const evb_model *m, const evb_tokenizer *t, const char *arg,
                             int n_units, evb_plugin_model **out);
/* The dense model's scores, for dense_logprobs: p is the sequence fitness over pm->seqs. */
int  evb_plugin_model_dense(evb_plugin_model *pm, const evb_seq_params *p);
void evb_plugin_model_free(evb_plugin_model *pm);
/* The judge of evb_fitness_seq that calls the plug-in: ctx is the evb_plugin_model. */
extern const evb_seq_judge evb_judge_plugin;

#ifdef __cplusplus
}
#endif
#endif
