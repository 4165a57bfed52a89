"""surrogate_table.py TSV OUT RESULTS -- the table of experiments/surrogate.sh: per model and target, plain
EvoPress against the surrogate-assisted search at a third of its tokens: tokens scored, calibration KL (all
calibration windows, `eval --calib-windows 64`), held-out KL and perplexity, the tokens each needed to reach
plain's final fitness (the search's own measure in log.jsonl: the incumbent on the last stage's batch), the
surrogate's mean rank correlation, and wall times. Writes RESULTS/surrogate.md and .csv."""
import csv, json, os, sys

tsv, out, results = sys.argv[1:4]
runs = [line.rstrip("\n").split("\t") for line in open(tsv) if line.strip()]


def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def log(run):
    rows = []
    for line in open(os.path.join(run, "log.jsonl")):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if "generation" in d:
            rows.append(d)
    return rows


cells = {}
for name, label, row, run in runs:
    cells.setdefault((name, label), {})[row] = run
header = ["model", "target", "method", "tokens", "token share", "calib KL", "held-out KL", "held-out ppl",
          "tokens to plain's final", "mean rho", "search s"]
md = ["# Surrogate-assisted EvoPress at a third of the tokens\n",
      "Produced by `experiments/surrogate.sh`. Plain: EvoPress at its defaults. Surrogate: `--surrogate 16` (a "
      "quarter of plain's offspring scored a generation, half of them the best the additive model ranks among 16 "
      "times as many proposals, half at random from the rest) with `--token-budget` a "
      "third of plain's tokens. calib KL: all calibration windows; held-out KL and perplexity: text the search "
      "never saw. Tokens to plain's final: the tokens scored when the incumbent's fitness in log.jsonl (the "
      "last stage's batch) first reached plain's final value (- when never). mean rho: the surrogate's Spearman "
      "correlation with the real fitness of the offspring scored at stage 0, averaged over generations.\n",
      "| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
table = []
wins = total = 0
for (name, label), c in cells.items():
    if "plain" not in c or "surrogate" not in c:
        continue
    plog = log(c["plain"])
    pfinal = plog[-1]["best_fitness"] if plog else float("nan")
    ptok = plog[-1]["tokens"] if plog else 0
    vals = {}
    for row in ("plain", "surrogate"):
        run = c[row]
        s, cal, held = load(run + ".search.json") or {}, load(run + ".calib.json") or {}, load(run + ".eval.json") or {}
        lg = log(run)
        reach = next((d["tokens"] for d in lg if d["best_fitness"] <= pfinal), None)
        rhos = [d["surrogate_rho"] for d in lg if d.get("surrogate_rho") is not None]
        sec = open(run + ".seconds").read().strip() if os.path.exists(run + ".seconds") else ""
        vals[row] = held.get("kl")
        r = [name, label, row, s.get("tokens", 0), s.get("tokens", 0) / ptok if ptok else float("nan"), cal.get("kl"),
             held.get("kl"), held.get("perplexity"), reach, sum(rhos) / len(rhos) if rhos else None, sec]
        table.append(r)
        md.append("| " + " | ".join(
            "" if v is None else ("%.5f" % v if isinstance(v, float) and i in (5, 6) else "%.3f" % v if isinstance(v, float) and i in (4, 7, 9)
                                  else "{:,}".format(v) if isinstance(v, int) else str(v)) for i, v in enumerate(r)) + " |")
    if vals.get("plain") is not None and vals.get("surrogate") is not None:
        total += 1
        wins += vals["surrogate"] <= 1.01 * vals["plain"]
md.append("\nHeld-out KL of the surrogate within 1%% of plain's or better: %d of %d cells.\n" % (wins, total))
os.makedirs(results, exist_ok=True)
open(os.path.join(results, "surrogate.md"), "w").write("\n".join(md) + "\n")
with open(os.path.join(results, "surrogate.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(table)
