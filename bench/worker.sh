#!/usr/bin/env bash
# worker.sh -- what the worker protocol costs per candidate evaluation, against the in-process C plug-in and
# the built-in fitness, on a problem whose fitness itself is nearly free (a sum over 64 units), so the times
# are the overhead. One search thread and one worker each; median of REPS runs. Prints a Markdown table.
# usage: bench/worker.sh [-r REPS] [-g GENERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=3 GENS=200
while getopts "r:g:h" opt; do case $opt in r) REPS=$OPTARG ;; g) GENS=$OPTARG ;; *) sed -n '2,6p' "$0"; exit 2 ;; esac; done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
/usr/bin/python3 - "$OUT/problem.json" <<'PY'
import json, random, sys
random.seed(3)
units = []
for u in range(64):
    w, c = 0.2 + random.random(), random.random() * 8
    units.append({"name": "u%d" % u, "levels": [{"cost": 10 + l, "fitness": w * (l - c) ** 2} for l in range(9)]})
json.dump({"format": 1, "units": units, "budget": 64 * 14, "tolerance": 0, "start": [4] * 64}, open(sys.argv[1], "w"))
PY
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { # name flags...
  local name=$1; shift
  for r in $(seq "$REPS"); do
    rm -rf "$OUT/run"
    OMP_NUM_THREADS=1 ./build/evobudget search --problem "$OUT/problem.json" --generations "$GENS" --offspring 64 \
      --stages 8@2048,2@16384,1@65536 --no-memo --out "$OUT/run" --json "$@" 2>/dev/null |
      /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print(1e6*j['search_seconds']/j['evaluations'])"
  done | median
}
b=$(run builtin)
p=$(run plugin --fitness-plugin build/examples/plugin/libadditive_plugin.so)
c=$(run cworker --fitness-cmd build/examples/worker/additive_worker --workers 1)
y=$(run pyworker --fitness-cmd "/usr/bin/python3 examples/worker/additive_worker.py" --workers 1)
echo "64 units, $GENS generations of 64 offspring, 1 thread, median of $REPS runs (microseconds per candidate evaluation, search included):"
echo
echo "| fitness | us / evaluation | over the plug-in |"
echo "|---|---:|---:|"
for row in "built-in:$b" "C plug-in (dlopen):$p" "C worker (msgpack over pipes):$c" "Python worker (python3-msgpack):$y"; do
  name=${row%%:*}; v=${row##*:}
  printf "| %s | %.1f | %+.1f |\n" "$name" "$v" "$(awk -v a="$v" -v b="$p" 'BEGIN {print a - b}')"
done
