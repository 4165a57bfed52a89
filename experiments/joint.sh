#!/bin/sh
# joint.sh -- the joint search (zero matrices, that is dropped sub-blocks; SparseGPT at 50..90%; GPTQ at
# 2..6 bits; dense; one choice per linear layer) against the best single-method EvoPress result at the
# same bytes: for each average width B of 2.5 and 3 bits, the GPTQ-only search runs first; its storage in
# bytes is the budget of the joint search and of a sparsity-only search of the same storage. Writes joint.md
# and .csv into ./experiments-out (or --out DIR; --results experiments/results updates the committed table).
# Options, environment and progress lines: experiments/lib.sh.
. experiments/lib.sh
parse_models "$@"
table_begin joint
TITLE="Joint search: sparsity, bits and depth in one candidate, at the bytes of the best single method"
NOTE="Per target, three EvoPress searches at the same storage of the linear layers: GPTQ only (2..6 bits, group 64, its storage fixes the bytes), SparseGPT only (the sparsity whose storage, 1 + 16 (1 - s) bits per weight, matches), and the joint search (--target-bytes). 64 calibration windows of the model's sequence length, seed 0."
# steps per model: the dense model, the searches, the pictures; then the table
progress_begin $(( $(n_models) * (1 + 2 * 3 + 1) + 1 ))
while read -r name model calib held wiki seq; do
  dense "$name" "$model" "$calib" "$held" "$wiki" "$seq"
  for b in 2.5 3; do
    label="$b bits bytes"
    one "$name" "$model" "$calib" "$held" "$wiki" "$seq" "$label" "bits only=evopress" --target-bits $b
    bits_run="$OUT/$name/$(echo "$label-bits only" | tr ' /%' '__p')"
    bytes=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['storage_bytes']))" "$bits_run/best.json")
    nlin=$($EVB info --model "$model" --json < /dev/null | python3 -c "import json,sys; j=json.load(sys.stdin); D,F,L,H,G,E=j['dim'],j['hidden_dim'],j['n_layers'],j['n_heads'],j['n_kv_heads'],j['head_dim']; print(L*(2*H*E*D+2*G*E*D+3*D*F))")
    s=$(python3 -c "print(round(1 - ($bytes * 8 / $nlin - 1) / 16, 4))")
    one "$name" "$model" "$calib" "$held" "$wiki" "$seq" "$label" "sparsity only=evopress" --target-sparsity "$s"
    one "$name" "$model" "$calib" "$held" "$wiki" "$seq" "$label" "joint=evopress" --target-bytes "$bytes"
  done
  picture "$name" "3 bits bytes" joint joint "bits only" "sparsity only"
done <<EOF
$MODELS
EOF
table_end
