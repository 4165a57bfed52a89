/* search.c -- `evobudget search`: from a model, a target and calibration text to per-unit levels.
 *
 * The library builds the problem (problems/: the levels the database lacks, units, costs, the budget) and
 * runs the method (search/, or an allocation rule); this file reads the flags, loads the model and the
 * calibration windows, keeps the run directory, and prints. With no model and no target it does the main
 * job on the embedded demo model: the front over a range of sparsities, against uniform, on held-out text. */
#define _POSIX_C_SOURCE 200809L
#include "cli/search.h"
#include "core/fileio.h"
#include "plots/plot.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef EVB_MPI
#include <mpi.h>
#endif

/* The main job's targets: the demo model's front from light to heavy pruning. */
static const double demo_targets[] = {0.3, 0.4, 0.5, 0.6, 0.7};

static int help(void) {
    printf("usage: evobudget search [--model PATH] [--calib TEXTFILE] [--method NAME]\n"
           "                        [--target-sparsity X | --target-bits X | --target-drop X | --target-bytes X] [--out RUNDIR] [options]\n"
           "  Finds one level per unit (linear layer, or sub-block for --target-drop) within the target's budget,\n"
           "  scored by KL(dense || compressed) per token on calibration text. With no --model and no target: the\n"
           "  demo model's front over sparsities 0.3..0.7 against uniform pruning, on held-out demo text.\n"
           "  --method NAME          evopress (default), nsga2 (the front of size against KL), uniform, random (best of\n"
           "                         --initial N random, default 32), owl, ecoflap (sparsity), shortgpt (depth)\n"
           "  --target-sparsity X    fraction of the linear layers' weights removed, levels in EvoPress's equal steps\n"
           "                         (--num-levels K each side, default 8); a list X,Y,... is an EvoPress sweep\n"
           "  --target-bits X        average bits per weight, levels 2..6 bits (--group-size N, default 64; --sym)\n"
           "  --target-drop X        fraction of attention and of MLP sub-blocks dropped\n"
           "  --target-bytes X       storage of the linear layers in bytes (suffix k, M, G) or bits per weight (suffix\n"
           "                         bpw): each layer the zero matrix, sparsegpt at 50..90%%, gptq at 2..6 bits or dense\n"
           "  --target-speedup X     the forward X times faster than the dense one on this machine and "
           "compute path:\n"
           "                         each attention keeps 0..G key/value groups, each MLP k/--struct-steps "
           "of its channels\n"
           "                         (default 8), every level's time measured (median of --timing-repeats, "
           "default 5;\n"
           "                         cached as DB/timings.json); budget [0.98, 1] of the dense time / X\n"
           "  --target-latency S     the same for a forward of S seconds at the calibration shape (--batch x "
           "--seq-len)\n"
           "  --compressor NAME      sparsegpt (default for sparsity), wanda, magnitude; gptq (default for bits), rtn;\n"
           "                         flap (default for speed: FLAP's order and bias), obs (ZipLM's updated "
           "columns);\n"
           "                         gguf (GPTQ into GGUF block types), gguf-rtn (llama.cpp's rounding): --target-bits\n"
           "                         counts each type's storage (Q4_K 4.5, Q3_K 3.4375, ...); layers whose rows hold no\n"
           "                         type stay F16, outside the target; export --format gguf writes the result\n"
           "  --types LIST           GGUF types offered (default: Q2_K..Q6_K, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0); each layer\n"
           "                         gets those its rows hold (k-quants: multiples of 256 inputs, others of 32)\n"
           "  --calib TEXTFILE       calibration text (default: assets/demo/calib.txt); --calib-windows N (default 32)\n"
           "                         windows of --seq-len positions (default min(512, context)), sampled with seed 0\n"
           "  --heldout TEXTFILE     also score the best and the uniform allocation on this text (KL, perplexity)\n"
           "  --db DIR               the level database (default: one per model and calibration set under --cache,\n"
           "                         default $XDG_CACHE_HOME/evobudget or ~/.cache/evobudget; see `evobudget cache`)\n"
           "  --seed N               search seed (default 0)\n"
           "  --generations N|paper  default: a quarter of the paper's count for sparsity, a third for bits and bytes\n"
           "                         (the expected time is printed after the first generation); paper: EvoPress's\n"
           "  --offspring N, --stages S@T,...   override the method's defaults (EvoPress's per mode, stage tokens\n"
           "                         scaled to the calibration set); T = 0 means every calibration token\n"
           "  --fitness SPEC         kl (default), ppl, task:FILE.jsonl (multiple-choice items: evb_task.h), or a weighted\n"
           "                         sum such as kl+0.5*task:FILE; --teacher f32|f16|topk:K (default f16 up to 1 GiB,\n"
           "                         else topk:256)\n"
           "  --fitness-plugin lib.so [--fitness-arg S], --fitness-cmd \"CMD\"   with --model: a plug-in (ABI 2) or workers\n"
           "                         (protocol 2) that read the compressed model's log-probabilities of their sequences\n"
           );
    fputs("  --no-reuse, --no-memo  turn off the parent's hidden-state reuse and the fitness memo (for benchmarks)\n"
           "  --threads N            candidates scored in parallel (default: OMP_NUM_THREADS or all cores)\n"
           COMPUTE_HELP
           "  --out RUNDIR           manifest.json, log.jsonl, checkpoint.msgpack, front.csv, best.json\n"
           "                         (default: run-METHOD-KIND-TARGET in the current directory)\n"
           "  --surrogate K          surrogate-assisted (evopress, nsga2): each generation proposes K times the\n"
           "                         offspring it scores and scores half as an additive model of fitness,\n"
           "                         fitted on every candidate scored so far, ranks best, half at random\n"
           "                         (EvoPress then scores a quarter of its offspring and initial population\n"
           "                         unless --offspring, --initial say otherwise);\n"
           "                         log.jsonl gives its rank correlation\n"
           "  --prior DIR            the surrogate's prior: the sensitivity profile in DIR (evobudget sensitivity\n"
           "                         with the same target and levels); EvoPress starts from its\n"
           "                         additive optimum under the budget; its tokens count as the search's\n"
           "  --token-budget N       end the search before a generation that could take the tokens scored past N\n"
           "                         (best.json, front.csv and the checkpoint as at a normal end; \"stop\" says why);\n"
           "                         --resume with a larger budget continues it\n"
           "  --resume               continue the run in RUNDIR from its checkpoint (with the same parameters)\n"
           "  --force                overwrite the run in RUNDIR\n"
           "  --problem FILE         no model: units, levels, costs and the budget from a JSON file (docs/problem-files.md),\n"
           "                         scored by the levels' \"fitness\" values summed, by --fitness-plugin lib.so\n"
           "                         (include/evobudget/evb_plugin.h), or by --fitness-cmd \"CMD\": workers started with\n"
           "                         /bin/sh -c CMD (docs/worker-protocol.md; --workers N, --worker-timeout S,\n"
           "                         --worker-retries R)\n"
           "  --json                 one JSON object on stdout: the best configuration's cost, fitness and paths\n", stdout);
    return 0;
}

