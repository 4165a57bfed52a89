/* search_file.c -- `evobudget search --problem FILE`: units, levels, costs and the budget from a file, no
 * model; the fitness is the file's additive one, a plug-in's (a shared object) or workers' (processes). */
#define _POSIX_C_SOURCE 200809L
#include "cli/search.h"

#include "core/fileio.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int open_plugin(run *r, const char *path) {
    r->plugin_handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!r->plugin_handle) return usage_error("--fitness-plugin %s: %s", path, dlerror());
    evb_plugin_entry_fn entry = (evb_plugin_entry_fn)(uintptr_t)dlsym(r->plugin_handle, EVB_PLUGIN_ENTRY);
    if (!entry) return usage_error("--fitness-plugin %s: no function %s (see include/evobudget/evb_plugin.h)", path, EVB_PLUGIN_ENTRY);
    const evb_plugin *pl = entry();
    if (!pl || (pl->abi != 1 && pl->abi != EVB_PLUGIN_ABI))
        return usage_error("--fitness-plugin %s: plug-in ABI %d, this program speaks 1 and %d (rebuild the plug-in against these headers)", path, pl ? pl->abi : -1, EVB_PLUGIN_ABI);
    if (!pl->name || !pl->destroy) return usage_error("--fitness-plugin %s: the plug-in leaves its name or destroy empty", path);
    r->plugin = pl;
    return 0;
}

static int load_plugin(run *r, const char *path) {
    int rc = open_plugin(r, path);
    if (rc) return rc;
    const evb_plugin *pl = r->plugin;
    if (!pl->fitness || !pl->fitness->evaluate || !pl->fitness->workspace_size || !pl->create)
        return usage_error("--fitness-plugin %s: plug-in '%s' has no fitness of levels (create and fitness); it scores models: give --model", path, pl->name);
    evb_clear_error();
    r->plugin_params = pl->create(r->o->problem, r->mp->problem.n_units, r->mp->problem.n_levels);
    if (!r->plugin_params) {
        const char *msg = evb_last_error();
        return usage_error("--fitness-plugin %s: create failed%s%s", path, msg[0] ? ": " : "", msg);
    }
    r->ft = pl->fitness;
    r->fparams = r->plugin_params;
    return 0;
}

int worker_params(run *r) {
    const opts *o = r->o;
    double to = 60;
    if (o->worker_timeout) {
        char *end;
        to = strtod(o->worker_timeout, &end);
        if (*end || end == o->worker_timeout || !(to > 0)) return usage_error("--worker-timeout '%s' must be a positive number of seconds", o->worker_timeout);
    }
    signal(SIGPIPE, SIG_IGN); /* a worker that dies makes writes fail with EPIPE, not end evobudget */
    int U = r->mp ? r->mp->problem.n_units : 0;
    r->wp = (evb_worker_params){o->fitness_cmd, o->problem ? o->problem : "", U, r->mp ? r->mp->problem.n_levels : NULL,
                                r->mp ? r->mp->problem.budget : 0, to, o->worker_retries ? (int)o->worker_retries : 2, say, NULL, NULL, NULL, 0};
    return 0;
}

static int use_workers(run *r) {
    int rc = worker_params(r);
    if (rc) return rc;
    r->ft = &evb_fitness_worker;
    r->fparams = &r->wp;
    r->n_threads = r->o->workers ? (int)r->o->workers : 1;
    return 0;
}

static int choose_fitness(run *r) {
    const opts *o = r->o;
    if (o->fitness_plugin && o->fitness_cmd) return usage_error("give one of --fitness-plugin and --fitness-cmd");
    if (o->fitness_plugin) return load_plugin(r, o->fitness_plugin);
    if (o->fitness_cmd) return use_workers(r);
    if (!evb_mp_file_has_values(r->mp))
        return usage_error("--problem %s: without --fitness-plugin or --fitness-cmd every level needs a \"fitness\" value (the built-in additive fitness)", o->problem);
    r->ft = &evb_fitness_additive;
    r->fparams = r->mp;
    return 0;
}

static int check_flags(const run *r) {
    const opts *o = r->o;
    if (o->target_sparsity || o->target_bits || o->target_drop || o->target_bytes) return usage_error("--problem replaces --target-*: the budget is in the file");
    if (o->model || o->calib || o->db || o->compressor || o->teacher || o->fitness || o->fitness_arg)
        return usage_error("--problem runs without a model: --model, --calib, --db, --compressor, --teacher, --fitness and --fitness-arg do not apply");
    if (evb_mp_method_check(r->method, EVB_TARGET_FILE, 0)) return refuse_status("--problem: ");
    return 0;
}

int search_problem(run *r) {
    opts *o = r->o;
    int rc = check_flags(r), s;
    if (rc) return rc;
    r->kind = EVB_TARGET_FILE;
    snprintf(r->out, sizeof r->out, "%s", o->out);
    set_threads(o);
    if ((s = evb_mp_load_file(o->problem, &r->mp))) return s == EVB_ENOMEM || s == EVB_EIO ? fail(s) : refuse_status("--problem ");
    if (!strcmp(r->method, "uniform") && !r->mp->start_given) return usage_error("--method uniform scores the problem's \"start\"; the file gives none");
    if ((rc = choose_fitness(r))) return rc;
    run_flags rf = {o->resume, o->force};
    int lock = -1;
    if ((rc = rundir_open(r->out, &rf, "best.json", "checkpoint.msgpack", &lock))) return rc;
    rundir_start_over(r->out, &rf);
    evb_search_params sp;
    if ((rc = search_params(r, &sp))) return rc;
    json_t *man = manifest(r, &sp);
    rc = rundir_manifest(r->out, man, o->resume);
    json_decref(man);
    char lp[1400];
    snprintf(lp, sizeof lp, "%s/log.jsonl", r->out);
    r->log = rc ? NULL : fopen(lp, o->resume ? "a" : "w");
    if (!rc && !r->log) rc = fail(evb_errorf(__FILE__, __LINE__, EVB_EIO, "%s: %s", lp, strerror(errno)));
    outcome x = {0};
    double t0 = now_s();
    if (!rc) rc = run_method(r, &sp, &x);
    if (r->log) fclose(r->log);
    r->log = NULL;
    char bp[1400];
    snprintf(bp, sizeof bp, "%s/best.json", r->out);
    if (!rc) snprintf(x.best->method, sizeof x.best->method, "%s", r->method);
    if (!rc) rc = write_front(r, &x);
    if (!rc && (s = evb_allocation_write(x.best, bp))) rc = fail(s);
    if (!rc) rc = print_summary(r, &x, t0);
    outcome_free(&x);
    evb_unlock_dir(lock);
    return rc;
}
