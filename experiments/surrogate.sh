#!/bin/sh
# surrogate.sh -- fewer tokens per answer: plain EvoPress at its defaults against surrogate-assisted EvoPress
# (a sensitivity profile of 256 tokens a level as the model's prior and the start, --prior; then --surrogate
# 16: a quarter of the offspring scored, half of them the best of 16 times as many proposals by the additive
# model fitted on every candidate scored so far, half at random) stopped by --token-budget at a third of the
# tokens plain scored, the profile's included, at sparsity 50/60/70%, 2.5 and 3 bits and depth 40%; plain
# EvoPress stopped at the same third ("third") beside them says what the surrogate adds at equal tokens.
# Writes surrogate.md and .csv into ./experiments-out (or --out DIR; --results experiments/results updates
# the committed table). Options, environment and progress lines: experiments/lib.sh.
. experiments/lib.sh
GENS=default
parse_models "$@"
table_begin surrogate
progress_begin $(( $(n_models) * (1 + 3 * 6) + 1 ))
while read -r name model calib held wiki seq; do
  dense "$name" "$model" "$calib" "$held" "$wiki" "$seq"
  for t in "sparsity 50%|--target-sparsity 0.5" "sparsity 60%|--target-sparsity 0.6" "sparsity 70%|--target-sparsity 0.7" \
           "bits 2.5|--target-bits 2.5" "bits 3|--target-bits 3" "depth 40%|--target-drop 0.4"; do
    label=${t%%|*} flags=${t#*|}
    one "$name" "$model" "$calib" "$held" "$wiki" "$seq" "$label" plain=evopress $flags
    budget=$(third_tokens "$name" "$label" plain) || exit 1
    # (depth: a third of plain's tokens is less than its first generation, the random initial population
    # included, so plain cannot stop there; the surrogate scores a quarter of that population)
    case $label in depth*) step "$name, $label, third: none (below plain's first generation)" ;;
      *) one "$name" "$model" "$calib" "$held" "$wiki" "$seq" "$label" third=evopress $flags --token-budget "$budget" ;; esac
    surrogate_beside "$name" "$model" "$calib" "$held" "$wiki" "$seq" "$label" plain $flags
  done
done <<EOF2
$MODELS
EOF2
step "the table: $RESULTS/surrogate.md"
python3 experiments/surrogate_table.py "$TSV" "$OUT" "$RESULTS"
cat "$RESULTS/surrogate.md"
