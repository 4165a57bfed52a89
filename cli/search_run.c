/* search_run.c -- running the method of `evobudget search` on a built problem: the search loop with its
 * progress, checkpoints and log, the allocation rules, and what a run writes (front.csv, manifest.json). */
#define _POSIX_C_SOURCE 200809L
#include "cli/search.h"
#include "evobudget/evb_timing.h"

#include <dlfcn.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef EVB_MPI
#include "evaluators/mpi.h"
#include <mpi.h>
#endif

int g_mpi_rank = 0, g_mpi_size = 1;

void run_free(run *r) {
    model_fitness_free(r);
    evb_mp_free(r->mp);
    free(r->uniform);
    free(r->prior);
    free(r->prior_start);
    if (r->plugin && r->plugin_params) r->plugin->destroy(r->plugin_params);
    if (r->plugin_handle) dlclose(r->plugin_handle);
    evb_level_cache_free(r->cache);
    evb_teacher_free(r->teacher);
    evb_teacher_free(r->hteacher);
    evb_calib_free(r->env.calib);
    evb_db_close(r->db);
    evb_windows_free(&r->w);
    evb_windows_free(&r->hw);
    loaded_free(&r->l);
    memset(r, 0, sizeof *r);
}

void outcome_free(outcome *x) {
    evb_allocation_free(x->best);
    free(x->front);
    free(x->front_levels);
    memset(x, 0, sizeof *x);
}

void say(void *ctx, const char *line) { (void)ctx; fprintf(stderr, "%s: %s\n", cmd_name, line); }

/* The generations a user can afford by default: a quarter of the paper's for a model's sparsity, a third for
 * bits and bytes (every generation runs the model lambda times); the paper's for depth and problem files. */
static int default_generations(const run *r, int paper) {
    const evb_mp_method *me = evb_mp_method_find(r->method);
    if (me->rule || me->one_round) return paper;
    if (r->kind == EVB_TARGET_SPARSITY) return paper / 4;
    if (r->kind == EVB_TARGET_BITS || r->kind == EVB_TARGET_BYTES) return paper / 3;
    return paper;
}

int search_params(run *r, evb_search_params *sp) {
    const opts *o = r->o;
    /* the stages' tokens scale to what the fitness holds: the task's (or plug-in's, workers') scored tokens
     * when they alone are the fitness */
    size_t total = r->sq_ready && r->w_model == 0 ? evb_seqs_scored(r->sq.seqs) : r->calib_tokens;
    *sp = evb_mp_search_params(r->mp, r->method, total, (uint64_t)o->seed);
    r->fit_tokens = total;
    int paper = sp->generations;
    if (o->generations && strcmp(o->generations, "paper")) {
        char *end;
        long g = strtol(o->generations, &end, 10);
        if (*end || end == o->generations || g < 1 || g > (1 << 24))
            return usage_error("--generations '%s' must be a count in [1, %d] or 'paper' (the paper's count, %d here)", o->generations, 1 << 24, paper);
        sp->generations = (int)g;
    } else if (!o->generations) sp->generations = default_generations(r, paper);
    if (evb_mp_method_find(r->method)->one_round) sp->generations = 1;
    if (o->offspring) sp->n_offspring = (int)o->offspring;
    else if (o->surrogate && !strcmp(r->method, "evopress")) /* a quarter of the offspring scored, chosen by the surrogate */
        sp->n_offspring = sp->n_offspring / 4 > 4 ? sp->n_offspring / 4 : 4;
    if (o->initial) sp->n_initial = (int)o->initial;
    else if (o->surrogate && !strcmp(r->method, "evopress")) sp->n_initial /= 4; /* and a quarter of the random start */
    sp->token_budget = (size_t)o->token_budget;
    sp->surrogate = (int)o->surrogate;
    sp->memo = !o->no_memo;
    if (r->stages.n_stages) {
        sp->n_stages = r->stages.n_stages;
        memcpy(sp->n_survivors, r->stages.n_survivors, sizeof sp->n_survivors);
        memcpy(sp->n_tokens, r->stages.n_tokens, sizeof sp->n_tokens);
    }
    if (sp->generations < paper && !o->generations && g_mpi_rank == 0)
        fprintf(stderr, "%s: %s: %d generations (the paper's %d: --generations paper)\n", cmd_name, r->method, sp->generations, paper);
    return 0;
}

