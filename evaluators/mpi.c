/* mpi.c -- a search's batch evaluations spread over MPI ranks (see mpi.h). Built into evobudget-mpi only.
 *
 * Messages from rank 0 to rank r (tag TASK): a header of 8 int64 {op, n, U, has_ref, batch seed, batch
 * tokens, first, count}, then the n candidates' levels (int16 [n U]) and the reference (int16 [U]) when
 * has_ref. op CANDIDATES: score candidates [first, first + count) of the n; op PARTS: score this rank's
 * items (rank_items: a part of one candidate, or whole candidates, one at a time); op STOP: return. Replies
 * (tag RESULT): int64 status, then the count fitness values (double) or the units of each item and the
 * scored tokens (int64), and on an error its message (char [512]). */
#include "evaluators/mpi.h"
#include "evobudget/evb_status.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { TAG_TASK = 11, TAG_RESULT = 12 };
enum { OP_STOP = 0, OP_CANDIDATES = 1, OP_PARTS = 2 };
#define MSG_LEN 512

struct evb_mpi {
    int rank, size;
    const evb_kl_params *kp;     /* NULL: no token splitting */
    evb_kl_params kp_parts;      /* kp without the reuse buffer: parts never reuse */
    int n_threads;
    int *threads, *part0;        /* [size]: threads of each rank, first part of each rank */
    int total_parts;
    void **kws;                  /* [n_threads] KL workspaces for parts, made on first use */
};

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int evb_mpi_create(const evb_kl_params *kp, evb_mpi **out) {
    evb_mpi *mp = calloc(1, sizeof *mp);
    if (!mp) EVB_ERROR("out of memory", EVB_ENOMEM);
    MPI_Comm_rank(MPI_COMM_WORLD, &mp->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mp->size);
    mp->kp = kp;
    if (kp) { mp->kp_parts = *kp; mp->kp_parts.reuse_bytes = 0; }
    mp->n_threads = max_threads();
    mp->threads = malloc(sizeof(int) * mp->size);
    mp->part0 = malloc(sizeof(int) * mp->size);
    if (!mp->threads || !mp->part0) { evb_mpi_free(mp); EVB_ERROR("out of memory", EVB_ENOMEM); }
    MPI_Allgather(&mp->n_threads, 1, MPI_INT, mp->threads, 1, MPI_INT, MPI_COMM_WORLD);
    for (int r = 0; r < mp->size; r++) { mp->part0[r] = mp->total_parts; mp->total_parts += mp->threads[r]; }
    *out = mp;
    return EVB_SUCCESS;
}

int evb_mpi_rank(const evb_mpi *mp) { return mp->rank; }
int evb_mpi_size(const evb_mpi *mp) { return mp->size; }

void evb_mpi_free(evb_mpi *mp) {
    if (!mp) return;
    for (int t = 0; mp->kws && t < mp->n_threads; t++) {
        if (mp->kws[t] && evb_fitness_kl.workspace_destroy) evb_fitness_kl.workspace_destroy(mp->kws[t]);
        free(mp->kws[t]);
    }
    free(mp->kws); free(mp->threads); free(mp->part0);
    free(mp);
}

static int part_workspaces(evb_mpi *mp) {
    if (mp->kws) return EVB_SUCCESS;
    mp->kws = calloc((size_t)mp->n_threads, sizeof(void *));
    if (!mp->kws) EVB_ERROR("out of memory", EVB_ENOMEM);
    for (int t = 0; t < 1; t++) { /* the parts run one at a time, the forward using every thread */
        mp->kws[t] = malloc(evb_fitness_kl.workspace_size(&mp->kp_parts));
        if (!mp->kws[t]) EVB_ERROR("out of memory for a fitness workspace", EVB_ENOMEM);
        int st = evb_fitness_kl.workspace_init(mp->kws[t], &mp->kp_parts);
        if (st) { free(mp->kws[t]); mp->kws[t] = NULL; return st; }
    }
    return EVB_SUCCESS;
}

/* A batch of fewer candidates than threads in all is scored one candidate (or one part of one) at a time per
 * rank, each forward using all the rank's threads. With n <= R ranks, candidate i owns ranks
 * [i R / n, (i + 1) R / n), each scoring one part of it; with more, rank r scores candidates
 * [r n / R, (r + 1) n / R) whole. Writes the items of rank r: candidate, part and parts of each. */
