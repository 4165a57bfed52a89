"""Turns the run directories of experiments/search/run.sh into results.md (stdout) and results.csv."""
import csv, json, os, sys

out, seconds, csv_path = sys.argv[1], sys.argv[2], sys.argv[3]
TARGETS = [("--target-sparsity", t, "sparsity %d%%" % round(float(t) * 100), ["uniform", "owl", "ecoflap", "random", "evopress"]) for t in ("0.5", "0.6", "0.7")]
TARGETS += [("--target-bits", t, "%s bits" % t, ["uniform", "random", "evopress"]) for t in ("2.5", "3", "4")]
TARGETS += [("--target-drop", t, "depth %d%%" % round(float(t) * 100), ["random", "shortgpt", "evopress"]) for t in ("0.2", "0.4")]

def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

rows = []
print("# Allocation methods at equal cost\n")
print("Produced by `experiments/search/run.sh` (wall time %s s). Same compressor per mode (SparseGPT; GPTQ, "
      "group 32; dropped sub-blocks), same calibration windows (64 of the model's sequence length), same level "
      "database; the search fitness is KL(dense || compressed) on the calibration windows. Held-out: the rest "
      "of the TinyStories head (stories260K), the last 5%% of Moby Dick and Tiny Shakespeare (demo). Each cell: "
      "held-out KL / perplexity; cost is what every method holds (weights kept, bits per weight, sub-blocks "
      "dropped); `calib KL` is the search's own fitness.\n" % seconds)
for name in ("stories260K", "demo"):
    dense = load(os.path.join(out, name, "dense.eval.json"))
    print("## %s (dense held-out perplexity %.3f)\n" % (name, dense["perplexity"] if dense else float("nan")))
    print("| target | method | cost | calib KL | held-out KL | held-out ppl | search s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for flag, t, label, methods in TARGETS:
        best = None
        cells = []
        for m in methods:
            run = os.path.join(out, name, m + flag + t)
            b, e = load(os.path.join(run, "best.json")), load(run + ".eval.json")
            sec = open(run + ".seconds").read().strip() if os.path.exists(run + ".seconds") else ""
            if not b or not e:
                cells.append((m, None, None, None, None, sec)); continue
            cost = b.get("sparsity", b.get("bits_per_weight", b.get("dropped")))
            cells.append((m, cost, b["fitness"], e["kl"], e["perplexity"], sec))
            rows.append({"model": name, "target": label, "method": m, "cost": cost, "calib_kl": b["fitness"],
                         "heldout_kl": e["kl"], "heldout_ppl": e["perplexity"], "search_seconds": sec})
        ok = [c for c in cells if c[3] is not None]
        bestm = min(ok, key=lambda c: c[3])[0] if ok else None
        for m, cost, fit, kl, ppl, sec in cells:
            if kl is None:
                print("| %s | %s | (missing) | | | | |" % (label, m)); continue
            b = "**" if m == bestm else ""
            print("| %s | %s | %.4f | %.4f | %s%.4f%s | %.3f | %s |" % (label, m, cost, fit, b, kl, b, ppl, sec))
    print()
with open(csv_path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["model", "target", "method", "cost", "calib_kl", "heldout_kl", "heldout_ppl", "search_seconds"])
    w.writeheader()
    w.writerows(rows)
