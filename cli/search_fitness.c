/* search_fitness.c -- a model's search scored by more than KL: `--fitness task:FILE` and mixes such as
 * `kl+0.5*task:FILE`, a plug-in (`--fitness-plugin lib.so [--fitness-arg S]`) or workers (`--fitness-cmd`)
 * that read the compressed model's log-probabilities of the sequences they register. */
#define _POSIX_C_SOURCE 200809L
#include "cli/search.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* One term of --fitness: [W*]kl, [W*]ppl or [W*]task:FILE. */
static int fitness_term(run *r, const char *t, size_t n, const char *spec) {
    char buf[1200];
    if (n == 0 || n >= sizeof buf) return usage_error("--fitness '%s': an empty or overlong term", spec);
    memcpy(buf, t, n);
    buf[n] = 0;
    double w = 1;
    char *name = buf, *star = strchr(buf, '*'), *colon = strchr(buf, ':');
    if (star && (!colon || star < colon)) {
        char *end;
        *star = 0;
        w = strtod(buf, &end);
        if (*end || end == buf || !(w > 0) || w > 1e6) return usage_error("--fitness '%s': weight '%s' must be a positive number", spec, buf);
        name = star + 1;
    }
    if (!strcmp(name, "kl") || !strcmp(name, "ppl")) {
        if (r->w_model > 0) return usage_error("--fitness '%s': kl or ppl once", spec);
        r->metric = !strcmp(name, "kl") ? EVB_METRIC_KL : EVB_METRIC_PPL;
        r->w_model = w;
    } else if (!strncmp(name, "task:", 5) && name[5]) {
        if (r->w_seq > 0) return usage_error("--fitness '%s': one task", spec);
        snprintf(r->task_path, sizeof r->task_path, "%s", name + 5);
        r->w_seq = w;
    } else return usage_error("--fitness '%s': '%s' is not kl, ppl or task:FILE (terms as W*NAME joined by +, e.g. kl+0.5*task:items.jsonl)", spec, name);
    return 0;
}

int parse_fitness_spec(run *r) {
    const opts *o = r->o;
    r->metric = EVB_METRIC_KL;
    r->w_model = o->fitness_plugin || o->fitness_cmd ? 0 : 1; /* a plug-in's or workers' fitness alone */
    if (!o->fitness) return 0;
    r->w_model = 0;
    for (const char *t = o->fitness;;) {
        const char *plus = strchr(t, '+');
        int rc = fitness_term(r, t, plus ? (size_t)(plus - t) : strlen(t), o->fitness);
        if (rc) return rc;
        if (!plus) break;
        t = plus + 1;
    }
    if (r->w_seq > 0 && (o->fitness_plugin || o->fitness_cmd)) return usage_error("give one of --fitness task:FILE, --fitness-plugin and --fitness-cmd");
    if ((r->w_seq > 0 || o->fitness_plugin || o->fitness_cmd) && evb_mp_is_rule(r->method))
        return usage_error("--method %s is an allocation rule that chooses by KL; a task, plug-in or worker fitness needs a search", r->method);
    return 0;
}

/* The workers' registration: one worker started, its data read, stopped. */
static int register_workers(run *r) {
    int rc = worker_params(r);
    if (rc) return rc;
    const evb_model *m = r->l.m;
    r->wm = (evb_worker_model){m->config.vocab_size, m->config.max_seq_len, evb_tokenizer_bos(r->l.t), evb_tokenizer_eos(r->l.t), r->l.t};
    r->wp.model = &r->wm;
    int s = evb_worker_register(&r->wp, &r->seqs, &r->sq.topk);
    if (s) return s == EVB_ENOMEM ? fail(s) : refuse_status("--fitness-cmd: ");
    r->wp.registered = &r->seqs;
    r->wp.topk = r->sq.topk;
    r->sq.judge = &evb_judge_worker;
    r->sq.judge_ctx = &r->wp;
    return 0;
}

