#!/usr/bin/env bash
# run.sh -- does optimising a task win on held-out task items, and what does it cost in KL? On the demo model at
# 60% sparsity (SparseGPT levels) and 3 bits (GPTQ levels): dense, uniform, and EvoPress at its default
# generations with the KL fitness, the task fitness (--fitness task:calibration items) and their mix
# (kl+0.5*task). Every configuration is scored on the held-out items (accuracy, cross-entropy of the gold
# choice) and on held-out text (KL to the dense model, perplexity). Calibration text: the first nine tenths of
# assets/demo/calib.txt; held-out text: the last tenth (as the main job splits it).
# usage: experiments/task/run.sh [OUT] (default experiments-out/task); writes OUT/results.md and OUT/*.json.
# Environment: EVB (default ./build/evobudget), SEED (default 0).
set -eu
cd "$(dirname "$0")/../.."
EVB=${EVB:-./build/evobudget}
OUT=${1:-experiments-out/task}
SEED=${SEED:-0}
CAL=experiments/task/next-sentence-calib.jsonl
HELD=experiments/task/next-sentence-heldout.jsonl
mkdir -p "$OUT"
/usr/bin/python3 - "$OUT" <<'PY'
import sys
t = open('assets/demo/calib.txt', encoding='utf-8').read()
cut = t.index('\n', int(len(t) * 0.9)) + 1
open(sys.argv[1] + '/calib90.txt', 'w', encoding='utf-8').write(t[:cut])
open(sys.argv[1] + '/heldout10.txt', 'w', encoding='utf-8').write(t[cut:])
PY
score() { # name config-args...
  local name=$1; shift
  "$EVB" eval --data "$OUT/heldout10.txt" --task "$HELD" --json "$@" > "$OUT/$name.eval.json" 2> "$OUT/$name.eval.err"
}
search() { # name target-args...
  local name=$1; shift
  local t0=$(date +%s)
  echo "run.sh: $name ..." >&2
  "$EVB" search --model assets/demo --calib "$OUT/calib90.txt" --seed "$SEED" --out "$OUT/$name" --force --json "$@" \
    > "$OUT/$name.search.json" 2> "$OUT/$name.search.err" || { tail -3 "$OUT/$name.search.err" >&2; exit 1; }
  echo $(( $(date +%s) - t0 )) > "$OUT/$name.seconds"
  score "$name" --config "$OUT/$name"
}
score dense
for target in "sparsity 0.6" "bits 3"; do
  set -- $target
  k=$1 v=$2
  search "$k$v-uniform" --target-$k "$v" --method uniform
  search "$k$v-kl" --target-$k "$v"
  search "$k$v-task" --target-$k "$v" --fitness "task:$CAL"
  search "$k$v-mix" --target-$k "$v" --fitness "kl+0.5*task:$CAL"
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def ev(name):
    return json.load(open(os.path.join(out, name + '.eval.json')))
rows = [("dense", "", ev("dense"), None)]
for k, v in (("sparsity", "0.6"), ("bits", "3")):
    for m, label in (("uniform", "uniform"), ("kl", "EvoPress, KL fitness"), ("task", "EvoPress, task fitness"),
                     ("mix", "EvoPress, kl+0.5*task")):
        n = f"{k}{v}-{m}"
        s = json.load(open(os.path.join(out, n + '.search.json')))
        secs = int(open(os.path.join(out, n + '.seconds')).read())
        rows.append((label, f"{k} {v}", ev(n), (s, secs)))
print("| target | configuration | held-out task accuracy | held-out task cross-entropy | held-out KL | held-out perplexity | search fitness (all calibration data) | evaluations | wall s |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for label, tgt, e, s in rows:
    t = e["task"]
    kl = e.get("kl", 0.0)
    fit = f'{s[0]["fitness_name"]} {s[0].get("fitness_all", float("nan")):.5f}' if s else ""
    evals = s[0].get("evaluations", "") if s else ""
    print(f'| {tgt} | {label} | {t["accuracy"]:.4f} ({round(t["accuracy"] * t["items"])}/{t["items"]}) | {t["ce"]:.5f} | {kl:.5f} | {e["perplexity"]:.3f} | {fit} | {evals} | {s[1] if s else ""} |')
PY
