"""Writes tests/fixtures/hv_ref.txt: two-objective point sets (minimisation) and their hypervolume computed
by DEAP (Debian's python3-deap), the independent reference tests/test_search.c compares against.
Run with /usr/bin/python3 (Debian's interpreter, which sees python3-deap).

Format: per set, a line "set N R1 R2 HV" then N lines "f1 f2" (repr floats)."""
import random, sys
from deap.tools._hypervolume import hv

def sets():
    rnd = random.Random(7)
    yield [(rnd.random(), rnd.random()) for _ in range(40)], (1.1, 1.1)
    pts = [(i / 20, 1 - (i / 20) ** 0.5) for i in range(21)]
    yield pts + pts[:5] + [(0.5, 0.9), (0.9, 0.95)], (1.0, 1.2)         # duplicates, dominated points
    yield [(rnd.uniform(-5, 5), rnd.uniform(0, 100)) for _ in range(200)], (6.0, 120.0)
    yield [(0.2, 0.3), (2.0, 0.1), (0.1, 5.0), (0.5, 0.5)], (1.0, 1.0)    # points beyond the reference
    yield [(rnd.randint(0, 9) / 10, rnd.randint(0, 9) / 10) for _ in range(60)], (1.0, 1.0)  # ties

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/hv_ref.txt"
with open(out, "w") as f:
    for pts, ref in sets():
        inside = [p for p in pts if p[0] < ref[0] and p[1] < ref[1]]
        v = hv.hypervolume(inside, list(ref)) if inside else 0.0
        f.write("set %d %r %r %r\n" % (len(pts), ref[0], ref[1], v))
        for a, b in pts:
            f.write("%r %r\n" % (a, b))