static int rank_items(int r, int n, int R, int *cand, int *part, int *n_parts) {
    if (n <= R) {
        int i = 0;
        while (i + 1 < n && (int)((int64_t)(i + 1) * R / n) <= r) i++;
        int first = (int)((int64_t)i * R / n), last = (int)((int64_t)(i + 1) * R / n);
        cand[0] = i; part[0] = r - first; n_parts[0] = last - first;
        return 1;
    }
    int a = (int)((int64_t)r * n / R), b = (int)((int64_t)(r + 1) * n / R);
    for (int i = a; i < b; i++) { cand[i - a] = i; part[i - a] = 0; n_parts[i - a] = 1; }
    return b - a;
}

/* This rank's items: units [n_items]; *scored the batch's tokens. */
static int score_parts(evb_mpi *mp, const int16_t *levels, int n, int U, const evb_batch *b, int64_t *units, int *n_items,
                       size_t *scored) {
    int st = part_workspaces(mp);
    if (st) return st;
    int *cand = malloc(sizeof(int) * 3 * (n + 1)), *part = cand + n + 1, *np = part + n + 1;
    if (!cand) EVB_ERROR("out of memory", EVB_ENOMEM);
    *n_items = rank_items(mp->rank, n, mp->size, cand, part, np);
    for (int k = 0; !st && k < *n_items; k++) {
        evb_genome g = {U, levels + (size_t)cand[k] * U};
        st = evb_fitness_kl_part(&mp->kp_parts, mp->kws[0], &g, b, part[k], np[k], &units[k], scored);
    }
    free(cand);
    return st;
}

/* Sends the task header and the candidates to rank r. */
static void send_task(int r, int64_t op, int n, int U, const int16_t *levels, const int16_t *ref, const evb_batch *b,
                      int first, int count) {
    int64_t hdr[8] = {op, n, U, ref != NULL, (int64_t)b->seed, (int64_t)b->n_tokens, first, count};
    MPI_Send(hdr, 8, MPI_INT64_T, r, TAG_TASK, MPI_COMM_WORLD);
    MPI_Send(levels, n * U, MPI_INT16_T, r, TAG_TASK, MPI_COMM_WORLD);
    if (ref) MPI_Send(ref, U, MPI_INT16_T, r, TAG_TASK, MPI_COMM_WORLD);
}

static void send_error(void) {
    char msg[MSG_LEN];
    snprintf(msg, sizeof msg, "%s", evb_last_error());
    MPI_Send(msg, MSG_LEN, MPI_CHAR, 0, TAG_RESULT, MPI_COMM_WORLD);
}

