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
/usr/bin/python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def j(n):
    return json.load(open(os.path.join(out, n)))
def t(n):
    return j(n + '.time')
print('| step | wall s | peak RSS GiB | result |')
print('|---|---:|---:|---|')
def row(step, name, result):
    x = t(name)
    print(f"| {step} | {x['seconds']:.1f} | {x['max_rss_kb'] / 2**20:.2f} | {result} |")
db = j('db.json')
row('db build gguf-rtn ' + 'Q3_K,Q4_K,Q5_K,Q6_K', 'db', f"{db['built']} levels, {int(open(os.path.join(out, 'db.bytes')).read()) / 2**30:.2f} GiB")
ed = j('eval-dense.json')
row('eval, dense (bf16 path)', 'eval-dense', f"ppl {ed['perplexity']:.1f} on {ed['tokens']} tokens")
for tb in ('3.5', '4.5'):
    s, e, x, i, n = j(f'search-{tb}.json'), j(f'eval-{tb}.json'), j(f'export-{tb}.json'), j(f'info-{tb}.json'), j(f'nll-{tb}.json')
    row(f'search EvoPress at {tb} bits', f'search-{tb}', f"fitness {s.get('fitness', float('nan')):.5f}")
    row(f'export --format gguf ({tb})', f'export-{tb}', f"{x['file_bytes'] / 2**30:.3f} GiB, linear {x['linear_bits_per_weight']:.4f} bits (all linear layers held)")
    row(f'llama.cpp loads it ({tb})', f'info-{tb}', f"llama.cpp BPW {i['bpw']:.4f}, {i['n_params'] / 1e9:.3f}B parameters")
    d = 100 * (n['ppl'] - e['perplexity']) / e['perplexity']
    row(f'llama.cpp perplexity ({tb})', f'nll-{tb}', f"{n['ppl']:.2f} (evobudget eval {e['perplexity']:.2f}, {d:+.3f}%) on {n['tokens']} tokens")
xd = j('export-dense.json')
row('export --format gguf, dense BF16', 'export-dense', f"{xd['file_bytes'] / 2**30:.3f} GiB")
for q in ('Q3_K_M', 'Q4_K_M'):
    i, n = j(f'info-{q}.json'), j(f'nll-{q}.json')
    row(f"llama.cpp's quantizer to {q}", f'quantize-{q}', f"{j(f'quantize-{q}.json')['bytes'] / 2**30:.3f} GiB, BPW {i['bpw']:.4f}, ppl {n['ppl']:.2f}")
PY