/* The search object of the run's problem with its fitness attached; a library status. */
static int make_search(const run *r, const evb_search_params *sp, evb_search **srch) {
    evb_problem p = evb_mp_method_find(r->method)->front ? evb_mp_front_problem(r->mp) : r->mp->problem;
    *srch = NULL;
    if (r->prior_start) p.start = r->prior_start;
    int s = evb_problem_check(&p);
    if (!s) s = evb_search_alloc(evb_search_type_find(r->method), sp, &p, srch);
    if (!s) s = r->ft ? evb_search_set(*srch, r->ft, r->fparams, r->n_threads) : evb_search_set(*srch, &evb_fitness_kl, &r->kp, 0);
    if (!s && r->prior) s = evb_search_set_prior(*srch, r->prior, r->prior_maxl);
    if (!s && r->prior) evb_search_charge_tokens(*srch, r->prior_tokens);
    if (s) { evb_search_free(*srch); *srch = NULL; }
    return s;
}

int prior_start(run *r) {
    free(r->prior); free(r->prior_start);
    r->prior = NULL; r->prior_start = NULL;
    if (!r->o->prior) return 0;
    int s = read_prior(r, &r->prior, &r->prior_maxl, &r->prior_tokens);
    if (s) return fail(s);
    const evb_problem *p = &r->mp->problem;
    if (evb_mp_method_find(r->method)->front || !p->start) return 0;
    r->prior_start = malloc(sizeof(int16_t) * (size_t)p->n_units);
    if (!r->prior_start) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    memcpy(r->prior_start, p->start, sizeof(int16_t) * (size_t)p->n_units);
    r->prior_moves = evb_problem_additive_optimum(p, r->prior, r->prior_maxl, r->prior_start);
    if (r->prior_moves < 0) return fail(r->prior_moves);
    if (g_mpi_rank == 0)
        fprintf(stderr, "%s: the start: the profile's additive optimum, %d exchanges from the uniform "
                "allocation; its %zu tokens count as the search's\n", cmd_name, r->prior_moves, r->prior_tokens);
    return 0;
}

#ifdef EVB_MPI
/* When a rank dies, mpirun ends the others with SIGTERM: rank 0 then says where the run can continue. */
static char g_stop_msg[2][1600];
static volatile sig_atomic_t g_stop_which = -1;
static void on_term(int sig) {
    (void)sig;
    int k = g_stop_which;
    if (k >= 0) { ssize_t w = write(2, g_stop_msg[k], strlen(g_stop_msg[k])); (void)w; }
    _exit(143);
}
static void stop_message(const char *ck, int generation) {
    int k = g_stop_which == 0 ? 1 : 0;
    snprintf(g_stop_msg[k], sizeof g_stop_msg[k], "\n%s: stopped: the MPI job is ending (a rank exited; see mpirun's message). "
             "%s holds generation %d (hint: rerun with --resume, with any number of ranks)\n", cmd_name, ck, generation);
    g_stop_which = k;
}

/* Ranks > 0: the same search object, serving rank 0's batches until it is done. */
int mpi_worker(run *r, const evb_search_params *sp) {
    evb_search *srch = NULL;
    evb_mpi *mp = NULL;
    int s = make_search(r, sp, &srch);
    if (!s) s = evb_mpi_create(r->ft ? NULL : &r->kp, &mp);
    if (!s) s = evb_mpi_serve(mp, srch);
    evb_mpi_free(mp);
    evb_search_free(srch);
    return s ? fail(s) : 0;
}

static int mpi_attach(const run *r, evb_search *srch, evb_mpi **mp) {
    *mp = NULL;
    if (g_mpi_size < 2) return EVB_SUCCESS;
    int s = evb_mpi_create(r->ft ? NULL : &r->kp, mp);
    if (s) return s;
    evb_search_set_batch(srch, evb_mpi_batch, *mp);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    return EVB_SUCCESS;
}
#endif

/* Continues from RUNDIR/checkpoint.msgpack on --resume; the log is cut to the checkpoint's generation. */
static int resume_from(const run *r, evb_search *srch, const char *ck) {
    if (!r->o->resume || access(ck, R_OK)) return EVB_SUCCESS;
    int s = evb_search_load(srch, ck);
    if (s) return s;
    evb_search_info in;
    evb_search_get_info(srch, &in);
    fprintf(stderr, "%s: resuming %s at generation %d\n", cmd_name, ck, in.generation);
    char lp[1400];
    snprintf(lp, sizeof lp, "%s/log.jsonl", r->out);
    return log_truncate(r->log, lp, in.generation);
}

