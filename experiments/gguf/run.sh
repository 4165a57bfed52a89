#!/usr/bin/env bash
# run.sh -- searched GGUF files against llama.cpp's own, judged by llama.cpp. On the demo model: GGUF levels of
# every block type by llama.cpp's rounding (gguf-rtn) and by GPTQ into each type's grid (gguf); EvoPress at 3.5
# average bits (as asked), at 3.4375 and 4.5 (exactly uniform Q3_K's and Q4_K's sizes), over both; each result
# exported with `export --format gguf`. Beside them, llama.cpp's quantizer on the dense model exported in F32:
# uniform Q3_K and Q4_K (--pure, the embedding kept F16 as evobudget keeps it: the same size as the searched
# files at 3.4375 and 4.5) and its own mixes Q3_K_S/M, Q4_K_S/M. Every file is loaded by llama.cpp
# (tests/tools/llama_judge), which scores the held-out windows `evobudget eval` scored, and reports its bits per
# weight; evobudget's perplexity of the same configuration beside it. Calibration: the first nine tenths of
# assets/demo/calib.txt; held-out: the last tenth. Everything runs on the float32 path (--compute f32), so the
# levels quantize the checkpoint's own float32 values, as llama.cpp's quantizer does.
# usage: experiments/gguf/run.sh [OUT] (default experiments-out/gguf); writes OUT/results.md and OUT/*.json.
# Environment: EVB (default ./build/evobudget), JUDGE (default ./build/tests/llama_judge), SEED (default 0),
# GENS (EvoPress generations; default: the bits default, 50).
set -eu
cd "$(dirname "$0")/../.."
EVB=${EVB:-./build/evobudget}
JUDGE=${JUDGE:-./build/tests/llama_judge}
OUT=${1:-experiments-out/gguf}
SEED=${SEED:-0}
GENS=${GENS:-}
[ -x "$JUDGE" ] || { echo "run.sh: no llama.cpp judge at $JUDGE (hint: ./setup.sh, then build)" >&2; exit 1; }
mkdir -p "$OUT"
/usr/bin/python3 - "$OUT" <<'PY'
import sys
t = open('assets/demo/calib.txt', encoding='utf-8').read()
cut = t.index('\n', int(len(t) * 0.9)) + 1
open(sys.argv[1] + '/calib90.txt', 'w', encoding='utf-8').write(t[:cut])
open(sys.argv[1] + '/heldout10.txt', 'w', encoding='utf-8').write(t[cut:])
PY
C="--model assets/demo --calib $OUT/calib90.txt --compute f32"
EV="--model assets/demo --compute f32"
t0=$(date +%s)
for m in gguf-rtn gguf; do
  echo "run.sh: db build --method $m ..." >&2
  s=$(date +%s)
  "$EVB" db build $C --method $m --out "$OUT/db" --json > "$OUT/db-$m.json" 2> "$OUT/db-$m.err"
  echo $(( $(date +%s) - s )) > "$OUT/db-$m.seconds"
