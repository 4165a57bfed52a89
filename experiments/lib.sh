# lib.sh -- what the table scripts of experiments/ share: the models and their data splits, one search run
# and its held-out evaluation, the table. Sourced by experiments/<table>.sh, run from the repository root
# after building.
#
# Models: by default stories260K (../shared/data) and the demo model (assets/demo). Or one Hugging Face
# Llama-family checkpoint:   --model DIR --calib TEXT --heldout TEXT [--wiki TEXT] [--seq-len N] [--name NAME]
# Environment: EVB (default ./build/evobudget), OUT (run directories and level databases, default
# /tmp/evb_experiments), SHARED (default ../shared/data), GENS (EvoPress generations; empty: the paper's
# per mode), WIKI_TOKENS (tokens of WikiText-2 test scored, default 16384).
set -eu
EVB=${EVB:-./build/evobudget}
OUT=${OUT:-/tmp/evb_experiments}
SHARED=${SHARED:-../shared/data}
GENS=${GENS:-}
WIKI_TOKENS=${WIKI_TOKENS:-16384}
RESULTS=experiments/results
mkdir -p "$OUT" "$RESULTS"

# MODELS: lines "name model calib heldout wiki seq_len"
MODELS=""
parse_models() {
  m="" calib="" held="" wiki="$SHARED/text/wikitext-2-raw/wiki.test.raw" seq=512 name=""
  while [ $# -gt 0 ]; do
    case $1 in
      --model) m=$2; shift 2 ;; --calib) calib=$2; shift 2 ;; --heldout) held=$2; shift 2 ;;
      --wiki) wiki=$2; shift 2 ;; --seq-len) seq=$2; shift 2 ;; --name) name=$2; shift 2 ;;
      *) echo "$0: unknown option '$1' (hint: --model DIR --calib TEXT --heldout TEXT [--wiki TEXT] [--seq-len N] [--name NAME])" >&2; exit 2 ;;
    esac
  done
  if [ -n "$m" ]; then
    [ -n "$calib" ] && [ -n "$held" ] || { echo "$0: --model needs --calib TEXT and --heldout TEXT" >&2; exit 2; }
    MODELS="${name:-$(basename "$m")} $m $calib $held $wiki $seq"
    return
  fi
  # the two small models: calibration and held-out text from their own domains
  tiny=$SHARED/text/tinystories-valid-head/tinystories_valid_head.txt
  head -c 600000 "$tiny" > "$OUT/stories_calib.txt"
  tail -c +600001 "$tiny" > "$OUT/stories_heldout.txt"
  tail -c 59501 "$SHARED/text/moby-dick/moby_dick.txt" > "$OUT/demo_heldout.txt"
  tail -c 55757 "$SHARED/text/tinyshakespeare/input.txt" >> "$OUT/demo_heldout.txt"
  MODELS="stories260K $SHARED/models/stories260K/stories260K.bin $OUT/stories_calib.txt $OUT/stories_heldout.txt $wiki 128
demo assets/demo assets/demo/calib.txt $OUT/demo_heldout.txt $wiki 256"
}

# Appends to $OUT/$TABLE.tsv a row per run: model, target label, method, run directory.
TSV=""
table_begin() { TABLE=$1; TSV=$OUT/$TABLE.tsv; : > "$TSV"; }

# one NAME MODEL CALIB HELDOUT WIKI SEQ LABEL METHOD [search flags...]: a search (skipped when its
# best.json exists), then its best configuration scored on the search's calibration windows, on the held-out
# text and on WikiText-2 (the search and the evaluations timed apart). METHOD may
# be ROW=METHOD to name the table's row apart from the search method.
one() {
  name=$1 model=$2 calib=$3 held=$4 wiki=$5 seq=$6 label=$7 method=${8#*=} row=${8%%=*}; shift 8
  run="$OUT/$name/$(echo "$label-$row" | tr ' /%' '__p')"
  mkdir -p "$OUT/$name"
  if [ ! -f "$run/best.json" ]; then
    rm -rf "$run"
    g=""
    if [ "$method" = evopress ] && [ -n "$GENS" ]; then g="--generations $GENS"; fi
    t0=$(date +%s)
    $EVB search --model "$model" --calib "$calib" --seq-len "$seq" --calib-windows 64 --cache "$OUT/cache" \
      --method "$method" --seed 0 $g "$@" --out "$run" --json > "$run.search.json" 2> "$run.stderr"
    echo $(( $(date +%s) - t0 )) > "$run.seconds"
  fi
  t0=$(date +%s)
  $EVB eval --config "$run/best.json" --data "$calib" --seq-len "$seq" --calib-windows 64 --json > "$run.calib.json" 2>/dev/null
  $EVB eval --config "$run/best.json" --data "$held" --seq-len "$seq" --json > "$run.eval.json" 2>/dev/null
  if [ -f "$wiki" ]; then $EVB eval --config "$run/best.json" --data "$wiki" --seq-len "$seq" --max-tokens "$WIKI_TOKENS" --json > "$run.wiki.json" 2>/dev/null; fi
  echo $(( $(date +%s) - t0 )) > "$run.eval_seconds"
  printf '%s\t%s\t%s\t%s\n' "$name" "$label" "$row" "$run" >> "$TSV"
}

# The dense model on the same texts.
dense() {
  name=$1 model=$2 held=$4 wiki=$5 seq=$6
  mkdir -p "$OUT/$name"
  [ -f "$OUT/$name/dense.eval.json" ] || $EVB eval --model "$model" --data "$held" --seq-len "$seq" --json > "$OUT/$name/dense.eval.json" 2>/dev/null
  if [ -f "$wiki" ] && [ ! -f "$OUT/$name/dense.wiki.json" ]; then
    $EVB eval --model "$model" --data "$wiki" --seq-len "$seq" --max-tokens "$WIKI_TOKENS" --json > "$OUT/$name/dense.wiki.json" 2>/dev/null
  fi
}

# Writes experiments/results/$TABLE.md and .csv and the manifests of every run; TITLE and NOTE describe it.
table_end() {
  python3 experiments/table.py "$TSV" "$OUT" "$RESULTS" "$TABLE" "$TITLE" "$NOTE" "${GENS:-paper}"
  cat "$RESULTS/$TABLE.md"
}

# picture NAME LABEL KIND ROW [baseline rows...]: `evobudget plot` of one run with the baselines as
# labelled points, copied to experiments/results/pictures/KIND-NAME-*.png
picture() {
  name=$1 label=$2 kind=$3 main=$4; shift 4
  run="$OUT/$name/$(echo "$label-$main" | tr ' /%' '__p')"
  with=""
  for b in "$@"; do with="$with${with:+,}$OUT/$name/$(echo "$label-$b" | tr ' /%' '__p')"; done
  $EVB plot "$run" ${with:+--with "$with"} > /dev/null
  mkdir -p "$RESULTS/pictures"
  for p in front profile convergence; do cp "$run/$p.png" "$RESULTS/pictures/$kind-$name-$p.png"; done
}
