/* fuzz_checkpoint.c -- checkpoint.msgpack reading (evb_search_load_mem_, the in-memory body of
 * evb_search_load) against a small fixed problem: 6 units of 4 to 6 levels, a budget window of +-3.
 *
 * The first byte chooses: bit 0 the search type (EvoPress, NSGA-II); bit 1 whether the rest is the whole
 * file (header, checksum and payload: the framing is fuzzed) or only the payload, which the target wraps in
 * a header with a valid length and checksum (the field checks are fuzzed). A checkpoint that loads must
 * describe a state the search can continue: the target runs it to the end and checks the incumbent, the
 * front and the memo against the problem.
 *
 * Seeds: EVB_FUZZ_SEEDS=DIR build-fuzz/tests/fuzz/fuzz_checkpoint writes real checkpoints of both types at
 * several generations (in both modes) to DIR and exits. */
#include "search/search_impl.h"
#include "evobudget/evb_status.h"
#include "fuzz_common.h"

#include <math.h>
#include <xxhash.h>

enum { U = 6, GENS = 6 };
static int n_levels[U] = {4, 5, 6, 4, 5, 6};
static double cost_mem[U][6], *cost[U];
static int16_t start[U] = {2, 2, 3, 2, 2, 3};
static evb_problem prob;

static size_t ws_size(const void *p) { (void)p; return 8; }
static int eval(const void *params, void *w, const evb_genome *g, const evb_genome *ref, const evb_batch *b, double *f) {
    (void)params; (void)w; (void)ref;
    double v = 0;
    for (int u = 0; u < g->n_units; u++) v += (g->level[u] - 1.3 * (u % 3)) * (g->level[u] - 1.3 * (u % 3)) + 1e-3 * (double)(b->seed % 7);
    *f = v;
    return EVB_SUCCESS;
}
static const evb_fitness_type fit = {"fuzz", ws_size, NULL, NULL, eval};

static void setup(void) {
    if (prob.n_units) return;
    double budget = 0;
    for (int u = 0; u < U; u++) {
        cost[u] = cost_mem[u];
        for (int l = 0; l < n_levels[u]; l++) cost[u][l] = 10 + l;
        budget += cost[u][start[u]];
    }
    prob = (evb_problem){U, n_levels, (const double *const *)cost, NULL, budget, 3, start, NULL};
}

static evb_search *make(int nsga) {
    evb_search_params p = evb_search_default_params();
    p.seed = 1; p.generations = GENS; p.n_offspring = 6; p.max_mutations = 2; p.memo_max = 8;
    p.n_stages = nsga ? 1 : 2; p.n_survivors[0] = nsga ? 6 : 2; p.n_survivors[1] = 1;
    p.n_tokens[0] = 64; p.n_tokens[1] = 0; p.total_tokens = 256;
    evb_search *s = NULL;
    FUZZ_CHECK(evb_search_alloc(nsga ? evb_search_nsga2 : evb_search_evopress, &p, &prob, &s) == 0, "%s", evb_last_error());
    FUZZ_CHECK(evb_search_set(s, &fit, NULL, 1) == 0, "%s", evb_last_error());
    return s;
}

/* Header (28 bytes, as search/checkpoint.c writes it) + payload. */
static uint8_t *wrap(const uint8_t *payload, size_t n, size_t *out_n) {
    uint8_t *b = malloc(n + 28);
    if (!b) abort();
    memcpy(b, "EVBCKPT", 8);
    uint64_t v[3] = {2, n, XXH64(payload, n, 0)};
    for (int i = 0; i < 4; i++) b[8 + i] = (uint8_t)(v[0] >> (8 * i));
    for (int i = 0; i < 8; i++) { b[12 + i] = (uint8_t)(v[1] >> (8 * i)); b[20 + i] = (uint8_t)(v[2] >> (8 * i)); }
    if (n) memcpy(b + 28, payload, n);
    *out_n = n + 28;
    return b;
}

static void write_seeds(const char *dir) {
    char path[1024];
    for (int nsga = 0; nsga < 2; nsga++) {
        evb_search *s = make(nsga);
        for (int g = 0; g <= GENS; g++) {
            const char *ck = fuzz_write("seed.ck", (const uint8_t *)"", 0);
            FUZZ_CHECK(evb_search_save(s, ck) == 0, "%s", evb_last_error());
            FILE *f = fopen(ck, "rb");
            uint8_t *buf = malloc(1 << 20);
            size_t n = fread(buf + 1, 1, (1 << 20) - 1, f);
            fclose(f);
            uint8_t keep = buf[28];
            for (int mode = 0; mode < 2; mode++) { /* bit 1 set: the whole file; clear: the payload only */
                buf[28] = keep;
                buf[mode ? 0 : 28] = (uint8_t)(nsga | (mode ? 2 : 0));
                snprintf(path, sizeof path, "%s/%s-gen%d-%s", dir, nsga ? "nsga2" : "evopress", g, mode ? "file" : "payload");
                FILE *o = fopen(path, "wb");
                if (o) { fwrite(mode ? buf : buf + 28, 1, mode ? n + 1 : n - 27, o); fclose(o); }
            }
            free(buf);
            evb_search_iterate(s);
        }
        evb_search_free(s);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    setup();
    const char *seeds = getenv("EVB_FUZZ_SEEDS");
    if (seeds) { write_seeds(seeds); exit(0); }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int nsga = data[0] & 1, whole = data[0] & 2;
    size_t n = size - 1;
    uint8_t *own = NULL;
    const uint8_t *buf = data + 1;
    if (!whole) buf = own = wrap(data + 1, size - 1, &n);
    evb_search *s = make(nsga);
    evb_clear_error();
    int st = evb_search_load_mem_(s, "fuzz.ck", buf, n);
    FUZZ_CHECK(st == EVB_SUCCESS || st == EVB_EFORMAT, "status %d (%s)", st, evb_last_error());
    if (st == EVB_SUCCESS) {
        FUZZ_CHECK(s->memo_n <= 8, "a loaded memo of %zu entries, over its cap", s->memo_n);
        int it = EVB_CONTINUE, steps = 0;
        while (it == EVB_CONTINUE && steps++ <= GENS + 1) it = evb_search_iterate(s);
        FUZZ_CHECK(it == EVB_SUCCESS, "a loaded search does not finish: status %d after %d steps (%s)", it, steps, evb_last_error());
        int16_t lv[U];
        double f;
        evb_search_best(s, lv, &f);
        FUZZ_CHECK(evb_problem_feasible(&prob, lv), "the incumbent is infeasible after a load");
        evb_front_point pts[64];
        int16_t fl[64 * U];
        int m = evb_search_front(s, pts, fl, 64);
        for (int i = 0; i < m && i < 64; i++)
            FUZZ_CHECK(evb_problem_feasible(&prob, fl + (size_t)i * U) && isfinite(pts[i].fitness), "front point %d is infeasible or not finite", i);
    } else
        FUZZ_CHECK(evb_last_error()[0] != '\0', "refused without a message");
    evb_search_free(s);
    free(own);
    return 0;
}
