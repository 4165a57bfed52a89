/* surrogate.c -- the model of fitness a surrogate-assisted search ranks its proposals with.
 *
 * Every candidate the search scores is logged with its fitness and the batch it was scored on. The model is
 * additive, a weight per (unit, level): fitness ~ c_batch + sum_u w[u][level_u], fitted by penalised least
 * squares with one intercept per batch (the fixed effects of the minibatch: candidates scored on different batches are
 * compared only through candidates scored on the same one), i.e. features and targets centred within each
 * batch, each batch weighted by the tokens it scored (a fitness's noise variance falls as 1 / tokens, so a
 * late stage's few candidates count as much as their precision). The normal equations are accumulated batch
 * by batch as the log grows (a checkpoint stores the log and loading it accumulates it again in the same order) and solved by Cholesky (GSL), so the weights are a
 * function of the log alone: the same for any thread or process count, and after a resume.
 *
 * The regulariser is a smoothness penalty on each unit's weights along its levels (their second differences,
 * taken from a prior: a sensitivity profile, evb_search_set_prior, or 0), not a pull toward 0: a unit's
 * weights are known only up to a constant (every candidate has one level per unit), so a level no candidate
 * has yet held would be predicted from an arbitrary origin; the penalty extends the trend of the levels seen
 * (the prior's shape where there is one) to those not seen. A tiny ridge keeps the system definite. */
#include "search/search_impl.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The smoothness penalty's strength, in observations (of SUR_TOKENS tokens) per second difference; the ridge
 * that keeps the system definite. */
#define SUR_SMOOTH 1.0
#define SUR_RIDGE 1e-6
/* A batch of this many tokens weighs 1 observation per candidate. */
#define SUR_TOKENS 1024.0

int evb_sur_alloc_(evb_search *s) {
    s->sur_off = malloc(sizeof(int) * (size_t)(s->U + 1));
    if (!s->sur_off) return EVB_ENOMEM;
    int f = 0;
    for (int u = 0; u < s->U; u++) { s->sur_off[u] = f; f += s->n_levels[u]; }
    s->sur_off[s->U] = f;
    s->sur_F = f;
    s->sur_w = calloc((size_t)f, sizeof(double));
    s->sur_prior = calloc((size_t)f, sizeof(double));
    s->sur_A = calloc((size_t)f * f, sizeof(double));
    s->sur_b = calloc((size_t)f, sizeof(double));
    s->sur_rho = NAN;
    return s->sur_w && s->sur_prior && s->sur_A && s->sur_b ? EVB_SUCCESS : EVB_ENOMEM;
}

void evb_sur_free_(evb_search *s) {
    free(s->sur_off); free(s->sur_w); free(s->sur_prior); free(s->sur_lv); free(s->sur_y); free(s->sur_batch); free(s->sur_tok); free(s->sur_A); free(s->sur_b);
}

static void add_batch(const evb_search *s, size_t i0, size_t i1, double *A, double *b, double *mean, int *touched, char *mark);

/* Adds the log's entries [i0, sur_n), one batch, to the normal equations. */
static int accumulate(evb_search *s, size_t i0) {
    if (s->sur_n - i0 < 2) return EVB_SUCCESS;
    const int F = s->sur_F;
    double *mean = malloc(sizeof(double) * (size_t)F);
    int *touched = malloc(sizeof(int) * (size_t)F);
    char *mark = calloc((size_t)F, 1);
    if (!mean || !touched || !mark) { free(mean); free(touched); free(mark); EVB_ERROR("search: out of memory for the surrogate", EVB_ENOMEM); }
    add_batch(s, i0, s->sur_n, s->sur_A, s->sur_b, mean, touched, mark);
    s->sur_batches++;
    free(mean); free(touched); free(mark);
    return EVB_SUCCESS;
}