static int use_plugin_model(run *r) {
    int rc = open_plugin(r, r->o->fitness_plugin);
    if (rc) return rc;
    int s = evb_plugin_model_create(r->plugin, r->l.m, r->l.t, r->o->fitness_arg, evb_model_n_units(r->l.m), &r->pm);
    if (s) return s == EVB_ENOMEM ? fail(s) : refuse_status("--fitness-plugin: ");
    r->sq.topk = r->pm->topk;
    r->sq.judge = &evb_judge_plugin;
    r->sq.judge_ctx = r->pm;
    return 0;
}

/* After the model is loaded: the sequences of the task, the plug-in or the workers, ready to score. */
int setup_model_fitness(run *r) {
    const opts *o = r->o;
    int rc = 0, s;
    r->sq.seqs = &r->task.seqs;
    if (r->w_seq > 0) {
        if ((s = evb_task_load(r->task_path, r->l.t, r->l.m->config.max_seq_len, &r->task))) return s == EVB_ENOMEM ? fail(s) : refuse_status("--fitness: ");
        r->sq.judge = &evb_judge_task;
        r->sq.judge_ctx = &r->task;
    } else if (o->fitness_plugin) {
        rc = use_plugin_model(r);
        r->sq.seqs = r->pm ? &r->pm->seqs : NULL;
        r->w_seq = 1;
    } else if (o->fitness_cmd) {
        rc = register_workers(r);
        r->sq.seqs = &r->seqs;
        r->w_seq = 1;
    } else return 0;
    r->sq.model.m = r->l.m;
    if (!rc && (s = evb_seq_params_init(&r->sq))) rc = refuse_status("--fitness: ");
    if (!rc) r->sq_ready = 1;
    return rc;
}

/* After a target's problem is built (its units in r->kp): the fitness the search runs. */
int attach_model_fitness(run *r) {
    if (!r->sq_ready) return 0;
    evb_windows w = r->sq.w;
    r->sq.model = r->kp;
    r->sq.w = w;
    if (r->pm && !r->pm->dense.lp) {
        int s = evb_plugin_model_dense(r->pm, &r->sq);
        if (s) return fail(s);
    }
    if (r->w_model > 0) {
        r->sum = (evb_sum_params){2, {&evb_fitness_kl, &evb_fitness_seq}, {&r->kp, &r->sq}, {r->w_model, r->w_seq}};
        r->ft = &evb_fitness_sum;
        r->fparams = &r->sum;
    } else if (r->w_seq != 1) {
        r->sum = (evb_sum_params){1, {&evb_fitness_seq}, {&r->sq}, {r->w_seq}};
        r->ft = &evb_fitness_sum;
        r->fparams = &r->sum;
    } else {
        r->ft = &evb_fitness_seq;
        r->fparams = &r->sq;
    }
    r->n_threads = r->o->fitness_cmd ? (r->o->workers ? (int)r->o->workers : 1) : 0;
    if (r->o->fitness_cmd) { /* the workers' hello describes this target's problem */
        r->wp.n_units = r->mp->problem.n_units;
        r->wp.n_levels = r->mp->problem.n_levels;
        r->wp.budget = r->mp->problem.budget;
    }
    return 0;
}

void model_fitness_free(run *r) {
    evb_seq_params_free(&r->sq);
    evb_plugin_model_free(r->pm);
    evb_task_free(&r->task);
    evb_seqs_free(&r->seqs);
}

/* What the run records as its fitness. */
const char *fitness_name(const run *r) {
    if (r->o->fitness) return r->o->fitness;
    if (r->o->fitness_plugin) return r->plugin && r->plugin->name ? r->plugin->name : "plugin";
    if (r->o->fitness_cmd) return "worker";
    return r->ft ? r->ft->name : r->kp.metric == EVB_METRIC_KL ? "kl" : "ppl";
}