static int recv_status(int r, char *msg) {
    int64_t st;
    MPI_Recv(&st, 1, MPI_INT64_T, r, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (st) MPI_Recv(msg, MSG_LEN, MPI_CHAR, r, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    return (int)st;
}

int evb_mpi_batch(void *ctx, evb_search *s, const int16_t *levels, int n, const int16_t *ref, const evb_batch *b,
                  double *fitness) {
    evb_mpi *mp = ctx;
    int U = evb_search_n_units(s), R = mp->size, st = EVB_SUCCESS;
    char msg[MSG_LEN] = "";
    int bad_rank = -1;
    if (mp->kp && n < mp->total_parts) {
        /* fewer candidates than threads: one candidate, or one part of one, at a time per rank */
        for (int r = 1; r < R; r++) send_task(r, OP_PARTS, n, U, levels, ref, b, 0, n);
        int64_t *sum = calloc((size_t)n, sizeof(int64_t)), *units = malloc(sizeof(int64_t) * (n + 2));
        int *cand = malloc(sizeof(int) * 3 * (n + 1)), *part = cand ? cand + n + 1 : NULL, *np = cand ? part + n + 1 : NULL;
        size_t scored = 0;
        int n_items = 0;
        if (!sum || !units || !cand) st = EVB_RAISEF(EVB_ENOMEM, "out of memory");
        if (!st) st = score_parts(mp, levels, n, U, b, units, &n_items, &scored);
        if (st) snprintf(msg, sizeof msg, "%s", evb_last_error());
        else {
            rank_items(0, n, R, cand, part, np);
            for (int k = 0; k < n_items; k++) sum[cand[k]] += units[k];
        }
        for (int r = 1; r < R; r++) {
            int e = recv_status(r, msg);
            if (e) { if (!st) { st = e; bad_rank = r; } continue; }
            int m = rank_items(r, n, R, cand, part, np);
            MPI_Recv(units, m + 1, MPI_INT64_T, r, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            for (int k = 0; k < m && sum; k++) sum[cand[k]] += units[k];
        }
        for (int i = 0; !st && i < n; i++) fitness[i] = (double)sum[i] * EVB_KL_UNIT / (double)scored;
        free(sum); free(units); free(cand);
    } else {
        /* candidates in contiguous blocks, in proportion to each rank's threads */
        int *first = calloc((size_t)R + 1, sizeof(int));
        if (!first) EVB_ERROR("out of memory", EVB_ENOMEM);
        for (int r = 0; r <= R; r++) first[r] = (int)((int64_t)n * (r < R ? mp->part0[r] : mp->total_parts) / mp->total_parts);
        for (int r = 1; r < R; r++) send_task(r, OP_CANDIDATES, n, U, levels, ref, b, first[r], first[r + 1] - first[r]);
        st = first[1] > 0 ? evb_search_evaluate_local(s, levels, first[1], ref, b, fitness) : EVB_SUCCESS;
        if (st) snprintf(msg, sizeof msg, "%s", evb_last_error());
        for (int r = 1; r < R; r++) {
            int e = recv_status(r, msg);
            if (e) { if (!st) { st = e; bad_rank = r; } continue; }
            int count = first[r + 1] - first[r];
            if (count) MPI_Recv(fitness + first[r], count, MPI_DOUBLE, r, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        }
        free(first);
    }
    if (st && bad_rank > 0) EVB_ERRORF(st, "rank %d: %s", bad_rank, msg);
    if (st) EVB_ERRORF(st, "%s", msg);
    return EVB_SUCCESS;
}

int evb_mpi_serve(evb_mpi *mp, evb_search *local) {
    int16_t *levels = NULL, *ref = NULL;
    size_t cap = 0;
    for (;;) {
        int64_t hdr[8];
        MPI_Recv(hdr, 8, MPI_INT64_T, 0, TAG_TASK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (hdr[0] == OP_STOP) break;
        int n = (int)hdr[1], U = (int)hdr[2], has_ref = (int)hdr[3], first = (int)hdr[6], count = (int)hdr[7];
        evb_batch b = {(uint64_t)hdr[4], (size_t)hdr[5]};
        if ((size_t)n * U + U > cap) {
            cap = (size_t)n * U + U;
            int16_t *p = realloc(levels, sizeof(int16_t) * cap);
            if (!p) { free(levels); free(ref); EVB_ERROR("out of memory", EVB_ENOMEM); }
            levels = p;
            p = realloc(ref, sizeof(int16_t) * U);
            if (!p) { free(levels); free(ref); EVB_ERROR("out of memory", EVB_ENOMEM); }
            ref = p;
        }
        MPI_Recv(levels, n * U, MPI_INT16_T, 0, TAG_TASK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (has_ref) MPI_Recv(ref, U, MPI_INT16_T, 0, TAG_TASK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        int64_t st;
        if (hdr[0] == OP_CANDIDATES) {
            double *f = malloc(sizeof(double) * (count > 0 ? count : 1));
            st = f ? evb_search_evaluate_local(local, levels + (size_t)first * U, count, has_ref ? ref : NULL, &b, f) : EVB_ENOMEM;
            MPI_Send(&st, 1, MPI_INT64_T, 0, TAG_RESULT, MPI_COMM_WORLD);
            if (st) send_error();
            else if (count) MPI_Send(f, count, MPI_DOUBLE, 0, TAG_RESULT, MPI_COMM_WORLD);
            free(f);
        } else {
            int64_t *u = malloc(sizeof(int64_t) * ((size_t)n + 2));
            size_t scored = 0;
            int m = 0;
            st = u ? score_parts(mp, levels, n, U, &b, u, &m, &scored) : EVB_ENOMEM;
            MPI_Send(&st, 1, MPI_INT64_T, 0, TAG_RESULT, MPI_COMM_WORLD);
            if (st) send_error();
            else {
                u[m] = (int64_t)scored;
                MPI_Send(u, m + 1, MPI_INT64_T, 0, TAG_RESULT, MPI_COMM_WORLD);
            }
            free(u);
        }
    }
    free(levels); free(ref);
    return EVB_SUCCESS;
}

void evb_mpi_stop(evb_mpi *mp) {
    int64_t hdr[8] = {OP_STOP, 0, 0, 0, 0, 0, 0, 0};
    for (int r = 1; r < mp->size; r++) MPI_Send(hdr, 8, MPI_INT64_T, r, TAG_TASK, MPI_COMM_WORLD);
}
