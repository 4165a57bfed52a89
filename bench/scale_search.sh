#!/usr/bin/env bash
# scale_search.sh -- what a search costs at real model sizes: the level database's build (one SparseGPT
# level, GPTQ 3-bit) with its wall time and peak memory, and one EvoPress generation at the paper's stage
# sizes, on the random-weight checkpoints of bench/scale.sh. Prints one Markdown table (see bench/README.md)
# and the projected time of a whole search from the generation's measured seconds.
#
# usage: bench/scale_search.sh [-m "d768 llama-3.2-1b"] [-t N] [--dir DIR] [--calib TEXTFILE]
#                              [--build DIR] [--schedule S] [--db-methods LIST] [-o OUTDIR]
#   -m LIST        models (make_checkpoint.py presets; default "d768 llama-3.2-1b")
#   -t N           threads (default 2)
#   --dir DIR      the checkpoints (default /tmp/evb_scale; written by bench/make_checkpoint.py when missing)
#   --calib FILE   calibration text (default ../shared/data/text/wikitext-2-raw/wiki.valid.raw)
#   --build DIR    build directory of the CLI (default build-bench; Release)
#   --schedule S   the generation's schedule, per model as MODEL=S,... or one S for all (default
#                  "d768=sparsity,llama-3.2-1b=depth-superfast"): sparsity is the paper's 64 offspring,
#                  8 @ 2,048, 2 @ 16,384, 1 @ 65,536 tokens (458,752 tokens a generation, 400 generations) at
#                  50% sparsity over magnitude levels (EvoPress's grid, 2 levels each side); superfast is its
#                  16 offspring, 1 @ 512, 1 @ 8,192 (24,576 tokens, 400 generations) over the same levels;
#                  depth-superfast the superfast schedule dropping 25% of the sub-blocks (no database: the
#                  levels of a 1B model's grid take longer to build than the generation takes to run)
#   --db-methods L the database builds timed (default "sparsegpt gptq")
#   --db-windows N calibration windows of 512 positions for the database builds (default 16)
#   -o DIR         databases, run directories and logs (default /tmp/evb_scale_search)
set -euo pipefail

cd "$(dirname "$0")/.."
MODELS="d768 llama-3.2-1b"
THREADS=2
DIR=/tmp/evb_scale
CALIB=$PWD/../shared/data/text/wikitext-2-raw/wiki.valid.raw
BUILD=build-bench
SCHEDULE="d768=sparsity,llama-3.2-1b=depth-superfast"
DBMETHODS="sparsegpt gptq"
DBWIN=16
OUT=/tmp/evb_scale_search
PY=/usr/bin/python3
die() { echo "scale_search.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { [ "$1" = -h ] || [ "$1" = --help ]; } || die "$1 needs a value (see --help)"
  case $1 in
    -m) MODELS=$2 ;; -t) THREADS=$2 ;; --dir) DIR=$2 ;; --calib) CALIB=$2 ;; --build) BUILD=$2 ;;
    --schedule) SCHEDULE=$2 ;; --db-windows) DBWIN=$2 ;; --db-methods) DBMETHODS=$2 ;; -o) OUT=$2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift 2
done
case "$THREADS$DBWIN" in ''|*[!0-9]*) die "-t and --db-windows need positive integers" ;; esac
[ -f "$CALIB" ] || die "the calibration text $CALIB is missing (WikiText-2 raw, see ../shared/data/README.md); pass --calib TEXTFILE"
mkdir -p "$OUT"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release > "$OUT/cmake.log" || die "cmake failed (see $OUT/cmake.log)"
cmake --build "$BUILD" -j2 --target evobudget-cli >> "$OUT/cmake.log" || die "the build failed (see $OUT/cmake.log)"
EVB=$BUILD/evobudget

schedule_of() { # MODEL -> sparsity|superfast
  local s
  case $SCHEDULE in *=*) ;; *) echo "$SCHEDULE"; return ;; esac
  for s in ${SCHEDULE//,/ }; do [ "${s%%=*}" = "$1" ] && { echo "${s#*=}"; return; }; done
  echo superfast
}

