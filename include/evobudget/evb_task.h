/* evb_task.h -- a multiple-choice task as a fitness (`--fitness task:FILE.jsonl`) and as an evaluation.
 *
 * A task file is JSON Lines, one item per line, in the lm-evaluation-harness multiple-choice shape:
 *
 *     {"context": "The opening text", "choices": [" one ending", " another", ...], "gold": 0}
 *
 * Each choice becomes one sequence, context + choice, tokenized whole with the model's BOS; its scored
 * positions are the tokens after those of the context tokenized alone (lm-evaluation-harness's split). An
 * item is one group: a batch takes whole items.
 *
 * Scoring an item: s_c = (the sum of choice c's token log-probabilities, in order, in double) / its token
 * count (the length-normalised log-likelihood); m = max_c s_c; ce = m + log(sum_c exp(s_c - m)) - s_gold,
 * choices in order (the cross-entropy of the gold choice under the softmax of the s_c); the item is right
 * when its first largest s_c is the gold one. The fitness of a batch is the mean ce of its items, in item
 * order (lower is better; log(number of choices) is chance); the accuracy is the fraction right. */
#ifndef EVB_TASK_H
#define EVB_TASK_H

#include "evobudget/evb_fitness_seq.h"
#include "evobudget/evb_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVB_TASK_MAX_CHOICES 64

typedef struct evb_task {
    int n_items;
    int *first;              /* [n_items] the item's first sequence; its choices are first .. first + n_choices - 1 */
    int *n_choices;          /* [n_items] */
    int *gold;               /* [n_items] */
    evb_seqs seqs;           /* group = item */
} evb_task;

/* Reads and tokenizes a task file. One line naming the file, the line and what is wrong for: a line that is
 * not a JSON object, a missing or mistyped field, fewer than 2 or more than EVB_TASK_MAX_CHOICES choices, a
 * gold index outside them, an empty choice, a file with no item. max_len > 0 refuses an item longer than that
 * many tokens (the model's context). */
int  evb_task_load(const char *path, const evb_tokenizer *t, int max_len, evb_task *out);
void evb_task_free(evb_task *t);

/* Context + continuation as a sequence of s (see above). */
int evb_seqs_add_text(evb_seqs *s, const evb_tokenizer *t, const char *context, const char *continuation, int group);

/* The mean cross-entropy and the accuracy of the items whose sequences are in the scores (every choice of an
 * item must be there); *n_items gets their count. */
int evb_task_score(const evb_task *t, const evb_seq_scores *s, double *ce, double *accuracy, int *n_items);

/* The task on model m as it is (its weights as set; evb_eval_set_weights): every item, batch sequences per
 * forward. */
int evb_task_eval(const evb_model *m, const evb_task *t, int batch, double *ce, double *accuracy);

/* The judge of evb_fitness_seq: ctx is the evb_task; the fitness is evb_task_score's ce. */
extern const evb_seq_judge evb_judge_task;

#ifdef __cplusplus
}
#endif
#endif
