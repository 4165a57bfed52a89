#!/usr/bin/env bash
# run.sh -- builds bench_forward, runs it and bench/torch_forward.py with 1 thread and then 2 threads, and
# prints one Markdown table (see bench/README.md).
#
# usage: bench/run.sh [-r REPS] [-t "THREAD COUNTS"] [-m MODELS] [-o OUTDIR]
#   -r REPS   timed runs per model (default 5; the models over 10M parameters use min(REPS, 3))
#   -t LIST   thread counts, run in this order (default "1 2")
#   -m LIST   comma-separated subset of stories260K,demo,rand768,rand512 (default: all)
#   -o DIR    where the JSON results and logits dumps go (default /tmp/evb_bench_run)
# OPENBLAS_CORETYPE, when set, is passed through to both programs (they load the same OpenBLAS). When it is
# not set and OpenBLAS falls back to generic kernels on this CPU, the kernels evobudget picks for itself
# (evb_blas_fix_core) are exported for both, so that PyTorch runs on the same sgemm.
set -euo pipefail

cd "$(dirname "$0")/.."
REPS=5
THREADS="1 2"
MODELS="stories260K,demo,rand768,rand512"
OUT=/tmp/evb_bench_run
while getopts "r:t:m:o:h" opt; do
  case $opt in
    r) REPS=$OPTARG ;;
    t) THREADS=$OPTARG ;;
    m) MODELS=$OPTARG ;;
    o) OUT=$OPTARG ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
  esac
done
PY=/usr/bin/python3
mkdir -p "$OUT"

if [ ! -f build/CMakeCache.txt ]; then cmake -S . -B build; fi
cmake --build build --target bench_forward -j2
BENCH=build/bench/bench_forward
cmake --build build --target evobudget-cli -j2
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  core=$(./build/evobudget info --model ../shared/data/models/stories260K/stories260K.bin --json 2>/dev/null |
         $PY -c 'import json,sys; print(json.load(sys.stdin)["blas_core"])' 2>/dev/null || true)
  [ -n "$core" ] && export OPENBLAS_CORETYPE="$core"
fi

first=1
for n in $THREADS; do
  echo "== $n thread(s): engine" >&2
  cut -d' ' -f1-3 /proc/loadavg > "$OUT/loadavg-$n.txt"
  dump=()
  if [ $first = 1 ]; then dump=(--dump "$OUT/logits"); fi
  OMP_NUM_THREADS=$n "$BENCH" --models "$MODELS" --reps "$REPS" "${dump[@]}" --json > "$OUT/engine-$n.json"
  echo "== $n thread(s): PyTorch" >&2
  check=()
  if [ $first = 1 ]; then check=(--engine-logits "$OUT/logits"); fi
  OMP_NUM_THREADS=$n OPENBLAS_NUM_THREADS=$n $PY bench/torch_forward.py --models "$MODELS" --reps "$REPS" \
    --threads "$n" "${check[@]}" --json > "$OUT/torch-$n.json"
  first=0
done

$PY - "$OUT" $THREADS <<'EOF'
import json, os, subprocess, sys, time
out, threads = sys.argv[1], sys.argv[2:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rows, checks, breakdown = [], [], []
for n in threads:
    e = json.load(open(os.path.join(out, "engine-%s.json" % n)))
    t = {m["name"]: m for m in json.load(open(os.path.join(out, "torch-%s.json" % n)))["models"]}
    core = e.get("openblas_core", "?")
    for m in e["models"]:
        p = t.get(m["name"], {"skipped": True})
        if m["skipped"]:
            rows.append("| %s | %s | skipped: %s | | | | | |" % (n, m["name"], m["note"]))
            continue
        pt = p.get("tok_s") if not p.get("skipped") else None
        rows.append("| %s | %s | %.0f | %.1f | %.1f | %.2f | %s | %s |" % (
            n, m["name"], m["tok_s"], m["gemm_gflops"], m["limit_gflops"], m["fraction"],
            "%.0f" % pt if pt else "-", "%.2f" % (m["tok_s"] / pt) if pt else "-"))
        breakdown.append("| %s | %s | %.3f | %.3f | %.3f (%.3f) | %.3f (%.3f) | %.3f (%.3f) | %.3f | %.3f |" % (
            n, m["name"], m["step_s"], m["blocks_s"], m["proj_engine_s"], m["proj_limit_s"],
            m["blocks_s"] - m["proj_engine_s"], m["attn_limit_s"], m["logits_s"], m["cls_limit_s"],
            m["log_softmax_s"], m["kl_s"]))
        c = p.get("engine_logits_check")
        if c:
            checks.append("- %s: max |PyTorch - engine| = %.2g at position 0, %.2g over the %d positions of sequence 0 "
                          "(max |logit| %.3g)" % (m["name"], c["max_abs_diff_pos0"], c["max_abs_diff_all"],
                                                  c["positions"], c["max_abs_logit"]))
        if m.get("ref_logits0_max_diff", -1) >= 0 and n == threads[0]:
            checks.append("- %s: max |engine - llama2.c reference (SOURCE.md)| = %.2g at position 0, ids 0..7"
                          % (m["name"], m["ref_logits0_max_diff"]))
print("## Forward benchmark, %s\n" % time.strftime("%Y-%m-%d"))
print("%s; batch %d x %d tokens; OpenBLAS core %s; engine = evobudget forward + log-softmax + KL, "
      "PyTorch = the same in torch %s; medians.\n" % (cpu, e["batch"], e["seq"], core,
                                                   json.load(open(os.path.join(out, "torch-%s.json" % threads[0])))["engine"].split()[-1]))
print("| threads | model | engine tok/s | engine GEMM GFLOP/s | sgemm limit GFLOP/s | fraction of limit | PyTorch tok/s | engine/PyTorch |")
print("|---:|---|---:|---:|---:|---:|---:|---:|")
print("\n".join(rows))
print("\nLoad average (1, 5, 15 min) when each pass started, including other users of the machine: " +
      "; ".join("%s thread(s): %s" % (n, open(os.path.join(out, "loadavg-%s.txt" % n)).read().strip()) for n in threads) + ".")
print("\nGEMM FLOPs: %s. sgemm limit: the same FLOPs at the rate of one single-threaded cblas_sgemm per thread, "
      "running concurrently, on each shape (M = %d rows, W in nn.Linear layout; full T x T products for attention)."
      % (e["flops_formula"], e["limit_rows"]))
print("\nEngine step time, seconds (in brackets: the same FLOPs at the sgemm limit):\n")
print("| threads | model | step | blocks | projections alone | blocks minus projections (attention) | classifier | log-softmax | KL |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
print("\n".join(breakdown))
if checks:
    print("\nLogits checks:\n")
    print("\n".join(checks))
EOF
