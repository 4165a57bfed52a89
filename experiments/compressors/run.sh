#!/bin/sh
# Compressor comparison on stories260K and the demo model: per-layer relative reconstruction error and
# held-out perplexity / KL of uniformly compressed models, for magnitude, Wanda and SparseGPT at 50% and
# 70% unstructured sparsity, and RTN against GPTQ at 3 bits (group 64); SparseGPT and GPTQ calibrated on the
# dense model's inputs against calibrated sequentially. Writes
# experiments/compressors/results.md (and the raw JSON under $OUT). Run from the repository root after
# building (cmake --build build); reads ../shared/data.
set -eu
EVB=./build/evobudget
OUT=${OUT:-/tmp/evb_compressors}
SHARED=../shared/data
mkdir -p "$OUT"
start=$(date +%s)

# Held-out text that no calibration window comes from:
#   stories260K: calibration from the first 600,000 bytes of the TinyStories head, held out: the rest;
#   demo model: calibration from its own samples (assets/demo/calib.txt), held out: the last 5% of Moby
#   Dick and of Tiny Shakespeare (the model card's held-out split).
head -c 600000 "$SHARED/text/tinystories-valid-head/tinystories_valid_head.txt" > "$OUT/stories_calib.txt"
tail -c +600001 "$SHARED/text/tinystories-valid-head/tinystories_valid_head.txt" > "$OUT/stories_heldout.txt"
tail -c 59501 "$SHARED/text/moby-dick/moby_dick.txt" > "$OUT/demo_heldout.txt"
tail -c 55757 "$SHARED/text/tinyshakespeare/input.txt" >> "$OUT/demo_heldout.txt"

run_model() { # name model calib heldout seq
  name=$1 model=$2 calib=$3 held=$4 seq=$5
  db="$OUT/db-$name"
  for m in magnitude wanda sparsegpt; do
    $EVB db build --model "$model" --calib "$calib" --method $m --sparsity 0.5,0.7 --seq-len "$seq" --calib-windows 64 --out "$db" --json > "$OUT/build-$name-$m.json"
  done
  for m in rtn gptq; do
    $EVB db build --model "$model" --calib "$calib" --method $m --bits 3 --group-size 64 --seq-len "$seq" --calib-windows 64 --out "$db" --json > "$OUT/build-$name-$m.json"
  done
  # The sequential protocol (block by block through the compressed blocks before, as SparseGPT and GPTQ
  # calibrate), passing on the level being evaluated: one database per level passed on.
  for lv in 0.5 0.7; do
    $EVB db build --model "$model" --calib "$calib" --method sparsegpt --sparsity $lv --protocol sequential --seq-len "$seq" --calib-windows 64 --out "$db-seq-$lv" --json > "$OUT/build-$name-seq-$lv.json"
    $EVB eval --model "$model" --data "$held" --seq-len "$seq" --db "$db-seq-$lv" --method sparsegpt --uniform-sparsity $lv --json > "$OUT/eval-$name-seq-sparsegpt-$lv.json"
  done
  $EVB db build --model "$model" --calib "$calib" --method gptq --bits 3 --group-size 64 --protocol sequential --seq-len "$seq" --calib-windows 64 --out "$db-seq-3" --json > "$OUT/build-$name-seq-3.json"
  $EVB eval --model "$model" --data "$held" --seq-len "$seq" --db "$db-seq-3" --method gptq --uniform-bits 3 --group-size 64 --json > "$OUT/eval-$name-seq-gptq-3.json"
  $EVB db info "$db" --levels --json > "$OUT/levels-$name.json"
  $EVB eval --model "$model" --data "$held" --seq-len "$seq" --json > "$OUT/eval-$name-dense.json"
  for m in magnitude wanda sparsegpt; do
    for s in 0.5 0.7; do
      $EVB eval --model "$model" --data "$held" --seq-len "$seq" --db "$db" --method $m --uniform-sparsity $s --json > "$OUT/eval-$name-$m-$s.json"
    done
  done
  for m in rtn gptq; do
    $EVB eval --model "$model" --data "$held" --seq-len "$seq" --db "$db" --method $m --uniform-bits 3 --group-size 64 --json > "$OUT/eval-$name-$m-3.json"
  done
}

run_model stories260K "$SHARED/models/stories260K/stories260K.bin" "$OUT/stories_calib.txt" "$OUT/stories_heldout.txt" 256
run_model demo assets/demo assets/demo/calib.txt "$OUT/demo_heldout.txt" 256
end=$(date +%s)
python3 experiments/compressors/table.py "$OUT" $((end - start)) > experiments/compressors/results.md
cat experiments/compressors/results.md
