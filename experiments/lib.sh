# lib.sh -- what the table scripts of experiments/ share: the models and their data splits, one search run
# and its held-out evaluation, the table, and progress lines. Sourced by experiments/<table>.sh, run from the
# repository root after building.
#
# Models: by default stories260K (../shared/data) and the demo model (assets/demo). Or one Hugging Face
# Llama-family checkpoint:   --model DIR --calib TEXT --heldout TEXT [--wiki TEXT] [--seq-len N] [--name NAME]
# Where the outputs go: --out DIR or EVB_OUT=DIR (default ./experiments-out, in the working directory): the
# tables, manifests and pictures in DIR, the run directories and level databases in DIR/runs (or
# EVB_RUNS=DIR2). The committed tables in experiments/results are written only when asked:
# --results experiments/results (or EVB_RESULTS=experiments/results).
# Environment: EVB (default ./build/evobudget), SHARED (default ../shared/data), GENS (EvoPress generations;
# empty: the paper's per mode; "default": search's own default), WIKI_TOKENS (tokens of WikiText-2 test scored, default 16384).
# Progress: one line on stderr per step (which step, i of n, time since the start); each search's own
# progress goes to RUN.stderr beside its run directory.
set -eu
EVB=${EVB:-./build/evobudget}
EVB_OUT=${EVB_OUT:-./experiments-out}
EVB_RUNS=${EVB_RUNS:-}
EVB_RESULTS=${EVB_RESULTS:-}
SHARED=${SHARED:-../shared/data}
GENS=${GENS:-}
WIKI_TOKENS=${WIKI_TOKENS:-16384}
SCRIPT=$(basename "$0" .sh)
T_START=$(date +%s)
STEP=0
STEPS=0

# progress_begin N: the script has N steps. step TEXT: the next step's line on stderr.
progress_begin() { STEPS=$1; STEP=0; }
step() {
  STEP=$((STEP + 1))
  el=$(( $(date +%s) - T_START ))
  printf '%s: [%d/%d, %dh%02dm%02ds] %s\n' "$SCRIPT" "$STEP" "$STEPS" $((el / 3600)) $((el / 60 % 60)) $((el % 60)) "$*" >&2
}
# fail_step WHAT LOG: a step failed; its last lines and where the rest is, then exit 1.
fail_step() {
  echo "$SCRIPT: $1 failed; the last lines of $2:" >&2
  tail -n 5 "$2" >&2 || true
  exit 1
}

# Sets OUT (run directories, level databases) and RESULTS (tables), makes both and says where they are.
setup_dirs() {
  OUT=${EVB_RUNS:-$EVB_OUT/runs}
  RESULTS=${EVB_RESULTS:-$EVB_OUT}
  mkdir -p "$OUT" "$RESULTS"
  echo "$SCRIPT: tables, manifests and pictures into $RESULTS; run directories and level databases into $OUT" >&2
}

# MODELS: lines "name model calib heldout wiki seq_len"
MODELS=""
parse_models() {
  m="" calib="" held="" wiki="$SHARED/text/wikitext-2-raw/wiki.test.raw" seq=512 name=""
  while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
    case $1 in
      --model) m=$2; shift 2 ;; --calib) calib=$2; shift 2 ;; --heldout) held=$2; shift 2 ;;
      --wiki) wiki=$2; shift 2 ;; --seq-len) seq=$2; shift 2 ;; --name) name=$2; shift 2 ;;
      --out) EVB_OUT=$2; shift 2 ;; --results) EVB_RESULTS=$2; shift 2 ;;
      *) echo "$0: unknown option '$1' (hint: [--out DIR] [--results DIR] [--model DIR --calib TEXT --heldout TEXT [--wiki TEXT] [--seq-len N] [--name NAME]])" >&2; exit 2 ;;
    esac
  done
  setup_dirs
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

# The number of models the script runs over.
n_models() { printf '%s\n' "$MODELS" | grep -c .; }

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
    step "$name, $label, $row: search and evaluations (search progress: $run.stderr)"
    rm -rf "$run"
    g=""   # the paper's generations per mode unless GENS is set (search's own default is a fraction of them)
    if { [ "$method" = evopress ] || [ "$method" = nsga2 ]; } && [ "$GENS" != default ]; then g="--generations ${GENS:-paper}"; fi
    t0=$(date +%s)
    $EVB search --model "$model" --calib "$calib" --seq-len "$seq" --calib-windows 64 --cache "$OUT/cache" \
      --method "$method" --seed 0 $g "$@" --out "$run" --json > "$run.search.json" 2> "$run.stderr" < /dev/null ||
      fail_step "the search of $name, $label, $row" "$run.stderr"
    echo $(( $(date +%s) - t0 )) > "$run.seconds"
  else
    step "$name, $label, $row: searched before ($run), evaluations only"
  fi
  t0=$(date +%s)
  $EVB eval --config "$run/best.json" --data "$calib" --seq-len "$seq" --calib-windows 64 --json > "$run.calib.json" 2> "$run.eval.stderr" < /dev/null ||
    fail_step "the calibration evaluation of $name, $label, $row" "$run.eval.stderr"
  $EVB eval --config "$run/best.json" --data "$held" --seq-len "$seq" --json > "$run.eval.json" 2> "$run.eval.stderr" < /dev/null ||
    fail_step "the held-out evaluation of $name, $label, $row" "$run.eval.stderr"
  if [ -f "$wiki" ]; then
    $EVB eval --config "$run/best.json" --data "$wiki" --seq-len "$seq" --max-tokens "$WIKI_TOKENS" --json > "$run.wiki.json" 2> "$run.eval.stderr" < /dev/null ||
      fail_step "the WikiText-2 evaluation of $name, $label, $row" "$run.eval.stderr"
  fi
  echo $(( $(date +%s) - t0 )) > "$run.eval_seconds"
  printf '%s\t%s\t%s\t%s\n' "$name" "$label" "$row" "$run" >> "$TSV"
}

