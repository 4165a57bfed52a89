#!/bin/sh
# quant.sh -- EvoPress's quantization table: 2.25/2.5/3/4 average bits, GPTQ levels of 2..6 bits (group
# 64, asymmetric) for every method: uniform where a whole width exists, best of 32 random, and EvoPress.
# Writes experiments/results/quant.md and .csv. Options and environment: experiments/lib.sh.
. experiments/lib.sh
parse_models "$@"
table_begin quant
TITLE="Quantization: allocation methods at equal average bits"
NOTE="GPTQ levels of 2..6 bits, group 64, asymmetric; 64 calibration windows of the model's sequence length, seed 0. Uniform exists only at whole widths."
echo "$MODELS" | while read -r name model calib held wiki seq; do
  dense "$name" "$model" "$calib" "$held" "$wiki" "$seq"
  for b in 2.25 2.5 3 4; do
    for m in uniform random evopress; do
      case $b in *.*) [ $m = uniform ] && continue ;; esac
      one "$name" "$model" "$calib" "$held" "$wiki" "$seq" "$b bits" $m --target-bits $b
    done
  done
  picture "$name" "3 bits" quant evopress uniform random
done
table_end