/* One progress line: a bar-less line that rewrites itself on a terminal; uniform and random have one round. */
static void progress_line(const run *r, const evb_search_params *sp, const evb_search_info *in, int g0, size_t ev0, double el, int tty) {
    int gd = in->generation - g0, total = sp->generations - g0;
    double eta = gd > 0 ? el / gd * (total - gd) : 0, eps = el > 0 ? (in->evaluations - ev0) / el : 0;
    if (sp->generations <= 1) {
        fprintf(stderr, tty ? "\r%s: %zu candidate(s) scored, best %.6g, %.0fs   " : "%s: %zu candidate(s) scored, best %.6g, %.0fs\n",
                r->method, in->evaluations, in->best_fitness, el);
        return;
    }
    fprintf(stderr, tty ? "\r%s: generation %d/%d  %.1f evals/s  best %.6g  %.0fs elapsed, ETA %.0fs   " :
                          "%s: generation %d/%d  %.1f evals/s  best %.6g  %.0fs elapsed, ETA %.0fs\n",
            r->method, in->generation, sp->generations, eps, in->best_fitness, el, eta);
}

/* Generations until done, each logged and checkpointed. */
static int iterate(const run *r, evb_search *srch, const evb_search_params *sp, const char *ck, void *mpi) {
    double t0 = now_s(), last = 0;
    int tty = isatty(2), status = EVB_CONTINUE, told = 0;
    evb_search_info in = {0};
    evb_search_get_info(srch, &in);
    if (in.generation >= sp->generations && in.generation > 0) status = EVB_SUCCESS;
    size_t ev0 = in.evaluations;
    int g0 = in.generation;
    (void)mpi;
    while (status == EVB_CONTINUE) {
        status = evb_search_iterate(srch);
        if (status != EVB_CONTINUE && status != EVB_SUCCESS) break;
        evb_search_get_info(srch, &in);
        if (in.budget_stop) break; /* no generation ran: nothing new to log or save */
        double el = now_s() - t0;
        fprintf(r->log, "{\"generation\": %d, \"best_fitness\": %.12g, \"best_cost\": %.17g, \"evaluations\": %zu, \"memo_hits\": %zu, \"tokens\": %zu, \"seconds\": %.3f",
                in.generation, in.best_fitness, in.best_cost, in.evaluations, in.memo_hits, in.tokens, el);
        if (sp->surrogate) fprintf(r->log, isnan(in.surrogate_rho) ? ", \"surrogate_rho\": null" : ", \"surrogate_rho\": %.6f", in.surrogate_rho);
        fprintf(r->log, "}\n");
        fflush(r->log);
        int cs = evb_search_save(srch, ck);
        if (cs) { status = cs; break; }
#ifdef EVB_MPI
        if (mpi) stop_message(ck, in.generation);
#endif
        if (!told && status == EVB_CONTINUE && in.generation > g0 && sp->generations - g0 > 2) {
            told = 1;   /* the expected time, once the first generation has shown what one costs */
            fprintf(stderr, "%s%s: expected time: about %.0f s for %d generations\n", tty ? "\r" : "", cmd_name,
                    el / (in.generation - g0) * (sp->generations - g0), sp->generations - g0);
        }
        if (el - last >= (tty ? 0.2 : 5.0) || status == EVB_SUCCESS) { last = el; progress_line(r, sp, &in, g0, ev0, el, tty); }
    }
    if (tty) fputc('\n', stderr);
    if (in.budget_stop && in.generation > 0)
        fprintf(stderr, "%s: stopped by --token-budget %zu after generation %d: %zu tokens scored, the next generation may score %zu "
                "(hint: --resume with a larger budget continues)\n", cmd_name, sp->token_budget, in.generation, in.tokens, in.next_tokens);
    return status;
}

/* The fitness of a candidate on every calibration token (or all of the fitness's sequences); EVB_ENOTSUP-free:
 * only called when such a measure exists (the KL fitness, or a sequence fitness whose data is loaded). */
static int score_all(const run *r, const int16_t *lv, double *f) {
    return r->ft ? evb_fitness_once(r->ft, r->fparams, lv, r->mp->problem.n_units, f) : evb_mp_score(&r->kp, lv, r->mp->problem.n_units, f);
}

/* The result on every calibration token: what a search measured on its minibatches is then comparable across
 * methods and targets. For a search of one budget (EvoPress, random, uniform), its front (every candidate its
 * last stage scored that no other beat at once in cost and fitness) and its incumbent are rescored on every
 * token; front.csv is the non-dominated set of those scores and best.json the lowest of them, so the two
 * describe the same candidates on the same measure (a front of minibatch scores from different generations
 * can rank an old parent below the incumbent). NSGA-II's front and best are already on one fixed batch. */