/* ---- flags ---- */

static int parse_bytes(run *r, const char *ts) {
    char *end;
    double v = strtod(ts, &end);
    double mult = !strcmp(end, "") ? 1 : !strcmp(end, "k") ? 1e3 : !strcmp(end, "M") ? 1e6 : !strcmp(end, "G") ? 1e9 : -1;
    if (!strcmp(end, "bpw")) { r->bpw = v; mult = 1; }
    if (end == ts || mult < 0 || !(v > 0)) return usage_error("--target-bytes '%s' must be a positive number of bytes (suffix k, M or G) or of bits per linear weight (suffix bpw, e.g. 3.5bpw)", ts);
    if (r->bpw && !(r->bpw < 16)) return usage_error("--target-bytes %s: the dense weights hold 16 bits each; give fewer", ts);
    r->targets[0] = v * mult;
    r->n_targets = 1;
    if (r->o->compressor) return usage_error("--target-bytes uses sparsegpt and gptq levels together; --compressor does not apply");
    return 0;
}

static int parse_targets(run *r) {
    const opts *o = r->o;
    const char *ts = o->target_sparsity ? o->target_sparsity : o->target_bits ? o->target_bits
                   : o->target_drop ? o->target_drop : o->target_speedup ? o->target_speedup
                   : o->target_latency ? o->target_latency : o->target_bytes;
    const char *tflag = o->target_sparsity ? "--target-sparsity" : o->target_bits ? "--target-bits"
                      : o->target_drop ? "--target-drop" : o->target_speedup ? "--target-speedup"
                      : o->target_latency ? "--target-latency" : "--target-bytes";
    r->kind = o->target_sparsity ? EVB_TARGET_SPARSITY : o->target_bits ? EVB_TARGET_BITS
            : o->target_drop ? EVB_TARGET_DROP : o->target_speedup ? EVB_TARGET_SPEEDUP
            : o->target_latency ? EVB_TARGET_LATENCY : EVB_TARGET_BYTES;
    int rc = r->kind == EVB_TARGET_BYTES ? parse_bytes(r, ts) : parse_list(tflag, ts, r->targets, 16, &r->n_targets);
    int gguf = o->compressor && !strncmp(o->compressor, "gguf", 4); /* GGUF types: 2.625 (Q2_K) to 8.5 (Q8_0) */
    for (int i = 0; !rc && i < r->n_targets; i++) {
        double t = r->targets[i];
        if ((r->kind == EVB_TARGET_SPARSITY || r->kind == EVB_TARGET_DROP) && !(t > 0 && t < 1)) rc = usage_error("%s %g must lie in (0, 1)", tflag, t);
        else if (r->kind == EVB_TARGET_BITS && gguf && !(t > 0 && t < 16)) rc = usage_error("--target-bits %g must lie in (0, 16)", t);
        else if (r->kind == EVB_TARGET_BITS && !gguf && !(t >= 2 && t <= 6)) rc = usage_error("--target-bits %g must lie in [2, 6], the bits the levels hold", t);
        else if (r->kind == EVB_TARGET_SPEEDUP && !(t > 1 && t < 1000))
            rc = usage_error("--target-speedup %g must lie in (1, 1000)", t);
        else if (r->kind == EVB_TARGET_LATENCY && !(t > 0))
            rc = usage_error("--target-latency %g must be positive (seconds)", t);
        else if (i && t == r->targets[i - 1]) rc = usage_error("%s lists %g twice", tflag, t);
    }
    if (!rc && !r->o->out) {
        static char default_out[256];   /* the run directory defaults to run-<method>-<target kind>-<target> here */
        snprintf(default_out, sizeof default_out, "run-%s-%s-%s", r->method, evb_target_kind_name(r->kind), ts);
        r->o->out = default_out;
    }
    return rc;
}

