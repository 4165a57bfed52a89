/* evb_worker.h -- a fitness computed by external worker processes in any language (docs/worker-protocol.md).
 *
 * Each search thread owns one long-lived worker, started with `/bin/sh -c COMMAND` in a process group of its
 * own, and talks msgpack to it over its stdin and stdout: a hello (protocol version and the problem), then one
 * request per candidate (id, level per unit, tokens, batch seed), answered by the fitness. A worker that
 * exits, stays silent past the timeout, answers with something that is not a result map, with another id or
 * with a non-finite value, or sends a message beyond the limits below is reported through the log callback
 * by name, killed with its whole process group (a shell's children, whatever the worker forked) and
 * restarted, and the candidate is sent again, at most `retries` times; then evaluate fails with a message
 * naming the worker and what it did. A stopped worker's group is always killed and the worker reaped, so
 * no process of it outlives the workspace (unless it left the group itself, with setsid).
 *
 * Protocol 2, with a model in the loop: the hello also describes the model, and the worker's ready registers
 * token sequences (as tokens, or as context and continuation text tokenized like lm-evaluation-harness);
 * every request then carries the compressed model's log-probabilities of the batch's registered sequences
 * (and the top K of every scored position, when asked). evb_worker_register reads and checks what one
 * worker registers; evb_judge_worker is the judge of evb_fitness_seq, and every worker it starts or
 * restarts must register the very same. Without a model (evb_worker_params.model NULL) the messages are
 * protocol 1's, and protocol-1 workers keep working.
 *
 * Limits: a message from a worker is read into a buffer of at most EVB_WORKER_MAX_MESSAGE bytes (a protocol-2
 * ready: EVB_WORKER_MAX_READY, a buffer released once the ready is read); its msgpack headers are checked
 * before it is decoded, so a string, binary or extension longer than the limit is refused at its header, and
 * an array of more than EVB_WORKER_MAX_ELEMENTS elements or a map of more pairs, or nesting deeper than
 * EVB_WORKER_MAX_DEPTH, is refused before anything is allocated for it. A worker that does not read its
 * stdin is timed out like one that does not answer. */
#ifndef EVB_WORKER_H
#define EVB_WORKER_H

#include "evobudget/evb_fitness_seq.h"
#include "evobudget/evb_search.h"
#include "evobudget/evb_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVB_WORKER_PROTOCOL 2
#define EVB_WORKER_MAX_MESSAGE (1 << 20) /* bytes of one message from a worker */
#define EVB_WORKER_MAX_READY (64 << 20)  /* bytes of a protocol-2 ready message (it registers the sequences) */
#define EVB_WORKER_MAX_ELEMENTS 65536    /* elements of one array, or pairs of one map */
#define EVB_WORKER_MAX_DEPTH 16          /* arrays and maps inside one another */

/* The model a protocol-2 worker's sequences are checked against and tokenized with; sent in the hello. */
typedef struct evb_worker_model {
    int vocab_size, max_len;      /* tokens must be in [0, vocab_size); a sequence at most max_len tokens */
    int bos, eos;                 /* the tokenizer's, -1 when none */
    const evb_tokenizer *tok;     /* tokenizes sequences registered as text */
} evb_worker_model;

typedef struct evb_worker_params {
    const char *command;          /* run with /bin/sh -c */
    const char *problem_path;     /* sent in the hello ("" when none) */
    int n_units;
    const int *n_levels;          /* [n_units] */
    double budget;
    double timeout_s;             /* a request (or the hello) unanswered, or unread, for this long: the worker is hung */
    int retries;                  /* restarts for one candidate before evaluate fails */
    void (*log)(void *ctx, const char *line); /* one line per incident; may be NULL */
    void *log_ctx;
    const evb_worker_model *model; /* NULL: no model (protocol 1 messages) */
    const evb_seqs *registered;    /* with a model: what evb_worker_register read, which every worker must register */
    int topk;                      /* with a model: the top K evb_worker_register read */
} evb_worker_params;

/* The fitness type: its workspace holds one worker (started at workspace_init, stopped at destroy). */
extern const evb_fitness_type evb_fitness_worker;

/* With a model: starts one worker, says hello, reads what its ready registers (sequences, top K), checks it
 * against p->model, says bye and stops it. seqs starts empty ({0}) and, on success, is the caller's to
 * evb_seqs_free. EVB_EINVAL (seqs left empty) with one line naming the worker, the sequence and what is
 * wrong: a token outside the vocabulary, a sequence beyond max_len, a score_from outside [1, len), a ready
 * without sequences (a protocol-1 worker), a worker that does not start or answer. */
int evb_worker_register(const evb_worker_params *p, evb_seqs *seqs, int *topk);
/* The judge of evb_fitness_seq that asks workers (protocol 2): ctx is the evb_worker_params with model and
 * registered; each workspace holds one worker. */
extern const evb_seq_judge evb_judge_worker;

#ifdef __cplusplus
}
#endif
#endif
