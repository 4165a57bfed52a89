/* sparsity_example.c -- the library's main job from a C program of its own: a model, calibration text and a
 * level database in, a per-layer sparsity allocation out.
 *
 *   sparsity_example MODEL TEXTFILE DBDIR OUT.json
 *
 * It builds the 50% sparsity problem (SparseGPT levels in EvoPress's equal steps, built into DBDIR on first
 * use), runs EvoPress against the KL of the compressed model to the dense one on the calibration windows,
 * prints the best allocation's KL beside the uniform allocation's, and writes the best as a configuration
 * (best.json's format: `evobudget eval --config OUT.json` and `evobudget export` read it). */
#include <evobudget/evobudget.h>
#include <evobudget/evb_problems.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int check(int status, const char *what) {
    if (status) fprintf(stderr, "sparsity_example: %s: %s\n", what, evb_last_error());
    return status;
}

/* Eight windows of 128 tokens of the text, sampled with seed 0. */
static int windows(const evb_model *m, const char *text_path, evb_windows *w) {
    evb_tokenizer *t = NULL;
    int s = evb_tokenizer_load(m->tokenizer_path, &t);
    if (!s) s = evb_windows_from_file(t, text_path, 4000, 128, 8, 0, 0, w);
    evb_tokenizer_free(t);
    return s;
}

/* EvoPress on the problem, scored by kp; the best candidate into best, its fitness into *fit. */
static int search(const evb_mp *mp, const evb_kl_params *kp, size_t tokens, int16_t *best, double *fit) {
    evb_search_params sp = evb_mp_search_params(mp, "evopress", tokens, 0);
    sp.generations = 20; sp.n_offspring = 8;                  /* a short run: the paper's are longer */
    sp.n_stages = 1; sp.n_survivors[0] = 1; sp.n_tokens[0] = 0; /* every candidate on every calibration token */
    evb_search *s = NULL;
    int st = evb_search_alloc(evb_search_evopress, &sp, &mp->problem, &s);
    if (!st) st = evb_search_set(s, &evb_fitness_kl, kp, 0);
    if (!st) st = EVB_CONTINUE;
    while (st == EVB_CONTINUE) st = evb_search_iterate(s);
    if (st == EVB_SUCCESS) evb_search_best(s, best, fit);
    evb_search_free(s);
    return st == EVB_SUCCESS ? EVB_SUCCESS : st;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: sparsity_example MODEL TEXTFILE DBDIR OUT.json\n"); return 2; }
    evb_init();
    evb_model *m = NULL;
    evb_windows w = {0};
    evb_db *db = NULL;
    evb_mp *mp = NULL;
    evb_teacher *teacher = NULL;
    evb_level_cache *cache = NULL;
    evb_allocation *cfg = NULL;
    char mfp[17], cfp[17];
    int s = check(evb_model_load(argv[1], &m), argv[1]);
    if (!s) s = check(windows(m, argv[2], &w), argv[2]);
    if (!s) { evb_fingerprint_model(m, mfp); evb_fingerprint_windows(&w, cfp); mkdir(argv[3], 0755); }
    if (!s) s = check(evb_db_open(argv[3], mfp, cfp, 1, &db), argv[3]);
    evb_mp_env env = {m, &w, db, NULL, 4, NULL, NULL, NULL, NULL};
    evb_mp_params p = evb_mp_default_params(EVB_TARGET_SPARSITY, 0.5);
    p.num_levels = 4;
    if (!s) s = check(evb_mp_build(&env, &p, &mp), "building the 50% sparsity problem");
    if (!s) s = check(evb_teacher_build(m, &w, 4, EVB_TEACHER_F32, 0, &teacher), "the dense model's outputs");
    if (!s) s = check(evb_level_cache_alloc(db, (size_t)256 << 20, &cache), "the level cache");
    int U = mp ? mp->problem.n_units : 0;
    size_t tokens = 0;
    for (int i = 0; i < w.n; i++) tokens += (size_t)w.len[i] - 1;
    evb_kl_params kp = {m, &w, teacher, cache, U, mp ? mp->units : NULL, EVB_METRIC_KL, 4, 0};
    int16_t *best = calloc(U ? U : 1, sizeof(int16_t));
    double fit = 0, uniform = 0;
    if (!s) s = check(evb_mp_score(&kp, mp->problem.start, U, &uniform), "scoring the uniform allocation");
    if (!s) s = check(search(mp, &kp, tokens, best, &fit), "the search");
    if (!s) s = check(evb_mp_config(mp, best, fit, &cfg), "the configuration");
    if (!s) { snprintf(cfg->db, sizeof cfg->db, "%s", argv[3]); snprintf(cfg->method, sizeof cfg->method, "evopress"); }
    if (!s) s = check(evb_allocation_write(cfg, argv[4]), argv[4]);
    if (!s) printf("units %d, sparsity %.4f: best KL %.6f (uniform %.6f); %s\n", U, cfg->sparsity, fit, uniform, argv[4]);
    free(best);
    evb_allocation_free(cfg); evb_level_cache_free(cache); evb_teacher_free(teacher); evb_mp_free(mp);
    evb_calib_free(env.calib); evb_db_close(db); evb_windows_free(&w); evb_model_free(m);
    return s ? 1 : 0;
}