/* Which methods go with which targets (problems/methods.c), and sweeps. */
static int check_method(const run *r) {
    if (r->n_targets > 1 && strcmp(r->method, "evopress")) return usage_error("a list of targets is an EvoPress sweep; give --method evopress or one target");
    if (r->n_targets > 1 && g_mpi_size > 1) return usage_error("an EvoPress sweep runs one target per mpirun; give one target");
    /* GGUF types have fractional widths (Q4_K 4.5): uniform is every layer at the type of the target's width */
    int gguf = r->o->compressor && !strncmp(r->o->compressor, "gguf", 4);
    return evb_mp_method_check(r->method, r->kind, gguf ? round(r->targets[0]) : r->targets[0]) ? refuse_status("--") : 0;
}

static int parse_stages(const char *s, evb_search_params *p) {
    p->n_stages = 0;
    const char *q = s;
    while (*q) {
        int surv, used;
        long tok;
        if (p->n_stages == EVB_MAX_STAGES || sscanf(q, "%d@%ld%n", &surv, &tok, &used) != 2 || surv < 1 || tok < 0)
            return usage_error("--stages '%s' must be SURVIVORS@TOKENS,... (at most %d stages, 0 tokens = all)", s, EVB_MAX_STAGES);
        p->n_survivors[p->n_stages] = surv;
        p->n_tokens[p->n_stages++] = (size_t)tok;
        q += used;
        if (*q == ',') q++;
        else if (*q) return usage_error("--stages '%s' must be SURVIVORS@TOKENS,...", s);
    }
    return p->n_stages ? 0 : usage_error("--stages is empty");
}

/* The compressor, the fitness metric and the teacher's kind from their flags. */
static int parse_fitness(run *r) {
    const opts *o = r->o;
    if (r->kind == EVB_TARGET_SPARSITY || r->kind == EVB_TARGET_BITS) {
        const char *cn = o->compressor ? o->compressor : r->kind == EVB_TARGET_SPARSITY ? "sparsegpt" : "gptq";
        r->comp = evb_method_find(cn);
        if (!r->comp) return usage_error("--compressor '%s' is unknown (%s)", cn, evb_method_names());
        if ((r->comp->kind == EVB_LEVEL_SPARSE) != (r->kind == EVB_TARGET_SPARSITY))
            return usage_error("--compressor %s does not make %s levels", cn, r->kind == EVB_TARGET_SPARSITY ? "sparse" : "quantized");
        if (o->types && r->comp->kind != EVB_LEVEL_GGUF) return usage_error("--types goes with --compressor gguf or gguf-rtn");
        if (o->types && parse_gguf_types(o->types, r->types, 16, &r->n_types)) return 2;
    } else if (r->kind == EVB_TARGET_SPEEDUP || r->kind == EVB_TARGET_LATENCY) {
        const char *cn = o->compressor ? o->compressor : "flap";
        r->comp = evb_method_find(cn);
        if (!r->comp || r->comp->kind != EVB_LEVEL_STRUCT)
            return usage_error("--compressor '%s' does not make structured levels (flap, obs)", cn);
    } else if (o->compressor && r->kind == EVB_TARGET_DROP) return usage_error("--compressor does not apply to --target-drop");
    int rc = parse_fitness_spec(r);
    if (rc) return rc;
    r->tkind = -1;
    if (!o->teacher) return 0;
    if (!strcmp(o->teacher, "f32")) r->tkind = EVB_TEACHER_F32;
    else if (!strcmp(o->teacher, "f16")) r->tkind = EVB_TEACHER_F16;
    else if (sscanf(o->teacher, "topk:%d", &r->topk) == 1 && r->topk > 0) r->tkind = EVB_TEACHER_TOPK;
    else return usage_error("--teacher '%s' must be f32, f16 or topk:K", o->teacher);
    return 0;
}

/* ---- inputs ---- */

/* The calibration windows (sampled with seed 0) and the held-out ones (consecutive): from --calib and
 * --heldout, or for the main job from the demo text, its last tenth held out. */
static int load_windows(run *r, int seq_len) {
    const opts *o = r->o;
    char buf[1024];
    const char *calib = o->calib ? o->calib : default_asset("calib.txt", buf, sizeof buf);
    int32_t *tok = NULL, *htok = NULL;
    size_t n = 0, hn = 0;
    int bos = evb_tokenizer_bos(r->l.t), s = evb_text_tokenize_file(r->l.t, calib, (size_t)o->piece_bytes, &tok, &n);
    if (!s && r->demo) { hn = n / 10; n -= hn; htok = tok + n; }
    else if (!s && o->heldout) s = evb_text_tokenize_file(r->l.t, o->heldout, (size_t)o->piece_bytes, &htok, &hn);
    if (!s) s = evb_windows_sample(tok, n, seq_len, bos, (int)o->calib_windows, 0, &r->w);
    if (!s && htok) s = evb_windows_consecutive(htok, hn, seq_len, bos, 0, &r->hw);
    if (htok != tok + n) free(htok);
    free(tok);
    for (int i = 0; !s && i < r->w.n; i++) r->calib_tokens += (size_t)r->w.len[i] - 1;
    return s;
}

