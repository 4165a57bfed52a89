#!/usr/bin/env bash
# task_fitness.sh -- what a model-in-the-loop fitness costs per candidate evaluation through each way in: the
# built-in task fitness, the example C plug-in (ABI 2) and the example Python worker (protocol 2), all
# computing the same function of the same log-probabilities, on the demo model at 60% sparsity with the
# next-sentence task's calibration items. One search thread (and one worker), no memo, median of REPS runs.
# The differences to the built-in are the protocols' overhead: the plug-in's api calls, the worker's msgpack
# messages (the log-probabilities of every scored token of the batch) over pipes and its Python arithmetic.
# usage: bench/task_fitness.sh [-r REPS] [-g GENERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=3 GENS=4
while getopts "r:g:h" opt; do case $opt in r) REPS=$OPTARG ;; g) GENS=$OPTARG ;; *) sed -n '2,8p' "$0"; exit 2 ;; esac; done
TASK=experiments/task/next-sentence-calib.jsonl
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { # name flags...: each run's best.json is kept as OUT/NAME.best.json
  local name=$1; shift
  for r in $(seq "$REPS"); do
    rm -rf "$OUT/run"
    OMP_NUM_THREADS=1 ./build/evobudget search --model assets/demo --target-sparsity 0.6 --generations "$GENS" --offspring 16 \
      --threads 1 --no-memo --out "$OUT/run" --json "$@" 2>/dev/null |
      /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print(1e3*j['search_seconds']/j['evaluations'], j['tokens']/j['evaluations'])"
    cp "$OUT/run/best.json" "$OUT/$name.best.json"
  done | sort -g | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'
}
b=$(run builtin --fitness "task:$TASK")
p=$(run plugin --fitness-plugin build/examples/plugin/libtask_plugin.so --fitness-arg "$TASK")
y=$(run worker --fitness-cmd "/usr/bin/python3 examples/worker/task_worker.py $TASK" --workers 1)
k=$(run kl --fitness kl)
echo "demo model, sparsity 0.6, $GENS generations of 16 offspring, 1 thread, no memo, median of $REPS runs:"
echo
echo "| fitness | ms / evaluation | tokens / evaluation (the search's count) | over the built-in task fitness |"
echo "|---|---:|---:|---:|"
for row in "built-in task fitness:$b" "C plug-in (ABI 2):$p" "Python worker (protocol 2):$y" "KL on calibration text (for scale):$k"; do
  name=${row%%:*}; v=${row##*:}
  set -- $v
  printf "| %s | %.2f | %.0f | %+.2f ms |\n" "$name" "$1" "$2" "$(awk -v a="$1" -v b="${b%% *}" 'BEGIN {print a - b}')"
done
echo
for n in plugin worker; do
  if cmp -s "$OUT/builtin.best.json" "$OUT/$n.best.json"; then echo "best.json of the $n run: identical to the built-in task fitness's"
  else echo "best.json of the $n run: DIFFERS from the built-in task fitness's"; fi
done
