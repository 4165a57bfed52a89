#!/usr/bin/env bash
# search.sh -- candidate evaluations per second of `evobudget search`, with and without the reuse of the
# parent's hidden states and the fitness memo, and the whole EvoPress sparsity search on the demo model at
# the paper's 400 generations. Prints Markdown tables (see bench/README.md).
#
# usage: bench/search.sh [-r REPS] [-g GENERATIONS] [-o OUTDIR] [-f]
#   -r REPS   runs of each variant (default 3; the median is reported)
#   -g N      generations of the throughput runs (default 20)
#   -f        also run the full 400-generation search (about half an hour here)
#   -o DIR    run directories and the level database cache (default /tmp/evb_bench_search)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=3 GENS=20 OUT=/tmp/evb_bench_search FULL=0
while getopts "r:g:o:fh" opt; do
  case $opt in
    r) REPS=$OPTARG ;; g) GENS=$OPTARG ;; o) OUT=$OPTARG ;; f) FULL=1 ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
  esac
done
EVB=./build/evobudget
mkdir -p "$OUT"
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run_variant() { # name flags -> median evaluations/s and tokens/s of the search loop
  local name=$1; shift
  for r in $(seq "$REPS"); do
    rm -rf "$OUT/run-$name-$r"
    "$EVB" search --method evopress --target-sparsity 0.6 --generations "$GENS" --cache "$OUT/cache" \
      --out "$OUT/run-$name-$r" --json "$@" 2>/dev/null > "$OUT/run-$name-$r.json"
    /usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(j['evaluations']/j['search_seconds'], j['tokens']/j['search_seconds'], j['search_seconds'], j['memo_hits'])" "$OUT/run-$name-$r.json"
  done > "$OUT/$name.txt"
  printf "| %s | %.2f | %.0f | %.1f | %s |\n" "$name" "$(cut -d' ' -f1 "$OUT/$name.txt" | median)" \
    "$(cut -d' ' -f2 "$OUT/$name.txt" | median)" "$(cut -d' ' -f3 "$OUT/$name.txt" | median)" "$(cut -d' ' -f4 "$OUT/$name.txt" | median)"
}
# build the level database once, outside the timings
"$EVB" search --method uniform --target-sparsity 0.6 --cache "$OUT/cache" --out "$OUT/warm" --json > /dev/null 2>&1 || true
rm -rf "$OUT/warm"
echo "Demo model, EvoPress at 60% sparsity, $GENS generations, $(nproc) threads, median of $REPS runs:"
echo
echo "| variant | candidate evaluations/s | tokens/s | search seconds | memo hits |"
echo "|---|---:|---:|---:|---:|"
run_variant "reuse+memo"
run_variant "memo only" --no-reuse
run_variant "reuse only" --no-memo
run_variant "neither" --no-reuse --no-memo
if [ "$FULL" = 1 ]; then
  rm -rf "$OUT/full"
  /usr/bin/time -f "%e" -o "$OUT/full.time" "$EVB" search --method evopress --target-sparsity 0.6 --cache "$OUT/cache" --out "$OUT/full" --json > "$OUT/full.json" 2>/dev/null
  echo
  echo "Whole search, 400 generations (the paper's count), demo model, 60%: $(cat "$OUT/full.time") s wall; $(cat "$OUT/full.json")"
fi