static void default_db(run *r) {
    if (r->o->db) { snprintf(r->dbdir, sizeof r->dbdir, "%s", r->o->db); return; }
    cache_dir(r->o, r->cache_base, sizeof r->cache_base);   /* the directory `evobudget cache` lists */
    snprintf(r->dbdir, sizeof r->dbdir, "%s/%s-%s", r->cache_base, r->mfp, r->cfp);
}

/* After levels were added to the cache: what it now holds, and how to see and clear it. */
static void say_cache(const run *r) {
    evb_db_dir *d = NULL;
    if (!r->db || !r->cache_base[0] || evb_db_count(r->db) <= r->db_entries0 || evb_db_dir_scan(r->cache_base, &d)) return;
    fprintf(stderr, "%s: the level cache %s now holds %.1f MB in %d database%s (evobudget cache list; evobudget cache clear --yes)\n",
            cmd_name, r->cache_base, d->bytes / 1e6, d->n, d->n == 1 ? "" : "s");
    evb_db_dir_free(d);
}

/* The level cache's bound: the parent's levels of every unit and a quarter more for the offspring's, in the
 * compute path's format, and at least 1 GiB (a small model's whole database). */
static size_t level_cache_bytes(const evb_model *m) {
    size_t elem = m->compute == EVB_COMPUTE_BF16 ? sizeof(uint16_t) : sizeof(float);
    size_t bytes = evb_model_n_params(m) * elem / 4 * 5, floor = (size_t)1 << 30;
    return bytes > floor ? bytes : floor;
}

/* The level database and the level cache: rank 0 creates the database; other ranks open it once rank 0 has
 * built what is missing. */
static int open_db(run *r, int create) {
    evb_model *m = r->l.m;
    int s = 0;
    if (r->kind == EVB_TARGET_DROP) return 0;
    if (create && mkdirs(r->dbdir)) return fail(evb_errorf(__FILE__, __LINE__, EVB_EIO, "database %s: %s", r->dbdir, strerror(errno)));
    if ((s = evb_db_open(r->dbdir, r->mfp, r->cfp, create, &r->db)) || (s = evb_db_check_model(r->db, m))) return fail(s);
    r->db_entries0 = evb_db_count(r->db);
    if ((s = evb_level_cache_alloc_as(r->db, level_cache_bytes(m), m->compute == EVB_COMPUTE_BF16, &r->cache))) return fail(s);
    r->env.db = r->db;
    return 0;
}

/* The dense model's outputs on the calibration windows (and on the held-out ones). */
static int build_teachers(run *r) {
    evb_model *m = r->l.m;
    int s = 0, batch = (int)r->o->batch;
    /* the full-vocabulary teacher while it stays within 1 GiB, else the top 256 log-probabilities */
    if (r->tkind < 0) r->tkind = r->calib_tokens * (size_t)m->config.vocab_size * 2 <= ((size_t)1 << 30) ? EVB_TEACHER_F16 : EVB_TEACHER_TOPK, r->topk = 256;
    if (r->metric == EVB_METRIC_KL && (s = evb_teacher_build(m, &r->w, batch, r->tkind, r->topk, &r->teacher))) return fail(s);
    if (r->hw.n && (s = evb_teacher_build(m, &r->hw, batch, EVB_TEACHER_F32, 0, &r->hteacher))) return fail(s);
    r->env = (evb_mp_env){m, &r->w, r->db, NULL, batch, say, NULL, NULL, NULL, 0};
    return 0;
}

static int load_inputs(run *r) {
    opts *o = r->o;
    int rc = load_model(o, 1, &r->l), s;
    if (rc) return rc;
    evb_model *m = r->l.m;
    note_gguf_rounding(m, r->comp);
    int seq_len = o->seq_len ? (int)o->seq_len : (m->config.max_seq_len < 512 ? m->config.max_seq_len : 512);
    if (seq_len > m->config.max_seq_len) return usage_error("--seq-len %d exceeds the model's context of %d", seq_len, m->config.max_seq_len);
    if ((s = load_windows(r, seq_len))) return fail(s);
    o->batch = logits_batch((int)o->batch, seq_len, m, 1); /* per thread's forward state */
    evb_fingerprint_model(m, r->mfp);
    calib_fingerprint(m, &r->w, r->cfp);
    default_db(r);
    if (g_mpi_rank == 0 && (rc = open_db(r, 1))) return rc;
    if ((rc = build_teachers(r))) return rc;
    return setup_model_fitness(r);
}

/* ---- one target ---- */

