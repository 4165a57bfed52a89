/* plot.h -- run directories turned into pictures (plots/plot.c): a run's front, per-unit budget profile and
 * convergence, or a sweep's front and every target's own pictures, drawn by gnuplot with the scripts of
 * plots/ (*.gp), as PNG and SVG. Part of the evobudget program, not of the library.
 *
 * evb_plot_run never prints and never exits: it returns an EVB_* status, and on failure the one-line message
 * (ending with a hint) is in evb_last_error(). EVB_EINVAL means the request itself is wrong (a directory
 * that is not one, a --with run of another target kind); any other error concerns the files read or written,
 * or gnuplot. */
#ifndef EVB_PLOTS_PLOT_H
#define EVB_PLOTS_PLOT_H

#include <stddef.h>

#define EVB_PLOT_DIR_MAX 1024 /* longest run directory name accepted, in bytes */

typedef struct evb_plot_request {
    const char *dir;  /* a run directory (best.json, front.csv, ...) or a sweep's directory (sweep.json) */
    const char *with; /* comma-separated run directories drawn as labelled points on the front; NULL: none */
} evb_plot_request;

/* What evb_plot_run drew. The caller owns it (evb_plot_run fills it, also on failure) and releases it with
 * evb_plot_result_destroy. */
typedef struct evb_plot_result {
    char **pictures;        /* [n_pictures] paths of the pictures written, PNG and SVG, in drawing order */
    int n_pictures;
    char **no_convergence;  /* [n_no_convergence] run directories (shown: control characters as '?') whose
                               log.jsonl has no generations, so that they got no convergence picture */
    int n_no_convergence;
    int sweep;              /* 1: dir is a sweep's directory */
    char target_kind[16];   /* a sweep's target kind (sparsity, bits, drop, bytes, problem); "" for a run */
    int n_front;            /* points of the front drawn: front.csv's rows (a sweep: one per target) */
    int n_baselines;        /* --with runs drawn */
    int n_generations;      /* generations drawn in convergence pictures, all runs together */
    int n_targets;          /* a sweep's targets; 0 for a run */
    int n_heldout;          /* a sweep's targets with the search's held-out KL drawn */
    int n_uniform;          /* a sweep's targets with the uniform allocation's held-out KL drawn */
} evb_plot_result;

/* Draws req->dir (see the top of the file) into *res; EVB_SUCCESS or an EVB_E* error. The pictures go into
 * the run directory, the data files and gnuplot's messages (plot.log) into its plots/. */
int evb_plot_run(const evb_plot_request *req, evb_plot_result *res);

/* Frees what *res holds (not res itself); a zeroed result is fine. */
void evb_plot_result_destroy(evb_plot_result *res);

/* s into buf[n] with its control characters shown as '?', for one-line messages (a directory name may hold a
 * newline); when s does not fit, "..." and its end. Returns buf. */
const char *evb_plot_visible(const char *s, char *buf, size_t n);

#endif
