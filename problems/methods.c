/* methods.c -- the methods a problem can be solved with, in one table: the searches of search/ and the
 * allocation rules of rules.c, which targets each serves, and what each takes from the per-mode defaults. */
#include "problems/problems.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { SP = 1 << EVB_TARGET_SPARSITY, BI = 1 << EVB_TARGET_BITS, DR = 1 << EVB_TARGET_DROP, FI = 1 << EVB_TARGET_FILE,
       BY = 1 << EVB_TARGET_BYTES, SU = 1 << EVB_TARGET_SPEEDUP | 1 << EVB_TARGET_LATENCY,
       ALL = SP | BI | DR | FI | BY | SU };

static const evb_mp_method methods[] = {
    /* name       rule targets  front one_round  what it does, and what to use where it does not apply */
    {"evopress",  0, ALL,           0, 0, "EvoPress (1 + lambda) with level-switch mutations and multi-step selection", NULL},
    {"nsga2",     0, ALL,           1, 0, "NSGA-II: the front of size against fitness around the budget", NULL},
    {"uniform",   0, SP | BI | FI | SU, 0, 1, "the uniform allocation (the problem's start), scored",
                  "has no meaning for a drop target or a joint budget of bytes; use random or evopress"},
    {"random",    0, ALL,           0, 1, "the best of --initial N random feasible candidates", NULL},
    {"owl",       1, SP,            0, 1, "OWL's outlier-weighted per-block sparsity (the lambda x M grid)",
                  "allocates sparsity; give --target-sparsity (or use evopress, random, uniform)"},
    {"ecoflap",   1, SP,            0, 1, "ECoFLaP's zeroth-order per-block sparsity",
                  "allocates sparsity; give --target-sparsity (or use evopress, random, uniform)"},
    {"shortgpt",  1, DR,            0, 1, "ShortGPT: the sub-blocks of least block influence dropped",
                  "drops sub-blocks; give --target-drop (or use evopress, random)"},
    {"flap",      1, SU,            0, 1,
     "FLAP's global allocation: heads and channels of least standardized "
                  "fluctuation removed across blocks", "removes heads and channels; give --target-speedup or "
                  "--target-latency (or use evopress, random, uniform)"},
};
enum { N_METHODS = sizeof methods / sizeof *methods };

const evb_mp_method *evb_mp_method_find(const char *name) {
    for (int i = 0; name && i < N_METHODS; i++)
        if (!strcmp(methods[i].name, name)) return &methods[i];
    return NULL;
}

const char *evb_mp_method_names(void) { return "evopress, nsga2, uniform, random, owl, ecoflap, shortgpt, flap"; }

int evb_mp_is_rule(const char *name) {
    const evb_mp_method *me = evb_mp_method_find(name);
    return me && me->rule;
}

int evb_mp_method_check(const char *name, int kind, double target) {
    const evb_mp_method *me = evb_mp_method_find(name);
    if (!me) EVB_ERRORF(EVB_EINVAL, "method '%s' is unknown (%s)", name, evb_mp_method_names());
    if (kind == EVB_TARGET_FILE && me->rule) EVB_ERRORF(EVB_EINVAL, "method %s needs a model; a problem file takes evopress, nsga2, uniform or random", name);
    if (!(me->targets >> kind & 1)) EVB_ERRORF(EVB_EINVAL, "method %s %s", name, me->instead);
    if (!strcmp(name, "uniform") && kind == EVB_TARGET_BITS && fabs(target - round(target)) > 1e-9)
        EVB_ERRORF(EVB_EINVAL, "method uniform at %g bits: no uniform allocation has a fractional width; use random (best of N) or evopress", target);
    return EVB_SUCCESS;
}