static int build_problem(run *r, double target) {
    evb_mp_free(r->mp);
    r->mp = NULL;
    if (r->kind == EVB_TARGET_BYTES && r->bpw) {
        double n_lin = 0;
        for (int u = 0; u < evb_model_n_units(r->l.m); u++) { int rows, cols; evb_model_unit_shape(r->l.m, u, &rows, &cols); n_lin += (double)rows * cols; }
        target = r->bpw * n_lin / 8;
    }
    evb_mp_params p = evb_mp_default_params(r->kind, target);
    p.compressor = r->comp;
    p.num_levels = (int)r->o->num_levels;
    p.group_size = (int)r->o->group_size;
    p.sym = r->o->sym;
    p.gguf_types = r->n_types ? r->types : NULL;
    p.n_gguf_types = r->n_types;
    char timings[1400];
    snprintf(timings, sizeof timings, "%s/timings.json", r->dbdir);   /* the cost table,
            cached beside the levels */
    p.timings = timings;
    p.struct_steps = (int)r->o->struct_steps;
    p.timing_repeats = (int)r->o->timing_repeats;
    progress pg = {now_s(), "db build", isatty(2), 0, "levels"};
    r->env.progress = progress_cb;
    r->env.ctx = &pg;
    int s = evb_mp_build(&r->env, &p, &r->mp);
    r->env.progress = NULL;
    r->env.ctx = NULL;
    if (s) return s == EVB_EINVAL || s == EVB_EBUDGET ? refuse_status("") : fail(s);
    int U = r->mp->problem.n_units;
    free(r->uniform);
    r->uniform = malloc(sizeof(int16_t) * U);
    if (!r->uniform) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    memcpy(r->uniform, r->mp->problem.start, sizeof(int16_t) * U);
    r->kp = (evb_kl_params){r->l.m, &r->w, r->teacher, r->cache, U, r->mp->units, r->metric, (int)r->o->batch,
                            r->o->no_reuse ? 0 : r->o->reuse_mb ? (size_t)r->o->reuse_mb << 20 : (size_t)256 << 20};
    return attach_model_fitness(r);
}

/* KL and perplexity on the held-out windows of the best and of the uniform allocation. */
static int score_heldout(const run *r, outcome *x) {
    if (!r->hw.n || !x->searched) return 0;
    int U = r->mp->problem.n_units, s = 0;
    int16_t *lv = malloc(sizeof(int16_t) * U);
    if (!lv) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    s = evb_mp_levels(r->mp, x->best, lv);
    evb_kl_params kp = r->kp;
    kp.w = &r->hw; kp.teacher = r->hteacher; kp.reuse_bytes = 0;
    for (int k = 0; !s && k < 2; k++) {
        const int16_t *c = k ? r->uniform : lv;
        double nll = 0;
        kp.metric = EVB_METRIC_KL;
        s = evb_mp_score(&kp, c, U, &x->held[2 * k]);
        kp.metric = EVB_METRIC_PPL;
        if (!s) s = evb_mp_score(&kp, c, U, &nll);
        x->held[2 * k + 1] = exp(nll);
    }
    free(lv);
    return s ? fail(s) : 0;
}

static int open_log(run *r) {
    char lp[1400];
    snprintf(lp, sizeof lp, "%s/log.jsonl", r->out);
    r->log = fopen(lp, r->o->resume ? "a" : "w");
    return r->log ? 0 : fail(evb_errorf(__FILE__, __LINE__, EVB_EIO, "%s: %s", lp, strerror(errno)));
}

/* Runs the method on the built problem into r->out and writes best.json and front.csv. */
static int run_target(run *r, outcome *x) {
    evb_search_params sp;
    int rc = search_params(r, &sp), s;
    int is_search = !evb_mp_is_rule(r->method);
    if (!rc && is_search) rc = prior_start(r);
    json_t *man = rc ? NULL : manifest(r, is_search ? &sp : NULL);
    if (!rc) rc = rundir_manifest(r->out, man, r->o->resume);
    json_decref(man);
    if (!rc) rc = open_log(r);
    if (!rc) rc = run_method(r, &sp, x);
    if (r->log) fclose(r->log);
    r->log = NULL;
    if (!rc) rc = score_heldout(r, x);
    if (rc) return rc;
    snprintf(x->best->method, sizeof x->best->method, "%s", r->method);
    snprintf(x->best->db, sizeof x->best->db, "%s", r->kind == EVB_TARGET_DROP ? "" : r->dbdir);
    char bp[1400];
    snprintf(bp, sizeof bp, "%s/best.json", r->out);
    rc = write_front(r, x);
    if (!rc && (s = evb_allocation_write(x->best, bp))) rc = fail(s);
    return rc;
}

/* ---- a sweep (and the main job) ---- */

static json_t *sweep_row(const run *r, const outcome *x) {
    char bp[1400];
    snprintf(bp, sizeof bp, "%s/best.json", r->out);
    json_t *row = json_pack("{s:f, s:s, s:f, s:f}", "target", r->mp->target, "best", bp, "cost", x->best->cost, "fitness_all", x->best->fitness_all);
    static const char *const keys[] = {"heldout_kl", "heldout_ppl", "uniform_kl", "uniform_ppl"};
    for (int k = 0; k < 4; k++) if (!isnan(x->held[k])) json_object_set_new(row, keys[k], json_real(x->held[k]));
    return row;
}

static double num(const json_t *row, const char *key) { json_t *v = json_object_get(row, key); return v ? json_number_value(v) : NAN; }

static int write_sweep(const run *r, json_t *sweep) {
    size_t n = json_array_size(sweep), i;
    char *buf = malloc(160 + n * 1800), *p = buf;
    if (!buf) return fail(EVB_RAISEF(EVB_ENOMEM, "out of memory"));
    p += sprintf(p, "id,target,cost,cost_fraction,fitness,best,heldout_kl,heldout_ppl,uniform_kl,uniform_ppl\n");
    json_t *x;
    json_array_foreach(sweep, i, x) {
        p += sprintf(p, "%zu,%.17g,%.17g,%.9g,%.17g,%s", i, num(x, "target"), num(x, "cost"), num(x, "cost") / r->mp->total_size,
                     num(x, "fitness_all"), json_string_value(json_object_get(x, "best")));
        static const char *const keys[] = {"heldout_kl", "heldout_ppl", "uniform_kl", "uniform_ppl"};
        for (int k = 0; k < 4; k++) p += isnan(num(x, keys[k])) ? sprintf(p, ",") : sprintf(p, ",%.9g", num(x, keys[k]));
        *p++ = '\n';
    }
    *p = 0;
    int rc = write_text(r->base, "front.csv", buf);
    free(buf);
    json_t *j = json_pack("{s:s, s:s, s:s, s:O}", "method", "evopress", "target_kind", evb_target_kind_name(r->kind), "kind", "sweep", "runs", sweep);
    if (!rc) rc = write_json(r->base, "sweep.json", j);
    json_decref(j);
    return rc;
}

