#define _GNU_SOURCE
/* test_fitness.c -- the model fitness on stories260K with a SparseGPT database: KL of the dense candidate is
 * 0; KL and perplexity equal those of the independent evaluation path (evb_eval_nll_kl, evb_eval_nll); an
 * offspring scored from its parent's hidden states gets the very value of a full forward; batches select
 * exactly n_tokens positions, the same for the same seed; dropped sub-blocks; the float16 and top-k teachers'
 * errors against the exact KL. */
#include "stories.h"
#include "fixtures.h"
#include "evobudget/evb_calib.h"
#include "evobudget/evb_db.h"
#include "evobudget/evb_eval.h"
#include "evobudget/evb_fitness_kl.h"
#include "evobudget/evb_problems.h"

#include <stdlib.h>
#include <string.h>

int main(void) {
    evb_init();
    stories S;
    evb_windows w;
    int st = stories_load(&S, 200000);
    evb_model *m = S.m;
    if (!st) st = evb_windows_sample(S.tok, S.n, 64, evb_tokenizer_bos(S.t), 10, 9, &w);
    evb_calib *c = NULL;
    if (!st) st = evb_calib_collect(m, &w, 4, &c);
    char *dir = fixture_tmpdir();
    evb_db *db = NULL;
    if (!st) st = evb_db_open(dir, "00000000000000aa", "00000000000000bb", 1, &db);
    double sps[2] = {0.5, 0.7};
    evb_level_grid g = {sps, 2, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0};
    int built, present;
    if (!st) st = evb_db_build(db, m, c, evb_method_find("sparsegpt"), &g, &built, &present, NULL, NULL);
    evb_level_cache *cache = NULL;
    if (!st) st = evb_level_cache_alloc(db, 64 << 20, &cache);
    evb_teacher *t32 = NULL, *t16 = NULL, *tk = NULL;
    if (!st) st = evb_teacher_build(m, &w, 4, EVB_TEACHER_F32, 0, &t32);
    if (!st) st = evb_teacher_build(m, &w, 4, EVB_TEACHER_F16, 0, &t16);
    if (!st) st = evb_teacher_build(m, &w, 4, EVB_TEACHER_TOPK, 32, &tk);
    EVB_CHECK(st == 0, "stories260K, 10 windows of 64, a SparseGPT database at 50%%/70%%, three teachers (%s)", evb_last_error());
    if (st) return evb_test_summary();

    /* The problem's units: the 35 linear layers with levels {dense, 50%, 70%}, then 5 attention and 5 MLP
     * sub-blocks with levels {kept, dropped}. */
    int U = evb_model_n_units(m), L = m->config.n_layers, NU = U + 2 * L;
    evb_fit_unit *units = calloc(NU, sizeof *units);
    int *entries = malloc(sizeof(int) * U * 3);
    for (int u = 0; u < U; u++) {
        entries[u * 3] = -1;
        for (int k = 0; k < 2; k++) {
            evb_db_entry key = {0};
            key.unit = u; key.kind = EVB_LEVEL_SPARSE; key.sparsity = sps[k];
            snprintf(key.method, sizeof key.method, "sparsegpt");
            entries[u * 3 + 1 + k] = evb_db_find(db, &key);
        }
        units[u] = (evb_fit_unit){EVB_UNIT_LINEAR, u, 3, entries + u * 3, NULL};
    }
    for (int l = 0; l < L; l++) {
        units[U + l] = (evb_fit_unit){EVB_UNIT_ATTN, l, 2, NULL, NULL};
        units[U + L + l] = (evb_fit_unit){EVB_UNIT_MLP, l, 2, NULL, NULL};
    }
    evb_kl_params p = {m, &w, t32, cache, NU, units, EVB_METRIC_KL, 4, 64 << 20};
    void *ws = malloc(evb_fitness_kl.workspace_size(&p));
    st = evb_fitness_kl.workspace_init(ws, &p);
    EVB_CHECK(st == 0, "workspace (%s)", evb_last_error());
    int16_t *lv = calloc(NU, sizeof(int16_t)), *lv2 = calloc(NU, sizeof(int16_t));
    evb_genome gen = {NU, lv}, gen2 = {NU, lv2};
    evb_batch all = {0, 0};
    double f = -1;
    st = evb_fitness_kl.evaluate(&p, ws, &gen, NULL, &all, &f);
    EVB_CHECK(st == 0 && fabs(f) < 1e-7, "the dense candidate's KL is 0 (%.3g)", f);

    /* uniform 50%: against evb_eval_nll_kl with the database's weights */
    const float **wts = calloc(U, sizeof *wts);
    float *mem = malloc(sizeof(float) * 512 * 512 * U);
    for (int u = 0; u < U; u++) {
        lv[u] = 1;
        evb_db_load(db, entries[u * 3 + 1], mem + (size_t)u * 512 * 512);
        wts[u] = mem + (size_t)u * 512 * 512;
    }
    evb_state *s;
    evb_state_alloc(m, 4, 64, &s);
    double nll, kl;
    size_t n_scored;
    evb_eval_nll_kl(m, s, &w, 4, wts, NULL, &nll, &kl, &n_scored, NULL, NULL);
    st = evb_fitness_kl.evaluate(&p, ws, &gen, NULL, &all, &f);
    EVB_CHECK(st == 0 && fabs(f - kl / n_scored) <= 1e-6 * kl / n_scored, "uniform 50%%: KL %.6f, independent path %.6f",
              f, kl / n_scored);
    evb_kl_params pp = p;
    pp.metric = EVB_METRIC_PPL;
    void *ws2 = malloc(evb_fitness_kl.workspace_size(&pp));
    evb_fitness_kl.workspace_init(ws2, &pp);
    double fp;
    st = evb_fitness_kl.evaluate(&pp, ws2, &gen, NULL, &all, &fp);
    EVB_CHECK(st == 0 && fabs(fp - nll / n_scored) <= 1e-6 * nll / n_scored, "uniform 50%%: mean NLL %.6f, independent path %.6f",
              fp, nll / n_scored);

    /* dropped sub-blocks: the perplexity metric against evb_eval_nll with the skip flags set on the model */
    memset(lv, 0, sizeof(int16_t) * NU);
    lv[U + 3] = 1; lv[U + L + 1] = 1;
    st = evb_fitness_kl.evaluate(&pp, ws2, &gen, NULL, &all, &fp);
    m->layers[3].skip_attn = 1; m->layers[1].skip_mlp = 1;
    evb_eval_nll(m, s, &w, 4, &nll, &n_scored, NULL, NULL);
    m->layers[3].skip_attn = 0; m->layers[1].skip_mlp = 0;
    EVB_CHECK(st == 0 && fabs(fp - nll / n_scored) <= 1e-6 * nll / n_scored,
              "attention of block 3 and MLP of block 1 dropped: mean NLL %.6f, independent path %.6f", fp, nll / n_scored);

    /* activation reuse: offspring of a mixed parent, with and without the parent's states */
    for (int u = 0; u < NU; u++) lv[u] = u < U ? (int16_t)(u % 3) : 0;
    evb_batch small = {77, 300};
    int same = 1;
    double fr = 0, ff = 0;
    for (int k = 0; k < 6; k++) {
        memcpy(lv2, lv, sizeof(int16_t) * NU);
        int a = (7 * k + 11) % U, b = (13 * k + 5) % U;
        lv2[a] = (int16_t)((lv2[a] + 1) % 3); lv2[b] = (int16_t)((lv2[b] + 2) % 3);
        if (k == 5) lv2[U + L + 4] = 1;
        int s1 = evb_fitness_kl.evaluate(&p, ws, &gen2, &gen, &small, &fr);
        int s2 = evb_fitness_kl.evaluate(&p, ws, &gen2, NULL, &small, &ff);
        same &= !s1 && !s2 && fr == ff;
    }
    EVB_CHECK(same, "6 offspring scored from the parent's hidden states equal full forwards bit for bit (last %.6f)", fr);

    /* parts: a batch split into 1..7 parts sums to the whole's fitness exactly, whatever the split */
    int parts_ok = 1;
    for (int np = 1; np <= 7; np++) {
        int64_t sum = 0, u1;
        size_t sc = 0;
        for (int k = 0; k < np && parts_ok; k++) {
            parts_ok &= evb_fitness_kl_part(&p, ws, &gen2, &all, k, np, &u1, &sc) == 0;
            sum += u1;
        }
        double whole = 0;
        parts_ok &= evb_fitness_kl.evaluate(&p, ws, &gen2, NULL, &all, &whole) == 0 && (double)sum * EVB_KL_UNIT / (double)sc == whole;
    }
    EVB_CHECK(parts_ok, "the batch in 1..7 parts (whole chunks of windows): the parts' sums give the whole's fitness bit for bit");
    int64_t ux;
    size_t sx;
    EVB_CHECK(evb_fitness_kl_part(&p, ws, &gen2, &all, 3, 3, &ux, &sx) == EVB_EINVAL, "part 3 of 3 is refused");

    /* batches */
    int idx[16], len[16], nb, idx2[16], len2[16], nb2;
    size_t got = evb_batch_windows(&w, &small, idx, len, &nb);
    size_t got2 = evb_batch_windows(&w, &small, idx2, len2, &nb2);
    evb_batch other = {78, 300};
    int idx3[16], len3[16], nb3;
    evb_batch_windows(&w, &other, idx3, len3, &nb3);
    EVB_CHECK(got == 300 && got == got2 && nb == 5 && len[4] == 300 - 4 * 63 + 1 && !memcmp(idx, idx2, sizeof(int) * nb) &&
              memcmp(idx, idx3, sizeof(int) * nb) != 0, "a batch of 300 tokens: %d windows, the last cut to %d positions; the same for the same seed, others for another", nb, len[4]);

    /* the sensitivity profile: the problem's levels are {50%, 70%} (and kept/dropped for sub-blocks); every
     * (unit, level) against a full forward of that one unit at that level, the rest dense, on the same batch;
     * the same bits on 1 and 2 threads */
    {
        evb_fit_unit *pu = calloc(NU, sizeof *pu);
        for (int u = 0; u < NU; u++) {
            pu[u] = units[u];
            if (u < U) { pu[u].n_levels = 2; pu[u].entry = entries + u * 3 + 1; }
        }
        evb_kl_params sp = p;
        sp.units = pu;
        double *k1 = malloc(sizeof(double) * NU * 2), *k2 = malloc(sizeof(double) * NU * 2);
        size_t tok1 = 0, tok2 = 0;
        int s1 = evb_mp_sensitivity(&sp, &small, 1, k1, &tok1, NULL, NULL), s2 = evb_mp_sensitivity(&sp, &small, 2, k2, &tok2, NULL, NULL);
        int equal = !s1 && !s2, n_cmp = 0, positive = 1;
        for (int u = 0; u < NU && equal; u++)
            for (int l = 0; l < 2; l++) {
                memset(lv, 0, sizeof(int16_t) * NU);
                lv[u] = (int16_t)(u < U ? 1 + l : l);
                double full = -1;
                equal &= evb_fitness_kl.evaluate(&p, ws, &gen, NULL, &small, &full) == 0 && full == k1[u * 2 + l];
                positive &= u >= U && l == 0 ? fabs(k1[u * 2 + l]) < 1e-7 : k1[u * 2 + l] > 0; /* kept: the dense model */
                n_cmp++;
            }
        EVB_CHECK(equal && positive && n_cmp == 2 * NU, "sensitivity: all %d (unit, level) values equal full forwards of that configuration bit for bit, "
                  "positive but for kept sub-blocks (e.g. layers.0 q_proj at 70%%: %.6f)", n_cmp, k1[1]);
        EVB_CHECK(!s1 && !s2 && !memcmp(k1, k2, sizeof(double) * NU * 2) && tok1 == tok2 && tok1 == (size_t)(2 * NU) * 300,
                  "sensitivity: the same values on 1 and 2 threads, %zu tokens (300 per level)", tok1);
        free(pu); free(k1); free(k2);
    }

    /* teachers: float16 and top-32 against exact float32 log-probabilities, at 70% sparsity */
    for (int u = 0; u < U; u++) evb_db_load(db, entries[u * 3 + 2], mem + (size_t)u * 512 * 512);
    double a16, e16, ak, ek;
    evb_teacher_kl_error(t16, m, &w, 4, wts, &a16, &e16);
    evb_teacher_kl_error(tk, m, &w, 4, wts, &ak, &ek);
    printf("  teacher bytes: f32 %zu, f16 %zu, top-32 %zu\n", evb_teacher_bytes(t32), evb_teacher_bytes(t16), evb_teacher_bytes(tk));
    EVB_CHECK(fabs(a16 - e16) <= 1e-3 * e16, "float16 teacher: KL %.6f against exact %.6f (rel. error %.2g)", a16, e16, fabs(a16 - e16) / e16);
    EVB_CHECK(ak <= e16 * (1 + 1e-6) && ak >= 0.5 * ek, "top-32 teacher (of 512 tokens): KL %.6f, a lower bound of the exact %.6f (%.1f%%)",
              ak, ek, 100 * ak / ek);

    evb_fitness_kl.workspace_destroy(ws);
    evb_fitness_kl.workspace_destroy(ws2);
    free(ws); free(ws2); free(lv); free(lv2); free(units); free(entries); free(wts); free(mem);
    evb_state_free(s);
    evb_teacher_free(t32); evb_teacher_free(t16); evb_teacher_free(tk);
    evb_level_cache_free(cache);
    evb_db_close(db);
    evb_calib_free(c);
    evb_windows_free(&w);
    stories_free(&S);
    fixture_rmdir(dir);
    free(dir);
    return evb_test_summary();
}