# third_tokens NAME LABEL ROW: a third of the tokens that the search of row ROW (run before) scored.
third_tokens() {
  tt_json="$OUT/$1/$(echo "$2-$3" | tr ' /%' '__p').search.json"
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tokens'] // 3)" "$tt_json" ||
    { echo "$SCRIPT: no token count in $tt_json (hint: run the $3 row first)" >&2; exit 1; }
}

# PROFILE_TOKENS: the tokens a level of the surrogate's sensitivity profile scores (default 256, stage 0's).
PROFILE_TOKENS=${PROFILE_TOKENS:-256}
# profile NAME MODEL CALIB SEQ LABEL [target flags...]: the cheap sensitivity profile (PROFILE_TOKENS a level)
# of the target's levels in $OUT/NAME/LABEL-profile (kept when there), for the surrogate's prior and start.
profile() {
  pr_dir="$OUT/$1/$(echo "$5-profile" | tr ' /%' '__p')"
  pr_1=$1 pr_2=$2 pr_3=$3 pr_4=$4; shift 5
  [ -f "$pr_dir/sensitivity.json" ] && return 0
  mkdir -p "$OUT/$pr_1"
  $EVB sensitivity --model "$pr_2" --calib "$pr_3" --seq-len "$pr_4" --calib-windows 64 --cache "$OUT/cache" "$@" \
    --max-tokens "$PROFILE_TOKENS" --out "$pr_dir" --force > /dev/null 2> "$pr_dir.stderr" < /dev/null ||
    fail_step "the sensitivity profile of $pr_1" "$pr_dir.stderr"
}

# surrogate_beside NAME MODEL CALIB HELDOUT WIKI SEQ LABEL PLAIN [search flags...]: the row "surrogate",
# surrogate-assisted EvoPress (--surrogate 16) with a cheap sensitivity profile as its prior and start
# (--prior, the profile's tokens counted), stopped by --token-budget at a third of the tokens that the search
# of row PLAIN (same model and label, run before) scored.
surrogate_beside() {
  sb_budget=$(third_tokens "$1" "$7" "$8") || exit 1
  sb_1=$1 sb_2=$2 sb_3=$3 sb_4=$4 sb_5=$5 sb_6=$6 sb_7=$7; shift 8
  profile "$sb_1" "$sb_2" "$sb_3" "$sb_6" "$sb_7" "$@"
  one "$sb_1" "$sb_2" "$sb_3" "$sb_4" "$sb_5" "$sb_6" "$sb_7" surrogate=evopress "$@" --surrogate 16 --prior "$pr_dir" \
    --token-budget "$sb_budget"
}

# The dense model on the same texts.
dense() {
  name=$1 model=$2 held=$4 wiki=$5 seq=$6 e="$OUT/$name/dense.stderr"
  step "$name: the dense model on the held-out text and WikiText-2"
  mkdir -p "$OUT/$name"
  [ -f "$OUT/$name/dense.eval.json" ] || $EVB eval --model "$model" --data "$held" --seq-len "$seq" --json > "$OUT/$name/dense.eval.json" 2> "$e" < /dev/null ||
    fail_step "the dense evaluation of $name" "$e"
  if [ -f "$wiki" ] && [ ! -f "$OUT/$name/dense.wiki.json" ]; then
    $EVB eval --model "$model" --data "$wiki" --seq-len "$seq" --max-tokens "$WIKI_TOKENS" --json > "$OUT/$name/dense.wiki.json" 2> "$e" < /dev/null ||
      fail_step "the dense WikiText-2 evaluation of $name" "$e"
  fi
}

# Writes $RESULTS/$TABLE.md and .csv and the manifests of every run; TITLE and NOTE describe it.
table_end() {
  step "the table: $RESULTS/$TABLE.md"
  python3 experiments/table.py "$TSV" "$OUT" "$RESULTS" "$TABLE" "$TITLE" "$NOTE" "${GENS:-paper}"
  cat "$RESULTS/$TABLE.md"
  el=$(( $(date +%s) - T_START ))
  echo "$SCRIPT: done in ${el}s: $RESULTS/$TABLE.md, $RESULTS/$TABLE.csv, $RESULTS/pictures/" >&2
}

# picture NAME LABEL KIND ROW [baseline rows...]: `evobudget plot` of one run with the baselines as
# labelled points, copied to $RESULTS/pictures/KIND-NAME-*.png
picture() {
  name=$1 label=$2 kind=$3 main=$4; shift 4
  step "$name, $label: pictures of $main against $*"
  run="$OUT/$name/$(echo "$label-$main" | tr ' /%' '__p')"
  with=""
  for b in "$@"; do with="$with${with:+,}$OUT/$name/$(echo "$label-$b" | tr ' /%' '__p')"; done
  $EVB plot "$run" ${with:+--with "$with"} > /dev/null < /dev/null
  mkdir -p "$RESULTS/pictures"
  for p in front profile convergence; do cp "$run/$p.png" "$RESULTS/pictures/$kind-$name-$p.png"; done
}