/* The sweep's table on stdout: per target the KL on calibration text and, where held-out text was given, the
 * held-out KL and perplexity of the search's allocation and of uniform pruning at the same size. */
static int print_sweep(const run *r, json_t *sweep, double t0) {
    size_t i;
    json_t *x;
    if (r->o->json) return print_json(json_pack("{s:s, s:s, s:O, s:f}", "dir", r->base, "kind", "sweep", "runs", sweep, "seconds", now_s() - t0));
    int held = r->hw.n > 0;
    printf("%s: EvoPress over %zu %s targets in %.0f s\n", r->base, json_array_size(sweep), evb_target_kind_name(r->kind), now_s() - t0);
    printf("  target   KL calib%s\n", held ? "   KL held-out  uniform   ppl held-out  uniform" : "");
    json_array_foreach(sweep, i, x) {
        printf("  %6g  %9.4f", num(x, "target"), num(x, "fitness_all"));
        if (held) printf("   %11.4f %8.4f   %12.2f %8.2f", num(x, "heldout_kl"), num(x, "uniform_kl"), num(x, "heldout_ppl"), num(x, "uniform_ppl"));
        printf("\n");
    }
    if (held) printf("  held-out: %d windows of %d tokens %s\n", r->hw.n, r->hw.seq_len, r->demo ? "(the last tenth of the demo text, not used for calibration)" : r->o->heldout);
    printf("  %s/front.csv, %s/sweep.json; per target %s/%s-T/best.json\n", r->base, r->base, r->base, evb_target_kind_name(r->kind));
    return 0;
}

/* A finished target of a resumed sweep (*done set): its best is the next one's start. An exit code. */
static int resumed_target(run *r, json_t *sweep, double *prev, int *have_prev, int *done) {
    char bp[1400];
    snprintf(bp, sizeof bp, "%s/best.json", r->out);
    *done = r->o->resume && access(bp, F_OK) == 0;
    if (!*done) return 0;
    evb_allocation *b = NULL;
    int16_t *lv = calloc(r->mp->problem.n_units, sizeof(int16_t));
    int s = lv ? evb_allocation_read(bp, &b) : EVB_ENOMEM;
    if (!s) s = evb_mp_levels(r->mp, b, lv);
    if (s) { evb_allocation_free(b); free(lv); return usage_error("--resume: %s is not a best.json of this sweep", bp); }
    evb_mp_unit_values(r->mp, lv, prev);
    *have_prev = 1;
    outcome x = {0};
    x.best = b;
    for (int k = 0; k < 4; k++) x.held[k] = NAN;
    json_array_append_new(sweep, sweep_row(r, &x));
    evb_allocation_free(b);
    free(lv);
    return 0;
}

static int run_targets(run *r, double t0) {
    json_t *sweep = json_array();
    double *prev = NULL;
    int rc = 0, have_prev = 0, sweep_mode = r->n_targets > 1;
    for (int ti = 0; ti < r->n_targets && !rc; ti++) {
        if (sweep_mode) {
            snprintf(r->out, sizeof r->out, "%s/%s-%g", r->base, evb_target_kind_name(r->kind), r->targets[ti]);
            if (mkdirs(r->out)) { rc = fail(evb_errorf(__FILE__, __LINE__, EVB_EIO, "--out %s: %s", r->out, strerror(errno))); break; }
        }
        rc = build_problem(r, r->targets[ti]);
#ifdef EVB_MPI
        if (g_mpi_size > 1) MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
#endif
        if (rc) break;
        if (r->profile) { rc = run_profile(r, t0); continue; }
        if (!prev && !(prev = malloc(sizeof(double) * r->mp->problem.n_units))) { rc = fail(EVB_RAISEF(EVB_ENOMEM, "out of memory")); break; }
        int done = 0;
        if (sweep_mode && ((rc = resumed_target(r, sweep, prev, &have_prev, &done)) || done)) continue;
        if (have_prev) fprintf(stderr, "%s: %s %g starts from %s\n", cmd_name, evb_target_kind_name(r->kind), r->mp->target,
                               evb_mp_warm_start(r->mp, prev) ? "the previous target's best" : "the uniform allocation (the previous best does not map onto its budget)");
        outcome x = {0};
        rc = run_target(r, &x);
        if (!rc && sweep_mode) {
            int16_t *lv = malloc(sizeof(int16_t) * r->mp->problem.n_units);
            if (lv && !evb_mp_levels(r->mp, x.best, lv)) { evb_mp_unit_values(r->mp, lv, prev); have_prev = 1; }
            free(lv);
            json_array_append_new(sweep, sweep_row(r, &x));
            fprintf(stderr, "%s: sweep %d/%d: %s %g done, KL on all calibration tokens %.6g\n", cmd_name, ti + 1, r->n_targets,
                    evb_target_kind_name(r->kind), r->mp->target, x.best->fitness_all);
        } else if (!rc) rc = print_summary(r, &x, t0);
        outcome_free(&x);
    }
    if (!rc && sweep_mode) rc = write_sweep(r, sweep);
    if (!rc && sweep_mode) rc = print_sweep(r, sweep, t0);
    json_decref(sweep);
    free(prev);
    return rc;
}

