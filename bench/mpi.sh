#!/usr/bin/env bash
# mpi.sh -- candidate evaluations per second of an EvoPress search (demo model, 60% sparsity) for ranks x
# threads on this machine: one process with 1 and all threads, evobudget-mpi with 1..N ranks of 1 thread and
# 2 ranks of half the threads each. Prints a Markdown table (see bench/README.md); medians of REPS runs.
#
# usage: bench/mpi.sh [-r REPS] [-g GENERATIONS] [-o OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=3 GENS=10 OUT=/tmp/evb_bench_mpi
while getopts "r:g:o:h" opt; do
  case $opt in r) REPS=$OPTARG ;; g) GENS=$OPTARG ;; o) OUT=$OPTARG ;; *) sed -n 2,7p "$0"; exit 2 ;; esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$OUT"
N=$(nproc)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ARGS="search --method evopress --target-sparsity 0.6 --generations $GENS --cache $OUT/cache --json"
./build/evobudget $ARGS --method uniform --out "$OUT/warm" > /dev/null 2>&1 || true # the level database, outside the timings
rm -rf "$OUT/warm"
variant() { # label ranks threads
  local label=$1 np=$2 th=$3
  for r in $(seq "$REPS"); do
    rm -rf "$OUT/run"
    if [ "$np" = 0 ]; then OMP_NUM_THREADS=$th ./build/evobudget $ARGS --out "$OUT/run" > "$OUT/run.json" 2> /dev/null
    else OMP_NUM_THREADS=$th mpirun -np "$np" --bind-to none ./build/evobudget-mpi $ARGS --out "$OUT/run" > "$OUT/run.json" 2> /dev/null; fi
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(j['evaluations']/j['search_seconds'], j['search_seconds'])" "$OUT/run.json"
  done > "$OUT/$label.txt"
  printf "| %s | %s | %s | %.2f | %.1f |\n" "$label" "${np/#0/1 (evobudget)}" "$th" "$(cut -d' ' -f1 "$OUT/$label.txt" | median)" "$(cut -d' ' -f2 "$OUT/$label.txt" | median)"
}
echo "Demo model, EvoPress at 60% sparsity, $GENS generations, $N cores, median of $REPS runs:"
echo
echo "| variant | ranks | threads per rank | candidate evaluations/s | search seconds |"
echo "|---|---:|---:|---:|---:|"
variant "one process, 1 thread" 0 1
variant "one process, all threads" 0 "$N"
for np in $(seq 1 "$N"); do variant "mpirun -np $np" "$np" 1; done
[ "$N" -ge 2 ] && variant "mpirun -np 2, half the threads" 2 $((N / 2))
variant "mpirun -np $((N + 1)) (oversubscribed)" $((N + 1)) 1