done
"$EVB" db info "$OUT/db" --levels --json > "$OUT/db-levels.json"
# name: a run directory (search) or a GGUF file made by llama.cpp; each scored by eval (ours) and the judge
judge() { # name file: llama.cpp's bits per weight, perplexity, and KL from the dense model (F32 file)
  "$JUDGE" info "$2" > "$OUT/$1.info.json"
  "$JUDGE" nll "$2" "$OUT/windows.txt" > "$OUT/$1.nll.json"
  "$JUDGE" kl "$2" "$OUT/dense-f32.gguf" "$OUT/windows.txt" > "$OUT/$1.kl.json"
}
# linear bits of a llama.cpp file: the stored bits per weight of the layers the types hold (all but ffn_down)
linear_bits() {
  /usr/bin/python3 -c 'import json, sys
b = n = 0
for t in json.load(open(sys.argv[1]))["tensors"]:
    if t["name"].startswith("blk.") and len(t["ne"]) == 2 and not t["name"].endswith("ffn_down.weight"):
        b += 8 * t["bytes"]; n += t["ne"][0] * t["ne"][1]
print(round(b / n, 4))' "$OUT/$1.info.json"
}
search() { # name compressor target [method [types]]
  local name=$1 comp=$2 target=$3 method=${4:-evopress} types=${5:-}
  echo "run.sh: $name ..." >&2
  local s=$(date +%s)
  "$EVB" search $C --db "$OUT/db" --target-bits "$target" --compressor "$comp" --method "$method" ${types:+--types $types} ${GENS:+--generations $GENS} \
    --seed "$SEED" --out "$OUT/$name" --force --json > "$OUT/$name.search.json" 2> "$OUT/$name.search.err" ||
    { tail -3 "$OUT/$name.search.err" >&2; exit 1; }
  echo $(( $(date +%s) - s )) > "$OUT/$name.seconds"
  "$EVB" eval $EV --config "$OUT/$name" --data "$OUT/heldout10.txt" --windows-out "$OUT/windows.txt" --json > "$OUT/$name.eval.json"
  "$EVB" export --config "$OUT/$name" --format gguf --out "$OUT/$name.gguf" --force --json > "$OUT/$name.export.json"
  judge "$name" "$OUT/$name.gguf"
  # the same configuration with the embedding in Q6_K, as llama.cpp's own mixes have it
  "$EVB" export --config "$OUT/$name" --format gguf --embd-type Q6_K --out "$OUT/$name-e6.gguf" --force --json > "$OUT/$name-e6.export.json"
  judge "$name-e6" "$OUT/$name-e6.gguf"
}
echo '{"model": "assets/demo", "units": []}' > "$OUT/dense.json"
"$EVB" eval $EV --data "$OUT/heldout10.txt" --windows-out "$OUT/windows.txt" --json > "$OUT/dense.eval.json"
"$EVB" export --config "$OUT/dense.json" --model assets/demo --format gguf --dtype f32 --out "$OUT/dense-f32.gguf" --force --json > "$OUT/dense.export.json"
judge dense "$OUT/dense-f32.gguf"
"$EVB" export --config "$OUT/dense.json" --model assets/demo --format gguf --out "$OUT/dense-f16.gguf" --force --json > /dev/null
judge dense-f16 "$OUT/dense-f16.gguf"
for q in "Q3_K_S pure Q3_K" "Q4_K_S pure Q4_K" "Q3_K_S" "Q3_K_M" "Q4_K_S" "Q4_K_M"; do
  set -- $q
  name="llama-${3:-$1}"
  [ "${2:-}" = pure ] && args="--pure --embd-type f16" || args=""
  "$JUDGE" quantize "$OUT/dense-f32.gguf" "$OUT/$name.gguf" "$1" $args > /dev/null
  judge "$name" "$OUT/$name.gguf"
done
search uniform-rtn-Q3_K gguf-rtn 3.4375 uniform Q3_K
search uniform-rtn-Q4_K gguf-rtn 4.5 uniform Q4_K
search uniform-gptq-Q3_K gguf 3.4375 uniform Q3_K
search uniform-gptq-Q4_K gguf 4.5 uniform Q4_K
for t in 3.4375 3.5 4.5; do
  search "evopress-rtn-$t" gguf-rtn "$t"
  search "evopress-gptq-$t" gguf "$t"
done
# at the linear bits of llama.cpp's Q3_K_M and Q4_K_M (with the Q6_K embedding: their sizes)
for q in Q3_K_M Q4_K_M; do
  t=$(linear_bits "llama-$q")
  search "evopress-gptq-at-$q" gguf "$t"
done
echo $(( $(date +%s) - t0 )) > "$OUT/total.seconds"
/usr/bin/python3 experiments/gguf/table.py "$OUT" > "$OUT/results.md"
echo "run.sh: $OUT/results.md" >&2