static int finish_search(run *r, evb_search *srch, outcome *x) {
    int U = r->mp->problem.n_units, n = evb_search_front(srch, NULL, NULL, 0);
    int measure = !r->ft || r->sq_ready, rescore = measure && !evb_mp_method_find(r->method)->front;
    int16_t *lv = malloc(sizeof(int16_t) * U * (size_t)(n + 1));
    evb_front_point *pt = malloc(sizeof *pt * (size_t)(n + 1));
    double *fa = malloc(sizeof(double) * (size_t)(n + 1)), *cost = malloc(sizeof(double) * (size_t)(n + 1));
    int *idx = malloc(sizeof(int) * (size_t)(n + 1));
    x->front = malloc(sizeof(evb_front_point) * (size_t)(n + 1));
    x->front_levels = malloc(sizeof(int16_t) * U * (size_t)(n + 1));
    int s = lv && pt && fa && cost && idx && x->front && x->front_levels ? EVB_SUCCESS : EVB_RAISEF(EVB_ENOMEM, "out of memory");
    double fit = 0;
    if (!s) { /* candidate 0: the incumbent; then the front's points that differ from it */
        evb_search_best(srch, lv, &fit);
        pt[0] = (evb_front_point){evb_problem_cost(&r->mp->problem, lv), fit};
        int got = evb_search_front(srch, pt + 1, lv + U, n), m = 1;
        for (int i = 1; i <= got; i++)
            if (memcmp(lv + (size_t)i * U, lv, sizeof(int16_t) * U)) {
                memmove(lv + (size_t)m * U, lv + (size_t)i * U, sizeof(int16_t) * U);
                pt[m++] = pt[i];
            }
        n = rescore ? m : 1;
    }
    for (int i = 0; !s && measure && i < n; i++) {
        s = score_all(r, lv + (size_t)i * U, &fa[i]);
        x->final_tokens += r->fit_tokens;
    }
    int best = 0;
    for (int i = 1; !s && i < n; i++) if (fa[i] < fa[best]) best = i;
    if (!s) s = evb_mp_config(r->mp, lv + (size_t)best * U, pt[best].fitness, &x->best);
    if (!s && measure) x->best->fitness_all = fa[best];
    if (!s && rescore) {
        for (int i = 0; i < n; i++) cost[i] = pt[i].cost;
        int m = evb_pareto_front_2d(cost, fa, n, idx);
        if (m < 0) s = EVB_RAISEF(EVB_ENOMEM, "out of memory");
        for (int k = 0; k < m; k++) {
            x->front[k] = (evb_front_point){cost[idx[k]], fa[idx[k]]};
            memcpy(x->front_levels + (size_t)k * U, lv + (size_t)idx[k] * U, sizeof(int16_t) * U);
        }
        x->n_front = m;
        x->front_rescored = 1;
    } else if (!s) x->n_front = evb_search_front(srch, x->front, x->front_levels, evb_search_front(srch, NULL, NULL, 0));
    free(lv); free(pt); free(fa); free(cost); free(idx);
    evb_search_get_info(srch, &x->info);
    x->searched = 1;
    return s;
}

static int run_search(run *r, const evb_search_params *sp, outcome *x) {
    evb_search *srch = NULL;
    void *mpi = NULL;
    int s = make_search(r, sp, &srch);
#ifdef EVB_MPI
    if (!s) s = mpi_attach(r, srch, (evb_mpi **)&mpi);
#endif
    char ck[1400];
    snprintf(ck, sizeof ck, "%s/checkpoint.msgpack", r->out);
    if (!s) s = resume_from(r, srch, ck);
    double t0 = now_s();
    if (!s) s = iterate(r, srch, sp, ck, mpi);
    x->search_s = now_s() - t0;
#ifdef EVB_MPI
    if (mpi) { evb_mpi_stop(mpi); evb_mpi_free(mpi); }
#endif
    evb_search_info in = {0};
    if (!s) evb_search_get_info(srch, &in);
    if (!s && in.budget_stop && in.generation == 0) {
        evb_search_free(srch);
        return refuse("--token-budget %zu is below what the first generation may score (%zu tokens, after "
                      "the %zu counted before it) (hint: raise it)", sp->token_budget, in.next_tokens, in.tokens);
    }
    if (s == EVB_SUCCESS) s = finish_search(r, srch, x);
    evb_search_free(srch);
    return s ? fail(s) : 0;
}