int evb_sur_record_(evb_search *s, const int16_t *levels, int n, const double *fit, size_t tokens) {
    if (!s->p.surrogate || n < 1) return EVB_SUCCESS;
    if (s->sur_n + (size_t)n > s->sur_cap) {
        size_t cap = s->sur_cap ? 2 * s->sur_cap : 1024;
        while (cap < s->sur_n + (size_t)n) cap *= 2;
        int16_t *lv = realloc(s->sur_lv, sizeof(int16_t) * (size_t)s->U * cap);
        if (lv) s->sur_lv = lv;
        double *y = realloc(s->sur_y, sizeof(double) * cap);
        if (y) s->sur_y = y;
        uint32_t *b = realloc(s->sur_batch, sizeof(uint32_t) * cap);
        if (b) s->sur_batch = b;
        uint64_t *t = realloc(s->sur_tok, sizeof(uint64_t) * cap);
        if (t) s->sur_tok = t;
        if (!lv || !y || !b || !t) EVB_ERROR("search: out of memory for the surrogate's log", EVB_ENOMEM);
        s->sur_cap = cap;
    }
    size_t i0 = s->sur_n;
    for (int i = 0; i < n; i++) {
        memcpy(s->sur_lv + (i0 + i) * s->U, levels + (size_t)i * s->U, sizeof(int16_t) * s->U);
        s->sur_y[i0 + i] = fit[i];
        s->sur_batch[i0 + i] = s->sur_nb;
        s->sur_tok[i0 + i] = tokens;
    }
    s->sur_n += (size_t)n;
    s->sur_nb++;
    return accumulate(s, i0);
}

int evb_sur_rebuild_(evb_search *s) {
    memset(s->sur_A, 0, sizeof(double) * (size_t)s->sur_F * s->sur_F);
    memset(s->sur_b, 0, sizeof(double) * (size_t)s->sur_F);
    s->sur_batches = 0;
    size_t n = s->sur_n;
    int st = EVB_SUCCESS;
    for (size_t i0 = 0; !st && i0 < n;) {
        size_t i1 = i0 + 1;
        while (i1 < n && s->sur_batch[i1] == s->sur_batch[i0]) i1++;
        s->sur_n = i1;
        st = accumulate(s, i0);
        i0 = i1;
    }
    s->sur_n = n;
    return st;
}

/* Adds one batch, entries [i0, i1) of the log, to A[F, F] and b[F], centred within the batch. */
static void add_batch(const evb_search *s, size_t i0, size_t i1, double *A, double *b, double *mean, int *touched, char *mark) {
    const int U = s->U, F = s->sur_F;
    double m = (double)(i1 - i0), ybar = 0, w = (double)(s->sur_tok[i0] ? s->sur_tok[i0] : 1) / SUR_TOKENS;
    int nt = 0;
    for (size_t i = i0; i < i1; i++) {
        const int16_t *lv = s->sur_lv + i * U;
        ybar += s->sur_y[i];
        for (int u = 0; u < U; u++) {
            int f = s->sur_off[u] + lv[u];
            if (!mark[f]) { mark[f] = 1; touched[nt++] = f; mean[f] = 0; }
            mean[f] += 1;
        }
    }
    ybar /= m;
    for (int k = 0; k < nt; k++) mean[touched[k]] /= m;
    for (size_t i = i0; i < i1; i++) {
        const int16_t *lv = s->sur_lv + i * U;
        double dy = s->sur_y[i] - ybar;
        for (int u = 0; u < U; u++) {
            int f = s->sur_off[u] + lv[u];
            b[f] += w * dy;
            for (int v = 0; v < U; v++) A[(size_t)f * F + s->sur_off[v] + lv[v]] += w;
        }
    }
    /* - m xbar xbar^T (and b's - m xbar ybar is 0: the dy sum to 0) */
    for (int k = 0; k < nt; k++)
        for (int l = 0; l < nt; l++) A[(size_t)touched[k] * F + touched[l]] -= w * m * mean[touched[k]] * mean[touched[l]];
    for (int k = 0; k < nt; k++) mark[touched[k]] = 0;
}