#ifdef EVB_MPI
/* Ranks > 0: the same problem as rank 0 once it has built its levels, then serve. */
static int mpi_rank_serve(run *r) {
    int rc = 0;
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rc) return rc;
    if ((rc = open_db(r, 0)) || (rc = build_problem(r, r->targets[0]))) return rc;
    evb_search_params sp;
    return search_params(r, &sp) ? 2 : mpi_worker(r, &sp);
}
#endif

/* ---- the command ---- */

/* How many --target-* flags o gives. */
static int n_targets(const opts *o) {
    return !!o->target_sparsity + !!o->target_bits + !!o->target_drop + !!o->target_bytes + !!o->target_speedup +
           !!o->target_latency;
}

static int check_flags(run *r, int n_t) {
    if (!evb_mp_method_find(r->method)) return usage_error("--method '%s' is unknown (%s)", r->method, evb_mp_method_names());
#ifdef EVB_MPI
    if (g_mpi_size > 1 && r->o->problem) return usage_error("--problem runs in one process (its fitness is cheap); run it without mpirun");
    if (g_mpi_size > 1 && evb_mp_is_rule(r->method)) return usage_error("--method %s is an allocation rule, not a search; run it without mpirun", r->method);
#endif
    if ((r->o->surrogate || r->o->prior) && strcmp(r->method, "evopress") && strcmp(r->method, "nsga2"))
        return usage_error("--surrogate and --prior are for --method evopress and nsga2, not %s", r->method);
    if (r->o->prior && !r->o->surrogate) return usage_error("--prior is the surrogate's: give --surrogate K too");
    if (r->o->token_budget && evb_mp_is_rule(r->method))
        return usage_error("--token-budget ends a search; --method %s is an allocation rule, which scores a fixed set of candidates", r->method);
    if (r->o->fitness_plugin && r->o->fitness_cmd) return usage_error("give one of --fitness-plugin and --fitness-cmd");
    if (r->o->fitness_arg && !r->o->fitness_plugin) return usage_error("--fitness-arg goes with --fitness-plugin (it is what the plug-in's create_model receives)");
    if (!r->o->problem && !r->o->model && (r->o->fitness_plugin || r->o->fitness_cmd)) return usage_error("--fitness-plugin and --fitness-cmd need --model (or --problem FILE)");
    if (n_t > 1) return usage_error("give one of --target-sparsity X, --target-bits X, --target-drop X, --target-bytes X, "
                                    "--target-speedup X, --target-latency S (or --problem FILE)");
    if (n_t == 0 && r->o->model) return usage_error("give a target: --target-sparsity X, --target-bits X, --target-drop X, "
                                                    "--target-bytes X, --target-speedup X or "
                                                    "--target-latency S (or --problem FILE)");
    int speed = r->o->target_speedup || r->o->target_latency;
    if (!speed && (r->o->struct_steps || r->o->timing_repeats))
        return usage_error("--struct-steps and --timing-repeats go with --target-speedup or --target-latency");
    if (r->o->stages && parse_stages(r->o->stages, &r->stages)) return 2;
    return 0;
}

/* The main job: no model and no target. */
static void demo_defaults(run *r) {
    static char targets[64];
    snprintf(targets, sizeof targets, "%g,%g,%g,%g,%g", demo_targets[0], demo_targets[1], demo_targets[2], demo_targets[3], demo_targets[4]);
    r->demo = 1;
    r->o->target_sparsity = targets;
    if (!r->o->out) r->o->out = "evobudget-demo";
    if (!r->o->generations) r->o->generations = "12";
    if (!r->o->offspring) r->o->offspring = 16;
}

/* The main job's pictures, in one line: the front, and where each target's are. */
static void demo_pictures(const run *r) {
    evb_plot_request req = {r->base, NULL};
    evb_plot_result res = {0};
    if (evb_plot_run(&req, &res)) printf("pictures: none (%s)\n", evb_last_error());
    else printf("pictures: %s/front.png (the front, against uniform on held-out text); each target's front, profile and "
                "convergence in %s/%s-T/ (%d files, PNG and SVG)\n", r->base, r->base, evb_target_kind_name(r->kind), res.n_pictures);
    evb_plot_result_destroy(&res);
}

