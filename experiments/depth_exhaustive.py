"""depth_exhaustive.py RUNDIR [RUNDIR...] --calib TEXT --heldout TEXT [--seq-len N] [--calib-windows N]
[--heldout-tokens N] [--evb PATH] [--out FILE.csv] -- the known optimum of a depth table on a small model.

Every configuration that drops the same number of attention and of MLP sub-blocks as the given runs'
best.json (C(L, a) x C(L, m) of them) is scored with `evobudget eval` on the search's calibration windows
and on the held-out text. Prints, for each run, where its configuration ranks among all of them by
calibration KL and by held-out KL, and the rank correlation of the two measures over all configurations:
what tells a search that missed the calibration optimum from one that found it but was judged on text
whose ranking differs. Run from the repository root (best.json's model path is relative to it)."""
import argparse, csv, itertools, json, os, subprocess, sys, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("runs", nargs="+")
ap.add_argument("--calib", required=True)
ap.add_argument("--heldout", required=True)
ap.add_argument("--seq-len", type=int, default=256)
ap.add_argument("--calib-windows", type=int, default=64)
ap.add_argument("--heldout-tokens", type=int, default=0, help="0: all of the held-out text")
ap.add_argument("--evb", default="./build/evobudget")
ap.add_argument("--out", default="")
a = ap.parse_args()


def load(p):
    with open(p) as f:
        return json.load(f)


bests = [(r, load(os.path.join(r, "best.json"))) for r in a.runs]
model = bests[0][1]["model"]
n_attn = {sum(d["sub"] == "attn" for d in b["drop"]) for _, b in bests}
n_mlp = {sum(d["sub"] == "mlp" for d in b["drop"]) for _, b in bests}
if len(n_attn) != 1 or len(n_mlp) != 1 or any(b["model"] != model for _, b in bests):
    sys.exit("depth_exhaustive.py: the runs must drop the same numbers of sub-blocks of one model (hint: give the runs of one target)")
n_attn, n_mlp = n_attn.pop(), n_mlp.pop()
L = json.loads(subprocess.run([a.evb, "info", "--model", model, "--json"], check=True, capture_output=True, text=True).stdout)["n_layers"]


def kl(cfg, data, extra):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
    try:
        out = subprocess.run([a.evb, "eval", "--config", f.name, "--data", data, "--seq-len", str(a.seq_len), "--json"] + extra,
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    return json.loads(out)["kl"]


key = lambda drop: tuple(sorted((d["sub"], d["block"]) for d in drop))
rows = []
held_extra = ["--max-tokens", str(a.heldout_tokens)] if a.heldout_tokens else []
configs = list(itertools.product(itertools.combinations(range(L), n_attn), itertools.combinations(range(L), n_mlp)))
for att, mlp in configs:
    drop = [{"block": l, "sub": "attn"} for l in att] + [{"block": l, "sub": "mlp"} for l in mlp]
    cfg = {"model": model, "db": "", "units": [], "drop": drop}
    rows.append({"drop": key(drop), "calib_kl": kl(cfg, a.calib, ["--calib-windows", str(a.calib_windows)]),
                 "heldout_kl": kl(cfg, a.heldout, held_extra)})
    print("\r%d of %d configurations" % (len(rows), len(configs)), end="", file=sys.stderr)
print(file=sys.stderr)


def ranks(vals):
    order = sorted(range(len(vals)), key=lambda i: vals[i])
    r = [0] * len(vals)
    for pos, i in enumerate(order):
        r[i] = pos + 1
    return r


rc, rh = ranks([r["calib_kl"] for r in rows]), ranks([r["heldout_kl"] for r in rows])
n = len(rows)
rho = 1 - 6 * sum((x - y) ** 2 for x, y in zip(rc, rh)) / (n * (n * n - 1))
best_c, best_h = min(rows, key=lambda r: r["calib_kl"]), min(rows, key=lambda r: r["heldout_kl"])
print("%s: %d attention and %d MLP sub-blocks of %d dropped: %d configurations; Spearman rank correlation of "
      "calibration and held-out KL %.3f" % (model, n_attn, n_mlp, L, n, rho))
print()
print("| configuration | calib KL | rank by calib KL | held-out KL | rank by held-out KL |")
print("|---|---:|---:|---:|---:|")
idx = {r["drop"]: i for i, r in enumerate(rows)}
for name, r in [("calibration optimum", best_c), ("held-out optimum", best_h)] + \
        [(os.path.basename(run.rstrip("/")), rows[idx[key(b["drop"])]]) for run, b in bests]:
    i = idx[r["drop"]]
    print("| %s | %.4g | %d of %d | %.4g | %d of %d |" % (name, r["calib_kl"], rc[i], n, r["heldout_kl"], rh[i], n))
if a.out:
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["drop", "calib_kl", "heldout_kl"])
        for r in rows:
            w.writerow([" ".join("%s%d" % d for d in r["drop"]), r["calib_kl"], r["heldout_kl"]])
