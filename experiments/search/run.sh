#!/bin/sh
# Allocation methods at equal cost on stories260K and the demo model: unstructured sparsity 50/60/70%
# (uniform, OWL, ECoFLaP, best of 32 random, EvoPress), average bits 2.5/3/4 (uniform where it exists, best
# of 32 random, EvoPress), depth 20/40% of sub-blocks (best of 32 random, ShortGPT, EvoPress). Every method
# gets the same compressor (SparseGPT for sparsity, GPTQ g64 for bits), the same calibration windows and the
# same level database; each run's best.json is then scored on held-out text (KL and perplexity).
# Writes experiments/search/results.md and results.csv; run directories (with their manifests) under $OUT.
# Run from the repository root after building; reads ../shared/data. GENS overrides EvoPress's generations
# (default: the paper's per mode).
set -eu
EVB=./build/evobudget
OUT=${OUT:-/tmp/evb_search}
SHARED=../shared/data
GENS=${GENS:-}
mkdir -p "$OUT"
start=$(date +%s)
head -c 600000 "$SHARED/text/tinystories-valid-head/tinystories_valid_head.txt" > "$OUT/stories_calib.txt"
tail -c +600001 "$SHARED/text/tinystories-valid-head/tinystories_valid_head.txt" > "$OUT/stories_heldout.txt"
tail -c 59501 "$SHARED/text/moby-dick/moby_dick.txt" > "$OUT/demo_heldout.txt"
tail -c 55757 "$SHARED/text/tinyshakespeare/input.txt" >> "$OUT/demo_heldout.txt"

one() { # name model calib heldout seq method targetflag target [extra]
  name=$1 model=$2 calib=$3 held=$4 seq=$5 method=$6 tflag=$7 target=$8; shift 8
  run="$OUT/$name/$method$tflag$target"
  if [ ! -f "$run/best.json" ]; then
    rm -rf "$run"
    g=""
    if [ "$method" = evopress ] && [ -n "$GENS" ]; then g="--generations $GENS"; fi
    t0=$(date +%s)
    $EVB search --model "$model" --calib "$calib" --seq-len "$seq" --calib-windows 64 --cache "$OUT/cache" \
      --method "$method" "$tflag" "$target" --seed 0 $g "$@" --out "$run" --json > "$run.search.json" 2> "$run.stderr"
    echo $(( $(date +%s) - t0 )) > "$run.seconds"
  fi
  $EVB eval --config "$run/best.json" --data "$held" --seq-len "$seq" --json > "$run.eval.json" 2>/dev/null
}

model_runs() { # name model calib heldout seq
  for s in 0.5 0.6 0.7; do
    for m in uniform owl ecoflap random evopress; do one "$@" $m --target-sparsity $s; done
  done
  for b in 2.5 3 4; do
    for m in uniform random evopress; do
      if [ $m = uniform ] && [ $b = 2.5 ]; then continue; fi
      one "$@" $m --target-bits $b --group-size 32
    done
  done
  for d in 0.2 0.4; do
    for m in random shortgpt evopress; do one "$@" $m --target-drop $d; done
  done
  $EVB eval --model "$2" --data "$4" --seq-len "$5" --json > "$OUT/$1/dense.eval.json" 2>/dev/null
}

mkdir -p "$OUT/stories260K" "$OUT/demo"
model_runs stories260K "$SHARED/models/stories260K/stories260K.bin" "$OUT/stories_calib.txt" "$OUT/stories_heldout.txt" 128
model_runs demo assets/demo assets/demo/calib.txt "$OUT/demo_heldout.txt" 256
end=$(date +%s)
python3 experiments/search/table.py "$OUT" $((end - start)) experiments/search/results.csv > experiments/search/results.md
cat experiments/search/results.md
