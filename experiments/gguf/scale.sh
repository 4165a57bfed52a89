#!/usr/bin/env bash
# scale.sh MODEL [OUT] -- what the GGUF path costs on a 1B-shaped checkpoint (bench/make_checkpoint.py
# --shape llama-3.2-1b: random weights of Llama-3.2-1B's shapes, BF16, its tokenizer): the GGUF levels of the
# k-quant types by llama.cpp's rounding, a short EvoPress search at 3.5 and at 4.5 bits, each result exported as
# GGUF and loaded by llama.cpp, which scores the windows `evobudget eval` scores; beside them llama.cpp's own
# quantizer on the dense model (exported as BF16 GGUF) to Q3_K_M and Q4_K_M. Wall time and peak memory of every
# step (/usr/bin/time), file sizes, llama.cpp's bits per weight. Random weights make every quality number
# meaningless but the agreement between the two programs; the demo model's table (run.sh) is the quality one.
# Environment: EVB (default ./build/evobudget), JUDGE (default ./build/tests/llama_judge), TEXT (default
# ../shared/data/text/wikitext-2-raw/wiki.test.raw), GENS (default 2), OFFSPRING (default 4).
set -eu
cd "$(dirname "$0")/../.."
M=$1
OUT=${2:-experiments-out/gguf-scale}
EVB=${EVB:-./build/evobudget}
JUDGE=${JUDGE:-./build/tests/llama_judge}
TEXT=${TEXT:-../shared/data/text/wikitext-2-raw/wiki.test.raw}
GENS=${GENS:-2}
OFFSPRING=${OFFSPRING:-4}
TYPES=Q3_K,Q4_K,Q5_K,Q6_K
mkdir -p "$OUT"
C="--model $M --calib $TEXT --calib-windows 8 --seq-len 256"
timed() { # name command...: its stdout into OUT/name.json, wall seconds and peak RSS into OUT/name.time
  local name=$1; shift
  echo "scale.sh: $name ..." >&2
  /usr/bin/time -f '{"seconds": %e, "max_rss_kb": %M}' -o "$OUT/$name.time" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err" ||
    { tail -3 "$OUT/$name.err" >&2; exit 1; }
}
timed db "$EVB" db build $C --method gguf-rtn --types $TYPES --out "$OUT/db" --json
du -sb "$OUT/db" | cut -f1 > "$OUT/db.bytes"
timed eval-dense "$EVB" eval --model "$M" --data "$TEXT" --seq-len 256 --max-tokens 1020 --windows-out "$OUT/windows.txt" --json
for t in 3.5 4.5; do
  timed "search-$t" "$EVB" search $C --db "$OUT/db" --target-bits "$t" --compressor gguf-rtn --types $TYPES \
    --generations "$GENS" --offspring "$OFFSPRING" --out "$OUT/run-$t" --force --json
  timed "eval-$t" "$EVB" eval --model "$M" --config "$OUT/run-$t" --data "$TEXT" --seq-len 256 --max-tokens 1020 --json
  timed "export-$t" "$EVB" export --config "$OUT/run-$t" --format gguf --out "$OUT/run-$t.gguf" --force --json
  timed "info-$t" "$JUDGE" info "$OUT/run-$t.gguf"
  timed "nll-$t" "$JUDGE" nll "$OUT/run-$t.gguf" "$OUT/windows.txt"
  rm -f "$OUT/run-$t.gguf"
  # the same levels with the token embedding (tied: also the output) in Q6_K, as llama.cpp's _M mixes store it
  timed "exportq6-$t" "$EVB" export --config "$OUT/run-$t" --format gguf --embd-type Q6_K --out "$OUT/run-$t-q6.gguf" --force --json
  timed "infoq6-$t" "$JUDGE" info "$OUT/run-$t-q6.gguf"
  timed "nllq6-$t" "$JUDGE" nll "$OUT/run-$t-q6.gguf" "$OUT/windows.txt"
  rm -f "$OUT/run-$t-q6.gguf"
done
echo '{"units": []}' > "$OUT/dense.json"
timed export-dense "$EVB" export --config "$OUT/dense.json" --model "$M" --format gguf --dtype bf16 --out "$OUT/dense-bf16.gguf" --force --json
for q in Q3_K_M Q4_K_M; do
  timed "quantize-$q" "$JUDGE" quantize "$OUT/dense-bf16.gguf" "$OUT/$q.gguf" "$q"
  timed "info-$q" "$JUDGE" info "$OUT/$q.gguf"
  timed "nll-$q" "$JUDGE" nll "$OUT/$q.gguf" "$OUT/windows.txt"
  rm -f "$OUT/$q.gguf"
done
rm -f "$OUT/dense-bf16.gguf"
/usr/bin/python3 experiments/gguf/scale_table.py "$OUT"