static int search_main(run *r, int n_t) {
    opts *o = r->o;
    double t0 = now_s();
    int rc, lock = -1;
    if (!n_t && !o->problem) demo_defaults(r);
    if ((rc = parse_targets(r)) || (rc = check_method(r)) || (rc = parse_fitness(r))) return rc;
    if (r->profile && r->n_targets > 1) return usage_error("sensitivity: one target value, not a list");
    snprintf(r->base, sizeof r->base, "%.900s", o->out);
    snprintf(r->out, sizeof r->out, "%s", o->out);
    run_flags rf = {o->resume, o->force};
    if (g_mpi_rank == 0) {  /* the run directory is rank 0's */
        const char *done = r->profile ? "sensitivity.json" : r->n_targets > 1 ? "sweep.json" : "best.json";
        if ((rc = rundir_open(r->base, &rf, done, r->n_targets > 1 || r->profile ? "." : "checkpoint.msgpack", &lock))) return rc;
    }
    if (r->demo && g_mpi_rank == 0)
        fprintf(stderr, "%s: the demo model's front: EvoPress at sparsity %s against uniform pruning, %s generations each"
                        " (--generations paper for the paper's 400)\n", cmd_name, o->target_sparsity, o->generations);
    set_threads(o);
    /* the inputs (model, text, task, plug-in, workers' registration) before --force clears the directory: bad
     * input leaves the run there as it was */
    rc = load_inputs(r);
    if (!rc && g_mpi_rank == 0) rundir_start_over(r->base, &rf);
#ifdef EVB_MPI
    if (g_mpi_size > 1 && g_mpi_rank > 0) rc = rc ? rc : mpi_rank_serve(r);
    else
#endif
    if (!rc) rc = run_targets(r, t0);
    if (!rc) say_cache(r);
    if (!rc && r->demo && !o->json) demo_pictures(r);
    evb_unlock_dir(lock);
    return rc;
}

static int sensitivity_help(void) {
    printf("usage: evobudget sensitivity [--model PATH] [--calib TEXTFILE]\n"
           "                             --target-sparsity X | --target-bits X | --target-drop X | --target-bytes X --out DIR [options]\n"
           "  The sensitivity profile of the target's levels (the levels `search` would choose from, from the same\n"
           "  level database): for every unit and level, the KL (or --fitness ppl: log perplexity) of the model with\n"
           "  that unit alone at that level and every other unit dense, each forward started at the unit's block.\n"
           "  Writes DIR/sensitivity.csv (unit, name, block, kind, level, level_name, value, cost, kl) and\n"
           "  DIR/sensitivity.json; `evobudget plot DIR` draws the heat map. Prints the tokens and seconds it cost.\n"
           "  --max-tokens N          score N calibration positions (a fixed sample of the windows; default all)\n"
           "  --model, --calib, --calib-windows, --seq-len, --compressor, --types, --num-levels, --group-size, --sym,\n"
           "  --db, --cache, --teacher, --batch, --threads, --reuse-mb, --compute, --force, --json: as for search.\n");
    return 0;
}

int cmd_sensitivity(int argc, char **argv) {
    opts o = {0};
    o.batch = 8; o.piece_bytes = 4000; o.calib_windows = 32; o.num_levels = 8;
    int rc = parse_opts(argc, argv, "--model --tokenizer --calib --target-sparsity --target-bits --target-drop --target-bytes "
                        "--target-speedup --target-latency --struct-steps --timing-repeats --out "
                        "--compressor --types --num-levels --group-size --sym --db --cache --calib-windows --seq-len --batch --threads "
                        "--fitness --teacher --reuse-mb --no-reuse --max-tokens --force --json --compute", &o);
    if (rc || o.help) return o.help && !rc ? sensitivity_help() : rc;
    int n_t = n_targets(&o);
    if (n_t != 1) return usage_error("give one target: --target-sparsity X, --target-bits X, --target-drop X, --target-bytes X, "
                                     "--target-speedup X or --target-latency S");
    if (!o.out) return usage_error("--out DIR is needed: where sensitivity.csv and sensitivity.json go");
    if (o.fitness && strcmp(o.fitness, "kl") && strcmp(o.fitness, "ppl"))
        return usage_error("--fitness '%s': the profile is of kl or ppl", o.fitness);
    run r = {0};
    r.o = &o;
    r.method = "evopress";
    r.profile = 1;
    rc = search_main(&r, n_t);
    run_free(&r);
    return rc;
}

int cmd_search(int argc, char **argv) {
    opts o = {0};
    o.batch = 8; o.piece_bytes = 4000; o.calib_windows = 32; o.num_levels = 8;
    int rc = parse_opts(argc, argv, "--model --tokenizer --calib --heldout --method --target-sparsity --target-bits --target-drop --target-bytes "
                        "--target-speedup --target-latency --struct-steps --timing-repeats --out "
                        "--seed --compressor --types --generations --offspring --stages --initial --token-budget --surrogate --prior --num-levels --group-size --sym --db --cache "
                        "--calib-windows --seq-len --batch --threads --fitness --teacher --reuse-mb --no-reuse --no-memo --resume --force --json "
                        "--problem --fitness-plugin --fitness-arg --fitness-cmd --workers --worker-timeout --worker-retries --compute", &o);
    if (rc || o.help) return o.help && !rc ? help() : rc;
    run r = {0};
    r.o = &o;
    r.method = o.method ? o.method : "evopress";
    int n_t = n_targets(&o);
#ifdef EVB_MPI
    MPI_Comm_rank(MPI_COMM_WORLD, &g_mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_mpi_size);
    if (g_mpi_rank > 0) { /* the workers' messages say which rank they come from */
        static char nm[64];
        snprintf(nm, sizeof nm, "evobudget search (rank %d)", g_mpi_rank);
        cmd_name = nm;
    }
#endif
    if (!(rc = check_flags(&r, n_t))) {
        if (o.problem) {
            if (!o.out) { static char d[256]; snprintf(d, sizeof d, "run-%s-problem", r.method); o.out = d; }
            rc = search_problem(&r);
        } else rc = search_main(&r, n_t);
    }
    run_free(&r);
    return rc;
}
