"""surrogate_table.py TSV OUT RESULTS -- the table of experiments/surrogate.sh: per model and target, plain
EvoPress against the surrogate-assisted search at a third of its tokens and plain EvoPress stopped at the same
third: tokens scored, calibration KL (all calibration windows, `eval --calib-windows 64`), held-out KL and
perplexity, the tokens each needed to reach plain's final calibration KL (the surrogate's from OUT/reach.tsv,
written by experiments/surrogate_reach.sh), the surrogate's mean rank correlation, and wall times. Writes
RESULTS/surrogate.md and .csv."""
import csv, json, os, sys

from runinfo import profile_seconds

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


reach = {}
if os.path.exists(os.path.join(out, "reach.tsv")):
    for line in open(os.path.join(out, "reach.tsv")):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 5:
            reach[(f[0], f[1])] = int(f[4]) if f[4] != "-" else "-"
cells = {}
for name, label, row, run in runs:
    cells.setdefault((name, label), {})[row] = run
header = ["model", "target", "method", "tokens", "token share", "calib KL", "held-out KL", "held-out ppl",
          "tokens to plain's final calib KL", "mean rho", "search s"]
md = ["# Surrogate-assisted EvoPress at a third of the tokens\n",
      "Produced by `experiments/surrogate.sh`. Plain: EvoPress at its defaults; third: the same stopped by "
      "`--token-budget` at a third of plain's tokens. Surrogate: a sensitivity profile of 256 tokens a level "
      "(`sensitivity --max-tokens 256`) as the model's prior and the start (`--prior`: its additive optimum under "
      "the budget), then `--surrogate 16` (a quarter of plain's offspring scored a generation, half of them the "
      "best the additive model ranks among 16 times as many proposals, half at random from the rest), with "
      "`--token-budget` a third of plain's tokens, the profile's included. calib KL: all calibration windows; "
      "held-out KL and perplexity: text the search never saw. Tokens to plain's final calib KL: for the surrogate, the tokens at which it first had a "
      "calibration KL of plain's final or lower, run in twelfths of plain's tokens by "
      "`experiments/surrogate_reach.sh` (> plain's tokens: not within them); for plain and third, their tokens when "
      "they end there (- when not; plain: the third's when that already did). mean rho: the surrogate's Spearman "
      "correlation with the real fitness of the offspring scored at stage 0, averaged over generations. search s: "
      "the surrogate's includes its profile's.\n",
      "| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
table = []
wins = total = n3 = beat3 = 0
closed = []
for (name, label), c in cells.items():
    if "plain" not in c or "surrogate" not in c:
        continue
    ps = load(c["plain"] + ".search.json") or {}
    pfinal, ptok = ps.get("fitness_all", float("nan")), ps.get("tokens", 0)
    vals = {}
    for row in ("plain", "third", "surrogate"):
        if row not in c:
            continue
        run = c[row]
        s, cal, held = load(run + ".search.json") or {}, load(run + ".calib.json") or {}, load(run + ".eval.json") or {}
        lg = log(run)
        if row == "surrogate":
            r = reach.get((name, label))
            reach_tok = None if r is None else r if r != "-" else "> %s" % "{:,}".format(ptok)
        else:
            reach_tok = s.get("tokens") if s.get("fitness_all", float("inf")) <= pfinal else "-"
        if row == "plain" and "third" in c:
            t = load(c["third"] + ".search.json") or {}
            if t.get("fitness_all", float("inf")) <= pfinal:
                reach_tok = "<= %s" % "{:,}".format(t["tokens"])
        rhos = [d["surrogate_rho"] for d in lg if d.get("surrogate_rho") is not None]
        sec = ""
        if os.path.exists(run + ".seconds"):
            sec = int(open(run + ".seconds").read().strip()) + round(profile_seconds(run))
        vals[row] = held.get("kl")
        r = [name, label, row, s.get("tokens", 0), s.get("tokens", 0) / ptok if ptok else float("nan"), cal.get("kl"),
             held.get("kl"), held.get("perplexity"), reach_tok, sum(rhos) / len(rhos) if rhos else None, sec]
        table.append(r)
        md.append("| " + " | ".join(
            "" if v is None else ("%.5f" % v if isinstance(v, float) and i in (5, 6) else "%.3f" % v if isinstance(v, float) and i in (4, 7, 9)
                                  else "{:,}".format(v) if isinstance(v, int) else str(v)) for i, v in enumerate(r)) + " |")
    if vals.get("plain") is not None and vals.get("surrogate") is not None:
        total += 1
        wins += vals["surrogate"] <= 1.01 * vals["plain"]
    if vals.get("third") is not None and vals.get("surrogate") is not None:
        n3 += 1
        beat3 += vals["surrogate"] <= vals["third"]
        gap = vals["third"] - vals.get("plain", float("nan"))
        if gap > 0:
            closed.append((vals["third"] - vals["surrogate"]) / gap)
md.append("\nHeld-out KL of the surrogate within 1%% of plain's or better: %d of %d cells.\n" % (wins, total))
if n3:
    md.append("At equal tokens, the surrogate's held-out KL is plain's stopped at a third or better in %d of %d cells; "
              "where plain at a third is worse than plain's own final, the surrogate closes a median %.0f%% of that gap "
              "(%d cells).\n" % (beat3, n3, 100 * sorted(closed)[len(closed) // 2] if closed else float("nan"), len(closed)))
os.makedirs(results, exist_ok=True)
open(os.path.join(results, "surrogate.md"), "w").write("\n".join(md) + "\n")
with open(os.path.join(results, "surrogate.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(table)