timed() { /usr/bin/time -f '%e %M' -o "$1" "${@:2}"; }  # OUTFILE CMD...: "wall-seconds peak-RSS-KiB"

rows=()
for m in $MODELS; do
  d=$DIR/$m
  [ -f "$d/model.safetensors" ] || $PY bench/make_checkpoint.py --shape "$m" --out "$d" || die "cannot write $d"
  for kind in $DBMETHODS; do
    case $kind in sparsegpt|gptq) ;; *) die "--db-methods: $kind is not sparsegpt or gptq" ;; esac
    db=$OUT/db-$m-$kind
    rm -rf "$db"
    if [ $kind = sparsegpt ]; then levels=(--sparsity 0.5); else levels=(--bits 3 --group-size 128); fi
    echo "== $m: db build --method $kind ${levels[*]}, $DBWIN windows of 512, $THREADS thread(s)" >&2
    OMP_NUM_THREADS=$THREADS timed "$OUT/db-$m-$kind.time" "$EVB" db build --model "$d" --calib "$CALIB" \
      --calib-windows "$DBWIN" --seq-len 512 --method $kind "${levels[@]}" --threads "$THREADS" --out "$db" \
      > "$OUT/db-$m-$kind.log" 2>&1 || die "db build on $m failed (see $OUT/db-$m-$kind.log)"
    read -r wall kib < "$OUT/db-$m-$kind.time"
    bytes=$(du -sb "$db" | cut -f1)
    rows+=("| $m | db build: $kind ${levels[*]} | $wall | $(awk -v k="$kib" 'BEGIN{printf "%.2f", k/1048576}') | $(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1073741824}') GiB on disk |")
  done

  sched=$(schedule_of "$m")
  # magnitude levels in the equal-step grid: a candidate's forward costs the same whatever its levels hold
  target=(--target-sparsity 0.5 --num-levels 2 --compressor magnitude --db "$OUT/db-$m-magnitude")
  case $sched in
    sparsity)  stages=8@2048,2@16384,1@65536; off=64; windows=128; pergen=458752 ;;
    superfast) stages=1@512,1@8192; off=16; windows=16; pergen=24576 ;;
    depth-superfast) stages=1@512,1@8192; off=16; windows=16; pergen=24576; target=(--target-drop 0.25) ;;
    *) die "unknown schedule $sched (sparsity, superfast or depth-superfast)" ;;
  esac
  run=$OUT/run-$m
  rm -rf "$run"
  echo "== $m: one EvoPress generation, $sched schedule ($off offspring, $stages), $THREADS thread(s)" >&2
  OMP_NUM_THREADS=$THREADS timed "$OUT/gen-$m.time" "$EVB" search --model "$d" --calib "$CALIB" \
    --calib-windows $windows --seq-len 512 --method evopress "${target[@]}" \
    --generations 1 --offspring $off --stages $stages --teacher topk:256 \
    --threads "$THREADS" --out "$run" --json \
    > "$OUT/gen-$m.json" 2> "$OUT/gen-$m.log" || die "the search on $m failed (see $OUT/gen-$m.log)"
  read -r wall kib < "$OUT/gen-$m.time"
  rows+=("$($PY - "$OUT/gen-$m.json" "$m" "$sched" "$pergen" "$wall" "$kib" "$THREADS" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
m, sched, pergen, wall, kib, threads = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
s = j["search_seconds"]
whole = 400 * s
print("| %s | one EvoPress generation, %s schedule (%d tokens; %d forwarded, %d evaluations) | %.1f search (%.1f process) "
      "| %.2f | 400 generations: %.1f h (%.2f core-days) |"
      % (m, sched, pergen, j["tokens"], j["evaluations"], s, wall, kib / 1048576, whole / 3600,
         whole * threads / 86400))
EOF
)")
done

echo
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS thread(s); database calibration: $DBWIN x 512 tokens."
echo
echo "| model | what | wall s | peak RSS GiB | size / projection |"
echo "|---|---|---:|---:|---|"
printf '%s\n' "${rows[@]}"
