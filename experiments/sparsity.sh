#!/bin/sh
# sparsity.sh -- EvoPress's unstructured sparsity table: 50/60/70% average sparsity, SparseGPT levels for
# every method, uniform, OWL (lambda x M grid), ECoFLaP (zeroth-order block scores), best of 32 random, and
# EvoPress. Writes sparsity.md and .csv into ./experiments-out (or --out DIR; --results experiments/results
# updates the committed table). Options, environment and progress lines: experiments/lib.sh.
. experiments/lib.sh
parse_models "$@"
table_begin sparsity
TITLE="Unstructured sparsity: allocation methods at equal sparsity"
NOTE="SparseGPT levels (EvoPress's equal-step grid around the target for uniform, random and EvoPress; per-block fractions for OWL and ECoFLaP), 64 calibration windows of the model's sequence length, seed 0."
# steps per model: the dense model, the searches, the pictures; then the table
progress_begin $(( $(n_models) * (1 + 3 * 6 + 1) + 1 ))
while read -r name model calib held wiki seq; do
  dense "$name" "$model" "$calib" "$held" "$wiki" "$seq"
  for s in 0.5 0.6 0.7; do
    label="sparsity $(python3 -c "print(round($s*100))")%"
    for m in uniform owl ecoflap random evopress; do
      one "$name" "$model" "$calib" "$held" "$wiki" "$seq" "$label" $m --target-sparsity $s
    done
    surrogate_beside "$name" "$model" "$calib" "$held" "$wiki" "$seq" "$label" evopress --target-sparsity $s
  done
  picture "$name" "sparsity 60%" sparsity evopress uniform owl ecoflap random surrogate
done <<EOF
$MODELS
EOF
table_end
