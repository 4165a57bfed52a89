/* mpi.c -- a search's batch evaluations spread over MPI ranks (see mpi.h). Built into evobudget-mpi only.
 *
 * Messages from rank 0 to rank r (tag TASK): a header of 8 int64 {op, n, U, has_ref, batch seed, batch
 * tokens, first, count}, then the n candidates' levels (int16 [n U]) and the reference (int16 [U]) when
 * has_ref. op CANDIDATES: score candidates [first, first + count) of the n; op PARTS: score this rank's
 * slots (one part of one candidate per thread; score_parts); op STOP: return. Replies (tag RESULT): int64
 * status, then the count fitness values (double) or the units of each slot and the scored tokens (int64),
 * and on an error its message (char [512]). */
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
    for (int t = 0; t < mp->n_threads; t++) {
        mp->kws[t] = malloc(evb_fitness_kl.workspace_size(&mp->kp_parts));
        if (!mp->kws[t]) EVB_ERROR("out of memory for a fitness workspace", EVB_ENOMEM);
        int st = evb_fitness_kl.workspace_init(mp->kws[t], &mp->kp_parts);
        if (st) { free(mp->kws[t]); mp->kws[t] = NULL; return st; }
    }
    return EVB_SUCCESS;
}

/* Slots: thread t of rank r is slot part0[r] + t of total_parts. In a parts batch of n candidates (n smaller
 * than the ranks), candidate i owns slots [i P / n, (i + 1) P / n), each scoring one part of it. */
static int slot_candidate(int g, int n, int P) {
    int i = 0;
    while (i + 1 < n && (int)((int64_t)(i + 1) * P / n) <= g) i++;
    return i;
}

/* This rank's slots: units [n_threads], one part of one candidate each; *scored the batch's tokens. */
static int score_parts(evb_mpi *mp, const int16_t *levels, int n, int U, const evb_batch *b, int64_t *units, size_t *scored) {
    int st = part_workspaces(mp), failed = 0;
    if (st) return st;
    char msg[MSG_LEN] = "";
    size_t sc = 0;
    const int P = mp->total_parts;
    #pragma omp parallel for schedule(static, 1) num_threads(mp->n_threads)
    for (int t = 0; t < mp->n_threads; t++) {
        int ith = 0;
#ifdef _OPENMP
        ith = omp_get_thread_num();
#endif
        int g = mp->part0[mp->rank] + t, i = slot_candidate(g, n, P);
        int first = (int)((int64_t)i * P / n), last = (int)((int64_t)(i + 1) * P / n);
        evb_genome gen = {U, levels + (size_t)i * U};
        size_t s1 = 0;
        int e = evb_fitness_kl_part(&mp->kp_parts, mp->kws[ith], &gen, b, g - first, last - first, &units[t], &s1);
        #pragma omp critical(evb_mpi_parts)
        {
            if (e && !failed) { failed = e; snprintf(msg, sizeof msg, "%s", evb_last_error()); }
            if (!e) sc = s1;
        }
    }
    *scored = sc;
    if (failed) EVB_ERRORF(failed, "%s", msg);
    return EVB_SUCCESS;
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
        /* few candidates: every thread of every rank scores one part of one of them */
        const int P = mp->total_parts;
        for (int r = 1; r < R; r++) send_task(r, OP_PARTS, n, U, levels, ref, b, 0, n);
        int64_t *units = calloc((size_t)P, sizeof(int64_t));
        size_t scored = 0;
        if (!units) st = EVB_RAISEF(EVB_ENOMEM, "out of memory");
        if (!st) st = score_parts(mp, levels, n, U, b, units, &scored);
        if (st) snprintf(msg, sizeof msg, "%s", evb_last_error());
        for (int r = 1; r < R; r++) {
            int e = recv_status(r, msg);
            if (e) { if (!st) { st = e; bad_rank = r; } continue; }
            int T = mp->threads[r];
            int64_t *got = malloc(sizeof(int64_t) * ((size_t)T + 1));
            if (!got) { st = EVB_RAISEF(EVB_ENOMEM, "out of memory"); continue; }
            MPI_Recv(got, T + 1, MPI_INT64_T, r, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            for (int t = 0; units && t < T; t++) units[mp->part0[r] + t] = got[t];
            free(got);
        }
        for (int i = 0; !st && i < n; i++) {
            int64_t sum = 0;
            for (int g = (int)((int64_t)i * P / n); g < (int)((int64_t)(i + 1) * P / n); g++) sum += units[g];
            fitness[i] = (double)sum * EVB_KL_UNIT / (double)scored;
        }
        free(units);
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
            int64_t *u = malloc(sizeof(int64_t) * ((size_t)mp->n_threads + 1));
            size_t scored = 0;
            st = u ? score_parts(mp, levels, n, U, &b, u, &scored) : EVB_ENOMEM;
            MPI_Send(&st, 1, MPI_INT64_T, 0, TAG_RESULT, MPI_COMM_WORLD);
            if (st) send_error();
            else {
                u[mp->n_threads] = (int64_t)scored;
                MPI_Send(u, mp->n_threads + 1, MPI_INT64_T, 0, TAG_RESULT, MPI_COMM_WORLD);
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
