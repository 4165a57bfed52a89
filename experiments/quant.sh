#!/bin/sh
# quant.sh -- EvoPress's quantization table: 2.25/2.5/3/4 average bits, GPTQ levels of 2..6 bits (group
# 64, asymmetric) for every method: uniform where a whole width exists, best of 32 random, and EvoPress.
# Writes quant.md and .csv into ./experiments-out (or --out DIR; --results experiments/results updates the
# committed table). Options, environment and progress lines: experiments/lib.sh.
. experiments/lib.sh
parse_models "$@"
table_begin quant
TITLE="Quantization: allocation methods at equal average bits"
NOTE="GPTQ levels of 2..6 bits, group 64, asymmetric; 64 calibration windows of the model's sequence length, seed 0. Uniform exists only at whole widths."
# steps per model: the dense model, the searches, the pictures; then the table
progress_begin $(( $(n_models) * (1 + 14 + 1) + 1 ))
while read -r name model calib held wiki seq; do
  dense "$name" "$model" "$calib" "$held" "$wiki" "$seq"
  for b in 2.25 2.5 3 4; do
    for m in uniform random evopress; do
      case $b in *.*) [ $m = uniform ] && continue ;; esac
      one "$name" "$model" "$calib" "$held" "$wiki" "$seq" "$b bits" $m --target-bits $b
    done
    surrogate_beside "$name" "$model" "$calib" "$held" "$wiki" "$seq" "$b bits" evopress --target-bits $b
  done
  picture "$name" "3 bits" quant evopress uniform random surrogate
done <<EOF
$MODELS
EOF
table_end
