#!/bin/sh
# speed.sh -- the speed targets' table: for the demo model (or --model DIR --calib TEXT --heldout TEXT), at
# speedups 1.25, 1.5 and 2 over its dense forward on this machine, EvoPress, uniform structured removal (every
# sub-block keeping the same fraction) and FLAP's global allocation, all on the same FLAP levels and the same
# measured cost table; each result's held-out KL and perplexity, and its forward timed against the dense one by
# `evobudget eval` (the achieved speedup beside the predicted one and the target).
#   experiments/speed.sh [--out DIR] [--model DIR --calib TEXT --heldout TEXT --seq-len N --batch B --name NAME]
#                        [--targets "1.25 1.5 2"] [--methods "evopress uniform flap"] [--max-tokens N]
# Environment: EVB (default ./build/evobudget), GENS (EvoPress generations; empty: search's default),
# SHARED (default ../shared/data, for the demo's held-out text). Outputs: DIR/runs/NAME-METHOD-X (run
# directories, RUN.eval.json), DIR/speed-NAME.md (the table).
set -eu
EVB=${EVB:-./build/evobudget}
SHARED=${SHARED:-../shared/data}
GENS=${GENS:-}
out=./experiments-out model=assets/demo calib=assets/demo/calib.txt held="" seq=256 batch=8 name=demo
targets="1.25 1.5 2" methods="evopress uniform flap" max_tokens=0 extra=""
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
  case $1 in
    --out) out=$2 ;; --model) model=$2 ;; --calib) calib=$2 ;; --heldout) held=$2 ;; --seq-len) seq=$2 ;;
    --batch) batch=$2 ;; --name) name=$2 ;; --targets) targets=$2 ;; --methods) methods=$2 ;;
    --max-tokens) max_tokens=$2 ;; --search-flags) extra=$2 ;;
    *) echo "$0: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift 2
done
runs="$out/runs"
mkdir -p "$runs"
if [ -z "$held" ]; then   # the demo's held-out text: the ends of Moby Dick and of tiny Shakespeare
  held="$runs/demo_heldout.txt"
  tail -c 59501 "$SHARED/text/moby-dick/moby_dick.txt" > "$held"
  tail -c 55757 "$SHARED/text/tinyshakespeare/input.txt" >> "$held"
fi
db="$runs/$name-db"
gens=""
[ -n "$GENS" ] && gens="--generations $GENS"
table="$out/speed-$name.md"
printf '| target | method | predicted | measured | calib KL | held-out KL | held-out ppl | search s |\n' > "$table"
printf '|---:|---|---:|---:|---:|---:|---:|---:|\n' >> "$table"
for x in $targets; do
  for me in $methods; do
    run="$runs/$name-$me-$x"
    echo "speed.sh: $name, $me at ${x}x" >&2
    t0=$(date +%s)
    if [ ! -f "$run/best.json" ]; then
      # shellcheck disable=SC2086
      $EVB search --model "$model" --calib "$calib" --target-speedup "$x" --method "$me" --seq-len "$seq" \
        --batch "$batch" --db "$db" --out "$run" --force $gens $extra > "$run.stdout" 2> "$run.stderr" < /dev/null ||
        { tail -n 3 "$run.stderr" >&2; exit 1; }
    fi
    t1=$(date +%s)
    mt=""
    [ "$max_tokens" != 0 ] && mt="--max-tokens $max_tokens"
    # shellcheck disable=SC2086
    $EVB eval --config "$run" --data "$held" --seq-len "$seq" --batch "$batch" $mt --json > "$run.eval.json" \
      2> "$run.eval.stderr" < /dev/null || { tail -n 3 "$run.eval.stderr" >&2; exit 1; }
    /usr/bin/python3 - "$run/best.json" "$run.eval.json" "$x" "$me" $((t1 - t0)) >> "$table" <<'PY'
import json, sys
b, e = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
s = e["speed"]
print("| %s | %s | %.3f | %.3f | %.5f | %.5f | %.3f | %s |" % (sys.argv[3], sys.argv[4], b["speedup"], s["speedup"],
      b["fitness_all"], e["kl"], e["perplexity"], sys.argv[5]))
PY
  done
done
cat "$table"