int evb_sur_fit_(evb_search *s) {
    s->sur_ready = 0;
    if (!s->p.surrogate || !s->sur_batches) return EVB_SUCCESS;
    const int F = s->sur_F;
    double *A = malloc(sizeof(double) * (size_t)F * F), *b = malloc(sizeof(double) * (size_t)F);
    if (!A || !b) { free(A); free(b); EVB_ERROR("search: out of memory fitting the surrogate", EVB_ENOMEM); }
    memcpy(A, s->sur_A, sizeof(double) * (size_t)F * F);
    memcpy(b, s->sur_b, sizeof(double) * (size_t)F);
    /* + SUR_SMOOTH sum over units and inner levels of (d . (w - prior))^2, d = e[l-1] - 2 e[l] + e[l+1] */
    for (int u = 0; u < s->U; u++)
        for (int l = 1; l + 1 < s->n_levels[u]; l++) {
            int f0 = s->sur_off[u] + l - 1;
            const double d[3] = {1, -2, 1};
            double dp = 0;
            for (int i = 0; i < 3; i++) dp += d[i] * s->sur_prior[f0 + i];
            for (int i = 0; i < 3; i++) {
                b[f0 + i] += SUR_SMOOTH * d[i] * dp;
                for (int k = 0; k < 3; k++) A[(size_t)(f0 + i) * F + f0 + k] += SUR_SMOOTH * d[i] * d[k];
            }
        }
    for (int f = 0; f < F; f++) { A[(size_t)f * F + f] += SUR_RIDGE; b[f] += SUR_RIDGE * s->sur_prior[f]; }
    gsl_matrix_view Av = gsl_matrix_view_array(A, (size_t)F, (size_t)F);
    gsl_vector_view bv = gsl_vector_view_array(b, (size_t)F), wv = gsl_vector_view_array(s->sur_w, (size_t)F);
    int st = EVB_SUCCESS;
    if (gsl_linalg_cholesky_decomp1(&Av.matrix) || gsl_linalg_cholesky_solve(&Av.matrix, &bv.vector, &wv.vector))
        st = EVB_RAISEF(EVB_ERANGE, "search: the surrogate's normal equations could not be solved");
    else s->sur_ready = 1;
    free(A); free(b);
    return st;
}

double evb_sur_predict_(const evb_search *s, const int16_t *lv) {
    double v = 0;
    for (int u = 0; u < s->U; u++) v += s->sur_w[s->sur_off[u] + lv[u]];
    return v;
}

void evb_sur_keep_rest_(char *keep, int n, int kept, int want) {
    for (int i = 0; i < n && kept < want; i++) if (!keep[i]) { keep[i] = 1; kept++; }
}

typedef struct rv { double v; int i; } rv;
static int cmp_rv(const void *a, const void *b) {
    const rv *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i - y->i;
}

/* Ranks with ties averaged, into r[n]. */
static int ranks(const double *v, int n, double *r) {
    rv *o = malloc(sizeof *o * (size_t)(n > 0 ? n : 1));
    if (!o) return EVB_ENOMEM;
    for (int i = 0; i < n; i++) o[i] = (rv){v[i], i};
    qsort(o, (size_t)n, sizeof *o, cmp_rv);
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && o[j].v == o[i].v) j++;
        for (int k = i; k < j; k++) r[o[k].i] = 0.5 * (i + j - 1);
        i = j;
    }
    free(o);
    return EVB_SUCCESS;
}

double evb_spearman_(const double *a, const double *b, int n) {
    if (n < 3) return NAN;
    double *ra = malloc(sizeof(double) * 2 * (size_t)n), *rb = ra ? ra + n : NULL;
    if (!ra || ranks(a, n, ra) || ranks(b, n, rb)) { free(ra); return NAN; }
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) { ma += ra[i]; mb += rb[i]; }
    ma /= n; mb /= n;
    for (int i = 0; i < n; i++) { sab += (ra[i] - ma) * (rb[i] - mb); saa += (ra[i] - ma) * (ra[i] - ma); sbb += (rb[i] - mb) * (rb[i] - mb); }
    free(ra);
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

int evb_search_set_prior(evb_search *s, const double *prior, int max_levels) {
    if (!s->p.surrogate) EVB_ERROR("search: a prior is for a surrogate-assisted search (params.surrogate > 0)", EVB_EINVAL);
    for (int u = 0; u < s->U; u++)
        for (int l = 0; l < s->n_levels[u]; l++) {
            double v = prior ? prior[(size_t)u * max_levels + l] : 0;
            if (!isfinite(v)) EVB_ERRORF(EVB_EINVAL, "search: the surrogate's prior for unit %d level %d is not a finite number", u, l);
            s->sur_prior[s->sur_off[u] + l] = v;
        }
    s->sur_has_prior = prior != NULL;
    return EVB_SUCCESS;
}
