#!/bin/sh
# depth.sh -- EvoPress's depth pruning table: 20/40% of the attention and of the MLP sub-blocks dropped,
# best of 32 random, ShortGPT (block influence) and EvoPress. Writes depth.md and .csv into ./experiments-out
# (or --out DIR; --results experiments/results updates the committed table). Options, environment and
# progress lines: experiments/lib.sh.
. experiments/lib.sh
parse_models "$@"
table_begin depth
TITLE="Depth: sub-blocks dropped"
NOTE="The same fraction of attention and of MLP sub-blocks dropped by every method; 64 calibration windows of the model's sequence length, seed 0; EvoPress's generations for depth are k(n - k)/1.5 unless GENS is set."
GENS_DEPTH=${GENS_DEPTH:-}
GENS=$GENS_DEPTH
# steps per model: the dense model, the searches, the pictures; then the table
progress_begin $(( $(n_models) * (1 + 2 * 4 + 1) + 1 ))
while read -r name model calib held wiki seq; do
  dense "$name" "$model" "$calib" "$held" "$wiki" "$seq"
  for d in 0.2 0.4; do
    for m in random shortgpt evopress; do
      one "$name" "$model" "$calib" "$held" "$wiki" "$seq" "depth $(python3 -c "print(round($d*100))")%" $m --target-drop $d
    done
    surrogate_beside "$name" "$model" "$calib" "$held" "$wiki" "$seq" "depth $(python3 -c "print(round($d*100))")%" evopress --target-drop $d
  done
  picture "$name" "depth 40%" depth evopress random shortgpt surrogate
done <<EOF
$MODELS
EOF
table_end
