#!/bin/sh
# sensitivity.sh -- the sensitivity profiles of the experiments' models (`evobudget sensitivity`: every unit at
# every level alone, the rest dense) for the levels of sparsity 60%, 3 bits and depth 40%, on 4096
# calibration tokens; the heat maps and CSVs into RESULTS/sensitivity/ and a table of what each cost.
# Options, environment and progress lines: experiments/lib.sh.
. experiments/lib.sh
parse_models "$@"
progress_begin $(( $(n_models) * 3 ))
mkdir -p "$RESULTS/sensitivity"
rows=""
while read -r name model calib held wiki seq; do
  for t in "sparsity_60p|--target-sparsity 0.6" "bits_3|--target-bits 3" "depth_40p|--target-drop 0.4"; do
    label=${t%%|*} flags=${t#*|}
    dir="$OUT/$name/sensitivity-$label"
    step "$name, $label: the profile ($dir)"
    rm -rf "$dir"
    $EVB sensitivity --model "$model" --calib "$calib" --seq-len "$seq" --calib-windows 64 --cache "$OUT/cache" $flags \
      --max-tokens 4096 --out "$dir" --json > "$dir.json" 2> "$dir.stderr" < /dev/null || fail_step "the profile of $name, $label" "$dir.stderr"
    $EVB plot "$dir" > /dev/null < /dev/null || fail_step "the picture of $name, $label" "$dir/plots/plot.log"
    cp "$dir/sensitivity.png" "$RESULTS/sensitivity/$name-$label.png"
    cp "$dir/sensitivity.csv" "$RESULTS/sensitivity/$name-$label.csv"
    rows="$rows$name $label $dir.json
"
  done
done <<EOF2
$MODELS
EOF2
printf '%s' "$rows" | python3 -c '
import json, sys
print("| model | levels of | units | levels | tokens scored | seconds |")
print("|---|---|---:|---:|---:|---:|")
for line in sys.stdin:
    name, label, path = line.split()
    d = json.load(open(path))
    print("| %s | %s | %d | %d | %s | %.1f |" % (name, label, d["units"], d["levels"], "{:,}".format(d["tokens"]), d["seconds"]))
' > "$RESULTS/sensitivity/cost.md"
cat "$RESULTS/sensitivity/cost.md"
