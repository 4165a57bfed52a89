/* plot.c -- `evobudget plot RUNDIR`: the options and the help of the command; the drawing itself (the run
 * directory's files, gnuplot, the pictures) is plots/plot.c's. Prints a line per picture written (after a
 * line on what a sweep's pictures are), or with --json one object; a note on stderr for each run without
 * generations in its log.jsonl (so without a convergence picture). */
#include "cli/cli.h"
#include "plots/plot.h"

#include <stdio.h>
#include <string.h>

static const char help[] =
    "usage: evobudget plot RUNDIR [--with RUNDIR[,RUNDIR...]] [--json]\n"
    "  Draws a run directory into RUNDIR: front.png/.svg (front.csv; with --with, the best.json of other\n"
    "  runs, e.g. the baselines at the same target, as labelled points), profile.png/.svg (best.json: one\n"
    "  bar per unit, grouped by block and coloured by layer type, or labelled with the unit's name for a\n"
    "  problem file) and convergence.png/.svg (log.jsonl: best fitness against generation and against\n"
    "  evaluations). The data files and gnuplot's messages (plot.log) are left in RUNDIR/plots/.\n"
    "  A sweep's directory (search with a list of targets) gets the sweep's front.png/.svg (one point per\n"
    "  target, KL on all calibration tokens; where the sweep scored held-out text, two more lines: the\n"
    "  held-out KL of each target's best and of the uniform allocation of its size), and each target's run\n"
    "  directory its own three pictures. A sensitivity profile's directory (evobudget sensitivity --out DIR)\n"
    "  gets sensitivity.png/.svg: a heat map of log10 KL, a row per unit (by layer type and block), a column\n"
    "  per level.\n"
    "  Needs gnuplot (./setup.sh installs gnuplot-nox).\n"
    "  --json   one JSON object on stdout: the pictures written\n";

/* The pictures written, as lines or (as_json) one object. */
static int report(const char *dir, const evb_plot_result *r, int as_json) {
    if (!as_json) {
        char shown[1400];
        if (r->sweep)
            printf("%s: a sweep over %d %s targets: its front in front.png (each target's best, KL on all calibration tokens%s); "
                   "each target's front, profile and convergence in its own run directory\n",
                   evb_plot_visible(dir, shown, sizeof shown), r->n_targets, r->target_kind, r->n_uniform ? ", and on held-out text against uniform" : "");
        for (int i = 0; i < r->n_pictures; i++) printf("wrote %s\n", r->pictures[i]);
        return 0;
    }
    json_t *pics = json_array();
    int ok = pics != NULL;
    for (int i = 0; ok && i < r->n_pictures; i++) ok &= json_array_append_new(pics, json_string(r->pictures[i])) == 0;
    json_t *j = ok ? json_pack("{s:s, s:b, s:o, s:i, s:i, s:i}", "run", dir, "sweep", r->sweep, "pictures", pics, "front_points", r->n_front,
                               "baselines", r->n_baselines, "generations", r->n_generations)
                   : (json_decref(pics), NULL);
    if (j && r->sweep) json_object_set_new(j, "targets", json_integer(r->n_targets));
    if (j) return print_json(j);
    fprintf(stderr, "%s: error: the run directory's name is not UTF-8, which --json cannot hold; the pictures are written\n", cmd_name);
    return 1;
}

int cmd_plot(int argc, char **argv) {
    opts o = {0};
    int rc = parse_opts(argc, argv, "RUNDIR --with --json", &o);
    if (rc || o.help) {
        if (o.help) fputs(help, stdout);
        return rc;
    }
    if (!o.arg) return usage_error("plot needs a run directory (hint: evobudget plot RUNDIR)");
    evb_plot_request req = {.dir = o.arg, .with = o.with};
    evb_plot_result res;
    int st = evb_plot_run(&req, &res);
    for (int i = 0; i < res.n_no_convergence; i++)
        fprintf(stderr, "%s: note: %s has no log.jsonl generations; no convergence picture\n", cmd_name, res.no_convergence[i]);
    /* a request that is wrong is a usage error (exit 2), anything else about the files or gnuplot exit 1 */
    rc = st == EVB_EINVAL ? refuse_status("") : st ? fail(st) : report(o.arg, &res, o.json);
    evb_plot_result_destroy(&res);
    return rc;
}
