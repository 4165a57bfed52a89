/* sensitivity.c -- the sensitivity profile: for every unit and level, the fitness of the model with that unit
 * alone at that level and every other unit dense (a linear unit's dense weight, a sub-block kept).
 *
 * Each candidate is scored against the all-dense reference, so the KL fitness's hidden-state reuse starts its
 * forward at the unit's block: the profile costs, per level, the blocks from the unit's to the last. A linear
 * unit gets one more level, its dense weight (EVB_ENTRY_DENSE), which is the reference's; a sub-block's level
 * 0 (kept) already is. Candidates are shared out in contiguous runs over the threads, each with its own
 * workspace; the KL fitness sums in integer units, so the values do not depend on the thread count. */
#include "problems/problems.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int evb_mp_sensitivity(const evb_kl_params *kp, const evb_batch *b, int n_threads, double *kl, size_t *tokens,
                       void (*progress)(void *ctx, int done, int total), void *ctx) {
    const int U = kp->n_units;
    int max_l = 0, n = 0;
    for (int u = 0; u < U; u++) if (kp->units[u].n_levels > max_l) max_l = kp->units[u].n_levels;
    evb_fit_unit *fu = malloc(sizeof *fu * (size_t)(U + 1));
    int *entry = malloc(sizeof(int) * (size_t)U * (max_l + 1) + 1), *pair = malloc(sizeof(int) * 2 * ((size_t)U * max_l + 1));
    int16_t *ref = malloc(sizeof(int16_t) * (size_t)(U + 1));
    int *status = calloc((size_t)U * max_l + 1, sizeof(int));
    if (!fu || !entry || !pair || !ref || !status) { free(fu); free(entry); free(pair); free(ref); free(status); EVB_ERROR("sensitivity: out of memory", EVB_ENOMEM); }
    for (int u = 0; u < U; u++) {
        fu[u] = kp->units[u];
        if (fu[u].kind == EVB_UNIT_LINEAR) {
            int *e = entry + (size_t)u * (max_l + 1);
            memcpy(e, kp->units[u].entry, sizeof(int) * fu[u].n_levels);
            e[fu[u].n_levels] = EVB_ENTRY_DENSE;
            fu[u].entry = e;
            ref[u] = (int16_t)fu[u].n_levels++;
        } else {   /* a sub-block's reference: kept (level 0 of a drop unit), dense (the last of a structured one) */
            int structured = fu[u].kind == EVB_UNIT_ATTN_S || fu[u].kind == EVB_UNIT_MLP_S;
            ref[u] = (int16_t)(structured ? fu[u].n_levels - 1 : 0);
        }
        for (int l = 0; l < kp->units[u].n_levels; l++) { pair[2 * n] = u; pair[2 * n + 1] = l; n++; }
        for (int l = kp->units[u].n_levels; l < max_l; l++) kl[(size_t)u * max_l + l] = NAN;
    }
    evb_kl_params k = *kp;
    k.units = fu;
#ifdef _OPENMP
    if (n_threads <= 0) n_threads = omp_get_max_threads();
#else
    n_threads = 1;
#endif
    if (n_threads > n) n_threads = n > 0 ? n : 1;
    size_t per = 0;
    int done = 0, first_err = n;
    char first_msg[1024] = "";
    #pragma omp parallel num_threads(n_threads)
    {
        size_t bytes = evb_fitness_kl.workspace_size(&k);
        void *ws = calloc(1, bytes ? bytes : 1);
        int16_t *lv = malloc(sizeof(int16_t) * (size_t)(U + 1));
        int ok = ws && lv, inited = 0;
        if (ok && evb_fitness_kl.workspace_init) ok = inited = evb_fitness_kl.workspace_init(ws, &k) == EVB_SUCCESS;
        else inited = ok;
        if (ok) memcpy(lv, ref, sizeof(int16_t) * U);
        #pragma omp for schedule(static)
        for (int i = 0; i < n; i++) {
            int u = pair[2 * i], l = pair[2 * i + 1], st;
            double v = 0;
            if (!ok) st = EVB_RAISEF(EVB_ENOMEM, "sensitivity: out of memory for a workspace");
            else {
                lv[u] = (int16_t)l;
                evb_genome g = {U, lv}, r = {U, ref};
                st = evb_fitness_kl.evaluate(&k, ws, &g, &r, b, &v);
                lv[u] = ref[u];
            }
            kl[(size_t)u * max_l + l] = v;
            status[i] = st;
            #pragma omp critical(evb_sensitivity)
            {
                if (st && i < first_err) { first_err = i; snprintf(first_msg, sizeof first_msg, "%s", evb_last_error()); }
                done++;
                if (progress) progress(ctx, done, n);
            }
        }
        if (inited && evb_fitness_kl.workspace_destroy) evb_fitness_kl.workspace_destroy(ws);
        free(ws); free(lv);
    }
    int st = first_err < n ? status[first_err] : EVB_SUCCESS;
    if (!st) {
        int idx_n = 0, *idx = malloc(sizeof(int) * (size_t)(k.w->n + 1)), *len = malloc(sizeof(int) * (size_t)(k.w->n + 1));
        if (idx && len) per = evb_batch_windows(k.w, b, idx, len, &idx_n);
        free(idx); free(len);
        if (tokens) *tokens = per * (size_t)n;
    }
    free(fu); free(entry); free(pair); free(ref); free(status);
    if (st) EVB_ERRORF(st, "%s", first_msg);
    return EVB_SUCCESS;
}
