/* mpi.h -- spreading a search's batch evaluations over MPI ranks (the evobudget-mpi program).
 *
 * Rank 0 runs the search; its batch evaluator (evb_mpi_batch, an evb_batch_fn) sends the candidates of a
 * batch as level vectors to every rank, scores its own share locally, and gathers the fitness values. The
 * other ranks hold the same model, database and fitness and serve those requests (evb_mpi_serve) until rank
 * 0 stops them. A batch of at least as many candidates as threads in all is split by candidates, in
 * proportion to each rank's threads; a smaller one (EvoPress's late stages: one or two candidates on many
 * tokens) is scored one candidate at a time per rank, each forward using all the rank's threads, and when
 * there are fewer candidates than ranks and the fitness is the KL one, split by tokens: each candidate's
 * ranks score one part of it (whole chunks of windows, evb_fitness_kl_part).
 * Either way every candidate's value is the one a single process computes, bit for bit. */
#ifndef EVB_EVALUATORS_MPI_H
#define EVB_EVALUATORS_MPI_H
#include "evobudget/evb_fitness_kl.h"
#include "evobudget/evb_search.h"

typedef struct evb_mpi evb_mpi;

/* Collective: every rank calls it. kp: the KL fitness's parameters when it is the fitness (token splitting),
 * else NULL. */
int  evb_mpi_create(const evb_kl_params *kp, evb_mpi **out);
int  evb_mpi_rank(const evb_mpi *mp);
int  evb_mpi_size(const evb_mpi *mp);
/* Ranks > 0: scores what rank 0 sends with the local search's fitness (evb_search_evaluate_local), until
 * evb_mpi_stop. */
int  evb_mpi_serve(evb_mpi *mp, evb_search *local);
/* Rank 0: the batch evaluator to give evb_search_set_batch, with mp as its context. */
int  evb_mpi_batch(void *mp, evb_search *s, const int16_t *levels, int n, const int16_t *ref, const evb_batch *b,
                   double *fitness);
/* Rank 0: releases the serving ranks. */
void evb_mpi_stop(evb_mpi *mp);
void evb_mpi_free(evb_mpi *mp);
#endif
