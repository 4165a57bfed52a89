#!/bin/sh
# surrogate_reach.sh -- the tokens surrogate-assisted EvoPress needs to reach plain EvoPress's final
# calibration KL, measured on that KL itself (all calibration windows, as the search's summary gives it in
# fitness_all) rather than on the noisy minibatch of log.jsonl: the surrogate run of experiments/surrogate.sh
# is repeated in steps of a twelfth of plain's tokens (--token-budget, then --resume with the next budget:
# a resumed run continues exactly as an uninterrupted one) until its fitness_all is plain's or lower, at most
# to plain's whole tokens. Run after surrogate.sh with the same --out; writes reach.tsv beside its runs, which
# surrogate_table.py reads. Options, environment and progress lines: experiments/lib.sh.
. experiments/lib.sh
GENS=default
parse_models "$@"
REACH=$OUT/reach.tsv
: > "$REACH"
progress_begin $(( $(n_models) * 6 + 1 ))
fa() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['fitness_all'])" "$1"; }
while read -r name model calib held wiki seq; do
  for t in "sparsity 50%|--target-sparsity 0.5" "sparsity 60%|--target-sparsity 0.6" "sparsity 70%|--target-sparsity 0.7" \
           "bits 2.5|--target-bits 2.5" "bits 3|--target-bits 3" "depth 40%|--target-drop 0.4"; do
    label=${t%%|*} flags=${t#*|}
    base="$OUT/$name/$(echo "$label" | tr ' /%' '__p')"
    step "$name, $label: the surrogate in twelfths of plain's tokens until it reaches plain's final calibration KL"
    ptok=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tokens'])" "$base-plain.search.json") ||
      { echo "$SCRIPT: run experiments/surrogate.sh with the same --out first" >&2; exit 1; }
    pfa=$(fa "$base-plain.search.json")
    run="$base-reach"
    profile "$name" "$model" "$calib" "$seq" "$label" $flags
    rm -rf "$run"
    k=1 resume="" reached=""
    while [ $k -le 12 ]; do
      $EVB search --model "$model" --calib "$calib" --seq-len "$seq" --calib-windows 64 --cache "$OUT/cache" \
        --method evopress --seed 0 $flags --surrogate 16 --prior "$pr_dir" --token-budget $((ptok * k / 12)) \
        $resume --out "$run" --json \
        > "$run.search.json" 2> "$run.stderr" < /dev/null || {
        # a twelfth that is less than the first generation: start at the next
        if [ -z "$resume" ] && grep -q "below what the first generation" "$run.stderr"; then rm -rf "$run"; k=$((k + 1)); continue; fi
        fail_step "the search of $name, $label, step $k" "$run.stderr"; }
      resume=--resume
      read -r f tok <<EOF3
$(python3 -c "import json,sys; d = json.load(open(sys.argv[1])); print(d['fitness_all'], d['tokens'])" "$run.search.json")
EOF3
      if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$f" "$pfa"; then reached=$tok; break; fi
      k=$((k + 1))
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$label" "$ptok" "$pfa" "${reached:--}" "$f" >> "$REACH"
  done
done <<EOF2
$MODELS
EOF2
step "done: $REACH"
