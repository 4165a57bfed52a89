#!/bin/sh
# bf16_fidelity/run.sh -- does an EvoPress search scored in BF16 find configurations as good as one scored in
# float32? Per model: one SparseGPT level database (EvoPress's equal-step grid around 60%, built in float32),
# then EvoPress searches at 60% sparsity with the same seed and settings, --compute f32 and --compute bf16
# (and, for scale, a float32 search with another seed), and each best configuration scored in float32 on
# held-out text and on all calibration windows. Writes $OUT/bf16_fidelity.md (the table) and prints it.
#
# Run from the repository root after building. Models and text splits as experiments/lib.sh: stories260K and
# the demo model by default, or one checkpoint (--model DIR --calib TEXT --heldout TEXT [--seq-len N]).
# Environment: EVB (default ./build/evobudget), OUT (default experiments-out/bf16_fidelity; each model's folder is
# removed and made anew), SHARED (default ../shared/data), GENS (generations, default 40), THREADS (default 2),
# SEED_REF (1: also the float32 search with seed 1, the search's own spread; 0: skip it; default 1).
OUT=${OUT:-experiments-out/bf16_fidelity}
GENS_FID=${GENS:-40}
. experiments/lib.sh
GENS=$GENS_FID
THREADS=${THREADS:-2}
SEED_REF=${SEED_REF:-1}
WINDOWS=64
parse_models "$@"

say() { echo "[bf16_fidelity $(date +%H:%M:%S)] $*" >&2; }
# json FILE KEY: one value of a JSON object
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

TABLE=$OUT/bf16_fidelity.md
{
  echo "| model | search | seconds | fitness (own precision, last batch) | calib KL (f32, all windows) | held-out KL (f32) | held-out ppl | vs f32 seed 0 |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
} > "$TABLE"
echo "$MODELS" | while read -r name model calib held wiki seq; do
  dir=$OUT/$name
  rm -rf "$dir"; mkdir -p "$dir"
  say "$name: level database (sparsegpt, equal-step grid around 0.6, 8 levels each side, $WINDOWS windows of $seq, float32)"
  t0=$(date +%s)
  $EVB db build --model "$model" --calib "$calib" --seq-len "$seq" --calib-windows $WINDOWS --method sparsegpt \
    --step-target 0.6 --compute f32 --threads "$THREADS" --out "$dir/db" --json > "$dir/db.json" 2> "$dir/db.stderr"
  say "$name: database built in $(( $(date +%s) - t0 )) s"
  runs="f32-seed0 bf16-seed0"
  [ "$SEED_REF" = 1 ] && runs="$runs f32-seed1"
  for run in $runs; do
    compute=${run%-seed*} seed=${run#*-seed}
    say "$name: EvoPress, 60% sparsity, $GENS generations, --compute $compute --seed $seed"
    t0=$(date +%s)
    $EVB search --model "$model" --calib "$calib" --seq-len "$seq" --calib-windows $WINDOWS --db "$dir/db" \
      --method evopress --target-sparsity 0.6 --generations "$GENS" --seed "$seed" --threads "$THREADS" \
      --compute "$compute" --out "$dir/$run" --json > "$dir/$run.search.json" 2> "$dir/$run.stderr"
    echo $(( $(date +%s) - t0 )) > "$dir/$run.seconds"
    say "$name: $run done in $(cat "$dir/$run.seconds") s (fitness $(json "$dir/$run.search.json" fitness)); scoring it in float32"
    $EVB eval --compute f32 --config "$dir/$run/best.json" --data "$held" --seq-len "$seq" --threads "$THREADS" \
      --json > "$dir/$run.heldout.json" 2>/dev/null
    $EVB eval --compute f32 --config "$dir/$run/best.json" --data "$calib" --seq-len "$seq" --calib-windows $WINDOWS \
      --threads "$THREADS" --json > "$dir/$run.calib.json" 2>/dev/null
    say "$name: $run held-out KL $(json "$dir/$run.heldout.json" kl)"
  done
  python3 - "$dir" "$name" "$runs" "$GENS" >> "$TABLE" <<'EOF'
import json, sys
d, name, runs, gens = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]
def load(p): return json.load(open(p))
ref = load(f"{d}/f32-seed0.heldout.json")["kl"]
lv0 = [u["level"] for u in load(f"{d}/f32-seed0/best.json")["units"]]
for r in runs:
    s, h, c = load(f"{d}/{r}.search.json"), load(f"{d}/{r}.heldout.json"), load(f"{d}/{r}.calib.json")
    lv = [u["level"] for u in load(f"{d}/{r}/best.json")["units"]]
    diff = sum(a != b for a, b in zip(lv, lv0))
    rel = "" if r == "f32-seed0" else f"{100 * (h['kl'] - ref) / ref:+.2f}% ({diff}/{len(lv)} units differ)"
    sec = open(f"{d}/{r}.seconds").read().strip()
    print(f"| {name} | {r}, {gens} gen. | {sec} | {s['fitness']:.5f} | {c['kl']:.5f} | {h['kl']:.5f} | {h['perplexity']:.3f} | {rel} |")
EOF
done
cat "$TABLE"
