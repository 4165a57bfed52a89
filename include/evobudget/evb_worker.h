/* evb_worker.h -- a fitness computed by external worker processes in any language (docs/worker-protocol.md).
 *
 * Each search thread owns one long-lived worker, started with `/bin/sh -c COMMAND`, and talks msgpack to it
 * over its stdin and stdout: a hello (protocol version and the problem), then one request per candidate
 * (id, level per unit, tokens, batch seed), answered by the fitness. A worker that exits, stays silent past
 * the timeout, answers with something that is not a result map, with another id or with a non-finite value
 * is reported through the log callback by name, killed and restarted, and the candidate is sent again, at
 * most `retries` times; then evaluate fails with a message naming the worker and what it did. */
#ifndef EVB_WORKER_H
#define EVB_WORKER_H

#include "evobudget/evb_search.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVB_WORKER_PROTOCOL 1

typedef struct evb_worker_params {
    const char *command;          /* run with /bin/sh -c */
    const char *problem_path;     /* sent in the hello ("" when none) */
    int n_units;
    const int *n_levels;          /* [n_units] */
    double budget;
    double timeout_s;             /* a request (or the hello) unanswered for this long: the worker is hung */
    int retries;                  /* restarts for one candidate before evaluate fails */
    void (*log)(void *ctx, const char *line); /* one line per incident; may be NULL */
    void *log_ctx;
} evb_worker_params;

/* The fitness type: its workspace holds one worker (started at workspace_init, stopped at destroy). */
extern const evb_fitness_type evb_fitness_worker;

#ifdef __cplusplus
}
#endif
#endif