/* A rule's callbacks: its steps into log.jsonl, its progress (ECoFLaP's scoring) on stderr. */
typedef struct rule_ctx { FILE *log; progress p; } rule_ctx;
static void rule_record(void *ctx, const char *json) { fprintf(((rule_ctx *)ctx)->log, "%s\n", json); }
static void rule_progress(void *ctx, int done, int total) { progress_cb(&((rule_ctx *)ctx)->p, done, total); }

int run_method(run *r, const evb_search_params *sp, outcome *x) {
    memset(x, 0, sizeof *x);
    for (int k = 0; k < 4; k++) x->held[k] = NAN;
    if (!evb_mp_is_rule(r->method)) return run_search(r, sp, x);
    rule_ctx rc = {r->log, {now_s(), r->method, isatty(2), 0, "window-units"}};
    r->env.record = rule_record;
    r->env.progress = rule_progress;
    r->env.ctx = &rc;
    r->env.tokens = 0;
    int s = evb_mp_rule(&r->env, r->mp, &r->kp, r->method, (uint64_t)r->o->seed, &x->best);
    x->info.tokens = r->env.tokens;
    r->env.record = NULL;
    r->env.progress = NULL;
    r->env.ctx = NULL;
    if (s) return fail(s);
    x->front = malloc(sizeof *x->front);
    if (!x->front) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    x->front[0] = (evb_front_point){x->best->cost, x->best->fitness};
    if (r->mp->kind != EVB_TARGET_DROP) return 0;
    x->front_levels = malloc(sizeof(int16_t) * r->mp->problem.n_units);   /* ShortGPT's pick is a candidate of the problem */
    if (!x->front_levels) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    if ((s = evb_mp_levels(r->mp, x->best, x->front_levels))) return fail(s);
    x->n_front = 1;
    return 0;
}

int write_front(const run *r, const outcome *x) {
    int U = r->mp->problem.n_units, n = x->n_front > 0 ? x->n_front : 1;
    char *buf = malloc(256 + (size_t)n * (64 + 7 * (size_t)U)), *p = buf;
    if (!buf) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    p += sprintf(p, "id,cost,cost_fraction,fitness,heldout,levels\n");
    for (int i = 0; i < n; i++) {
        const evb_front_point *f = &x->front[i];
        p += sprintf(p, "%d,%.17g,%.9g,%.17g,,", i, f->cost, f->cost / r->mp->total_size, f->fitness);
        for (int u = 0; x->n_front && u < U; u++) p += sprintf(p, "%s%d", u ? " " : "", x->front_levels[(size_t)i * U + u]);
        *p++ = '\n';
    }
    *p = 0;
    int rc = write_text(r->out, "front.csv", buf);
    free(buf);
    return rc;
}

