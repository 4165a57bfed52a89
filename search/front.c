/* front.c -- two-objective fronts and their hypervolume (minimisation; shared/reference/baselines.md 5.2). */
#include "evobudget/evb_search.h"

#include <stdlib.h>

typedef struct pt { double a, b; int i; } pt;

static int cmp_pt(const void *x, const void *y) {
    const pt *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    if (p->b != q->b) return p->b < q->b ? -1 : 1;
    return p->i - q->i;
}

/* Sorted by f1 then f2; a point is on the front when its f2 is below every f2 before it. */
int evb_pareto_front_2d(const double *f1, const double *f2, int n, int *idx) {
    pt *p = malloc(sizeof(pt) * (n > 0 ? n : 1));
    if (!p) return -1;
    for (int i = 0; i < n; i++) p[i] = (pt){f1[i], f2[i], i};
    qsort(p, (size_t)n, sizeof *p, cmp_pt);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || p[i].b < f2[idx[m - 1]]) idx[m++] = p[i].i;
    free(p);
    return m;
}

double evb_hypervolume_2d(const double *f1, const double *f2, int n, double r1, double r2) {
    pt *p = malloc(sizeof(pt) * (n > 0 ? n : 1));
    if (!p) return -1;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (f1[i] < r1 && f2[i] < r2) p[k++] = (pt){f1[i], f2[i], i}; /* strictly better than r */
    qsort(p, (size_t)k, sizeof *p, cmp_pt);
    double hv = 0, best = r2;
    for (int i = 0; i < k; i++) {
        if (p[i].b >= best) continue;
        /* the staircase: from this point's f1 to the next staircase point's f1 (or r1) */
        int j = i + 1;
        while (j < k && p[j].b >= p[i].b) j++;
        double next = j < k ? p[j].a : r1;
        hv += (next - p[i].a) * (r2 - p[i].b);
        best = p[i].b;
    }
    free(p);
    return hv;
}
