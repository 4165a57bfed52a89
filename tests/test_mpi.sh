#!/bin/sh
# test_mpi.sh SOURCE_DIR BUILD_DIR -- evobudget-mpi on stories260K (or its stand-in, tests/standin.h): `mpirun -np 2` and `-np 3` give the
# best.json and front.csv of the single-process run for the same seed (the 3-rank run splits the tokens of
# its two-candidate stage; 2 ranks of 2 threads score a three-candidate stage one candidate at a time); a rank killed mid-run ends the job within seconds with a message naming the
# checkpoint, and --resume with another rank count ends with the uninterrupted run's best.json.
# Skipped (exit 77) with a message where MPI or evobudget-mpi is missing.
set -u
src=$1 build=$2
evb=$build/evobudget mpi=$build/evobudget-mpi
if ! command -v mpirun > /dev/null || [ ! -x "$mpi" ]; then
  echo "SKIP: no mpirun or no $mpi (./setup.sh installs Open MPI; cmake builds evobudget-mpi when it finds it)"
  exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d /tmp/evb_mpi_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# stories260K and the TinyStories text, or where ../shared/data is missing the stand-in of tests/standin.h
paths=$("$build/tests/make_standin" "$tmp") || { echo "FAIL: $build/tests/make_standin $tmp"; exit 1; }
echo "$paths" | grep '^NOTE' || true
model=$(echo "$paths" | tail -n 2 | head -n 1) calib=$(echo "$paths" | tail -n 1)
fails=0 checks=0
check() { # description, then a command whose status is the result
  d=$1; shift
  checks=$((checks + 1))
  if "$@"; then echo "PASS $d"; else echo "FAIL $d"; fails=$((fails + 1)); fi
}
args="search --model $model --calib $calib
      --seq-len 64 --calib-windows 16 --seed 3 --cache $tmp/cache --method evopress --target-sparsity 0.5 --offspring 8"

OMP_NUM_THREADS=2 "$evb" $args --generations 6 --out "$tmp/one" > /dev/null 2>&1
check "the single-process run" test -f "$tmp/one/best.json"
for np in 2 3; do
  OMP_NUM_THREADS=1 mpirun -np $np "$mpi" $args --generations 6 --out "$tmp/np$np" > "$tmp/np$np.out" 2> "$tmp/np$np.err"
  check "mpirun -np $np: same best.json as one process" cmp -s "$tmp/one/best.json" "$tmp/np$np/best.json"
  check "mpirun -np $np: same front.csv as one process" cmp -s "$tmp/one/front.csv" "$tmp/np$np/front.csv"
done

# 2 ranks of 2 threads: 3 candidates on 4 threads are scored one at a time per rank, all threads in the forward
st="--generations 5 --stages 6@256,3@512,1@0"
OMP_NUM_THREADS=2 "$evb" $args $st --out "$tmp/one3" > /dev/null 2>&1
OMP_NUM_THREADS=2 mpirun -np 2 "$mpi" $args $st --out "$tmp/np2t2" > /dev/null 2>&1
check "mpirun -np 2 with 2 threads each, stages 6, 3, 1: same best.json as one process" cmp -s "$tmp/one3/best.json" "$tmp/np2t2/best.json"

# a rank killed mid-run, then resumed with another rank count
OMP_NUM_THREADS=2 "$evb" $args --generations 60 --out "$tmp/whole" > /dev/null 2>&1
OMP_NUM_THREADS=1 mpirun -np 3 "$mpi" $args --generations 60 --out "$tmp/killed" > "$tmp/killed.out" 2> "$tmp/killed.err" &
mp=$!
for i in $(seq 100); do
  [ -f "$tmp/killed/log.jsonl" ] && [ "$(wc -l < "$tmp/killed/log.jsonl")" -ge 3 ] && break
  sleep 0.1
done
victim=$(pgrep -P $mp | sort -n | tail -1)
kill -9 "$victim"
t0=$(date +%s)
wait $mp
rc=$?
dt=$(( $(date +%s) - t0 ))
check "killing rank pid $victim ends the job (exit $rc) within 10 s ($dt s)" test "$rc" -ne 0 -a "$dt" -le 10
check "rank 0 names the checkpoint and --resume" grep -q "holds generation .*--resume" "$tmp/killed.err"
grep "holds generation" "$tmp/killed.err"
gen=$(wc -l < "$tmp/killed/log.jsonl")
check "the run stopped before its end ($gen of 60 generations logged)" [ "$gen" -lt 60 ]
OMP_NUM_THREADS=1 mpirun -np 2 "$mpi" $args --generations 60 --out "$tmp/killed" --resume > /dev/null 2> "$tmp/resume.err"
check "--resume with 2 ranks continues from the checkpoint" grep -q "resuming" "$tmp/resume.err"
check "and ends with the uninterrupted run's best.json" cmp -s "$tmp/whole/best.json" "$tmp/killed/best.json"
echo "$checks checks, $fails failed"
[ "$fails" -eq 0 ]