json_t *manifest(const run *r, const evb_search_params *sp) {
    const evb_mp *mp = r->mp;
    const opts *o = r->o;
    json_t *stages = json_array();
    for (int j = 0; sp && j < sp->n_stages; j++)
        json_array_append_new(stages, json_pack("{s:i, s:I}", "survivors", sp->n_survivors[j], "tokens", (json_int_t)sp->n_tokens[j]));
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:I, s:I}",
                          "evobudget", EVB_VERSION, "blas", evb_blas_library(), "model", r->l.m ? r->l.m->path : "", "model_fingerprint", r->mfp,
                          "target", mp->target, "target_kind", evb_target_kind_name(mp->kind), "method", r->method,
                          "compressor", r->comp ? r->comp->name : "", "db", r->dbdir, "calib_fingerprint", r->cfp,
                          "seq_len", r->w.seq_len, "calib_windows", r->w.n, "calib_tokens", (json_int_t)r->calib_tokens, "seed", (json_int_t)o->seed);
    json_object_set_new(j, "calib", json_string(o->calib ? o->calib : "assets/demo/calib.txt"));
    json_object_set_new(j, "fitness", json_string(fitness_name(r)));
    if (o->problem) json_object_set_new(j, "problem", json_string(o->problem));
    if (o->fitness_plugin) json_object_set_new(j, "fitness_plugin", json_string(o->fitness_plugin));
    json_object_set_new(j, "units", json_integer(mp->problem.n_units));
    json_object_set_new(j, "budget", json_real(mp->problem.budget));
    json_object_set_new(j, "tolerance", json_real(mp->problem.tolerance));
    const evb_cost_table *ct = evb_mp_cost_table(mp);   /* a speed target: what its costs were measured on */
    if (ct)
        json_object_set_new(j, "speed", json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:f}", "cpu", ct->cpu,
                                                  "compute", ct->compute, "kernel", ct->kernel, "threads", ct->threads,
                                                  "batch", ct->batch, "seq_len", ct->seq, "struct_steps", ct->n_mlp - 1,
                                                  "timing_repeats", ct->repeats, "dense_seconds", ct->dense,
                                                  "fixed_seconds", ct->fixed));
    if (sp) json_object_set_new(j, "search", json_pack("{s:i, s:i, s:o, s:i, s:i, s:I, s:b, s:b}", "generations", sp->generations,
                                                       "offspring", sp->n_offspring, "stages", stages, "max_mutations", sp->max_mutations,
                                                       "initial", sp->n_initial, "initial_tokens", (json_int_t)sp->initial_tokens,
                                                       "memo", sp->memo, "reuse", r->kp.reuse_bytes > 0));
    else json_decref(stages);
    if (sp && sp->surrogate) json_object_set_new(json_object_get(j, "search"), "surrogate", json_integer(sp->surrogate));
    if (sp && r->prior_start) {
        json_t *lv = json_array();
        for (int u = 0; u < mp->problem.n_units; u++)
            json_array_append_new(lv, json_integer(r->prior_start[u]));
        json_t *st = json_pack("{s:s, s:s, s:i, s:I, s:o}", "from", "prior", "prior", o->prior,
                               "exchanges", r->prior_moves, "prior_tokens", (json_int_t)r->prior_tokens, "levels", lv);
        json_object_set_new(json_object_get(j, "search"), "start", st);
    }
    return j;
}

/* The one-object summary of a finished run on stdout (--json), or a line of text. */
int print_summary(const run *r, const outcome *x, double t0) {
    const evb_allocation *b = x->best;
    char bp[1400];
    snprintf(bp, sizeof bp, "%s/best.json", r->out);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:i, s:f}", "best", bp, "method", r->method,
                          "target_kind", evb_target_kind_name(r->mp->kind), "fitness_name", fitness_name(r),
                          "fitness", b->fitness, "cost", b->cost, "budget", r->mp->problem.budget, "front", x->n_front, "seconds", now_s() - t0);
    if (r->mp->kind != EVB_TARGET_FILE) {
        json_object_set_new(j, "target", json_real(r->mp->target));
        json_object_set_new(j, "db", json_string(r->dbdir));
    }
    if (x->searched) {
        json_object_set_new(j, "generations", json_integer(x->info.generation));
        json_object_set_new(j, "evaluations", json_integer((json_int_t)x->info.evaluations));
        json_object_set_new(j, "memo_hits", json_integer((json_int_t)x->info.memo_hits));
        json_object_set_new(j, "tokens", json_integer((json_int_t)x->info.tokens));
        json_object_set_new(j, "tokens_final", json_integer((json_int_t)x->final_tokens));
        json_object_set_new(j, "stop", json_string(x->info.budget_stop ? "token_budget" : "generations"));
        json_object_set_new(j, "front_measure", json_string(x->front_rescored ? "all" : "search"));
        json_object_set_new(j, "search_seconds", json_real(x->search_s));
    } else /* a rule's forwards */
        json_object_set_new(j, "tokens", json_integer((json_int_t)x->info.tokens));
    if (!isnan(b->fitness_all)) json_object_set_new(j, "fitness_all", json_real(b->fitness_all));
    if (!isnan(b->speedup)) json_object_set_new(j, "speedup", json_real(b->speedup));
    if (r->o->json) return print_json(j);
    json_decref(j);
    if (r->mp->kind == EVB_TARGET_FILE) printf("%s: %s on %s", r->out, r->method, r->o->problem);
    else printf("%s: %s at %s %g", r->out, r->method, evb_target_kind_name(r->mp->kind), r->mp->target);
    printf(": fitness %.9g", b->fitness);
    if (!isnan(b->fitness_all)) printf(" (%.9g on all %s)", b->fitness_all, r->sq_ready ? "of the fitness's data" : "calibration tokens");
    printf(", cost %.9g (budget %.9g)", b->cost, r->mp->problem.budget);
    if (!isnan(b->speedup)) printf(", %.4f s a forward against the dense %.4f s: %.3fx predicted", b->seconds,
                                   b->dense_seconds, b->speedup);
    printf("; %s\n", bp);
    return 0;
}
