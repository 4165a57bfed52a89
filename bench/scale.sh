#!/usr/bin/env bash
# scale.sh -- the engine at real model sizes: load time, eval throughput (bf16 and f32 compute) and peak
# memory against PyTorch bf16 on the same shapes, and against oneDNN's own GEMM rate. Random-weight BF16
# checkpoints of Llama-3.2-1B's shape and a 768-wide model are written once by bench/make_checkpoint.py.
# Prints one Markdown table per model (see bench/README.md).
#
# usage: bench/scale.sh [-t "1 2"] [-m "llama-3.2-1b d768"] [--dir DIR] [--data TEXTFILE] [--build DIR]
#                       [--batch B] [--seq T] [-o OUTDIR]
#   -t LIST        thread counts, run in this order (default "1 2")
#   -m LIST        models: make_checkpoint.py presets llama-3.2-1b, d768, tiny (default "llama-3.2-1b d768")
#   --dir DIR      where the checkpoints are (default /tmp/evb_scale; written when missing, else reused)
#   --data FILE    text for eval (default ../shared/data/text/wikitext-2-raw/wiki.test.raw from the repo root)
#   --build DIR    build directory of the CLI and bench_gemm (default build-bench; Release)
#   --batch B, --seq T   B sequences of T tokens per forward (default 2 x 512)
#   -o DIR         JSON results and logs (default /tmp/evb_scale_run)
# OPENBLAS_CORETYPE, when set, is passed through; when not, the kernels evobudget picks on this CPU are
# exported for every program (as bench/run.sh does).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
THREADS="1 2"
MODELS="llama-3.2-1b d768"
DIR=/tmp/evb_scale
DATA=$ROOT/../shared/data/text/wikitext-2-raw/wiki.test.raw
BUILD=build-bench
BATCH=2
SEQ=512
OUT=/tmp/evb_scale_run
PY=/usr/bin/python3
die() { echo "scale.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    -t|-m|--dir|--data|--build|--batch|--seq|-o) [ $# -ge 2 ] || { echo "scale.sh: $1 needs a value" >&2; exit 2; } ;;
  esac
  case $1 in
    -t) THREADS=$2 ;; -m) MODELS=$2 ;; --dir) DIR=$2 ;; --data) DATA=$2 ;; --build) BUILD=$2 ;;
    --batch) BATCH=$2 ;; --seq) SEQ=$2 ;; -o) OUT=$2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "scale.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
[ -f "$DATA" ] || die "the eval text $DATA is missing (WikiText-2 raw test, see ../shared/data/README.md); pass --data TEXTFILE"
case "$BATCH$SEQ" in *[!0-9]*) die "--batch and --seq need positive integers" ;; esac
if [ -z "$BATCH" ] || [ -z "$SEQ" ] || [ "$BATCH" -lt 1 ] || [ "$SEQ" -lt 2 ]; then die "--batch needs at least 1 and --seq at least 2"; fi
[ -x "$PY" ] || die "$PY is missing (Debian's python3 with python3-numpy and python3-torch)"
mkdir -p "$OUT" "$DIR"

echo "== building evobudget and bench_gemm in $BUILD (Release)" >&2
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release > "$OUT/cmake.log" || die "cmake failed (see $OUT/cmake.log)"
cmake --build "$BUILD" -j2 --target evobudget-cli >> "$OUT/cmake.log" || die "the build of evobudget failed (see $OUT/cmake.log)"
EVB=$BUILD/evobudget
GEMM=$BUILD/bench/bench_gemm
TARGETS=$(cmake --build "$BUILD" --target help 2>/dev/null || true)
if [[ $TARGETS == *bench_gemm* ]]; then
  cmake --build "$BUILD" -j2 --target bench_gemm >> "$OUT/cmake.log" || die "the build of bench_gemm failed (see $OUT/cmake.log)"
else
  echo "scale.sh: bench_gemm is not built (no oneDNN: apt-get install libdnnl-dev); the GEMM columns stay empty" >&2
  GEMM=
fi
# The --compute flag of eval selects the BF16 path; a build without it runs f32 only.
EVAL_HELP=$("$EVB" eval --help 2>&1 || true)
HAVE_COMPUTE=0
case "$EVAL_HELP" in *--compute*) HAVE_COMPUTE=1 ;; *) echo "scale.sh: this evobudget has no --compute flag: its eval is measured as f32 only" >&2 ;; esac

for m in $MODELS; do
  d=$DIR/$m
  if [ -f "$d/config.json" ] && [ -f "$d/model.safetensors" ]; then
    echo "== $d: reusing the checkpoint there" >&2
  else
    $PY bench/make_checkpoint.py --shape "$m" --out "$d" || die "cannot write the checkpoint $d"
  fi
  [ -f "$d/tokenizer.json" ] || die "$d has no tokenizer.json: install the Llama tokenizers (./setup.sh), or copy one whose ids fit its vocabulary there"
done

if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  first=${MODELS%% *}
  core=$("$EVB" info --model "$DIR/$first" --json 2>/dev/null |
         $PY -c 'import json,sys; print(json.load(sys.stdin)["blas_core"])' 2>/dev/null || true)
  [ -n "$core" ] && export OPENBLAS_CORETYPE="$core"
fi

timed() { # OUTFILE CMD...: runs CMD, writes "wall-seconds peak-RSS-KiB" to OUTFILE
  local f=$1; shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%e %M' -o "$f" "$@"
  else   # no GNU time (Debian's 'time' package): the peak RSS of the one child, from getrusage
    $PY -c 'import resource, subprocess, sys, time
t = time.monotonic(); rc = subprocess.call(sys.argv[2:]); e = time.monotonic() - t
open(sys.argv[1], "w").write("%.2f %d\n" % (e, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(rc)' "$f" "$@"
  fi
}

MAXTOK=$((BATCH * (SEQ - 1)))   # exactly BATCH windows of BOS + SEQ-1 text tokens: BATCH x SEQ positions, as PyTorch's
for n in $THREADS; do
  for m in $MODELS; do
    d=$DIR/$m
    tag=$m-$n
    rm -f "$OUT"/*-"$tag".json "$OUT"/*-"$tag".time
    cut -d' ' -f1-3 /proc/loadavg > "$OUT/loadavg-$tag.txt"
    echo "== $m, $n thread(s): info x 3" >&2
    for _ in 1 2 3; do
      s=$(date +%s.%N)
      OMP_NUM_THREADS=$n "$EVB" info --model "$d" > /dev/null 2> "$OUT/info-$tag.log" || die "evobudget info --model $d failed (see $OUT/info-$tag.log)"
      e=$(date +%s.%N)
      echo "$s $e" | awk '{printf "%.3f\n", $2 - $1}'
    done > "$OUT/info-$tag.txt"
    computes="f32"
    [ $HAVE_COMPUTE = 1 ] && computes="bf16 f32"
    for c in $computes; do
      echo "== $m, $n thread(s): eval --compute $c" >&2
      flag=()
      [ $HAVE_COMPUTE = 1 ] && flag=(--compute "$c")
      if ! OMP_NUM_THREADS=$n timed "$OUT/eval-$c-$tag.time" "$EVB" eval --model "$d" --data "$DATA" --seq-len "$SEQ" \
           --max-tokens "$MAXTOK" --batch "$BATCH" "${flag[@]}" --threads "$n" --json \
           > "$OUT/eval-$c-$tag.json" 2> "$OUT/eval-$c-$tag.log"; then
        [ "$c" = bf16 ] || die "evobudget eval --compute $c on $d failed (see $OUT/eval-$c-$tag.log)"
        # a CPU without BF16 instructions may refuse it: the bf16 columns then show -
        echo "scale.sh: evobudget eval --compute bf16 on $d failed: $(tail -n 1 "$OUT/eval-$c-$tag.log")" >&2
        rm -f "$OUT/eval-$c-$tag.json"
      fi
    done
    echo "== $m, $n thread(s): PyTorch bf16" >&2
    OMP_NUM_THREADS=$n OPENBLAS_NUM_THREADS=$n $PY bench/torch_scale.py --model "$d" --dtype bf16 --batch "$BATCH" \
      --seq "$SEQ" --threads "$n" --json > "$OUT/torch-$tag.json" 2> "$OUT/torch-$tag.log" || die "torch_scale.py on $d failed (see $OUT/torch-$tag.log)"
    if [ -n "$GEMM" ]; then
      shapes=$($PY - "$d/config.json" $((BATCH * SEQ)) <<'EOF'
import json, sys
c, M = json.load(open(sys.argv[1])), int(sys.argv[2])
D, H = c["hidden_size"], c["num_attention_heads"]
E = c.get("head_dim") or D // H
G, F, V = c.get("num_key_value_heads") or H, c["intermediate_size"], c["vocab_size"]
print(",".join("%dx%dx%d:%s" % (M, k, n, l) for k, n, l in
               [(D, H * E, "q"), (H * E, D, "o"), (D, G * E, "k/v"), (D, F, "gate/up"), (F, D, "down"), (D, V, "classifier")]))
EOF
)
      echo "== $m, $n thread(s): bench_gemm on $shapes" >&2
      OMP_NUM_THREADS=$n "$GEMM" --shapes "$shapes" --json > "$OUT/gemm-$tag.json" 2> "$OUT/gemm-$tag.log" ||
        die "bench_gemm failed (see $OUT/gemm-$tag.log)"
    fi
  done
done

$PY - "$OUT" "$DIR" "$HAVE_COMPUTE" "$BATCH" "$SEQ" "$THREADS" "$MODELS" <<'EOF'
import json, os, statistics, sys, time
out, ckdir, have_compute, B, T, threads, models = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5]), sys.argv[6].split(), sys.argv[7].split()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
GIB = 2 ** 30

def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.isfile(p) else None

def timefile(name):
    p = os.path.join(out, name)
    if not os.path.isfile(p):
        return None
    last = open(p).read().strip().splitlines()[-1].split()     # GNU time puts "Command exited..." first on failure
    return float(last[0]), int(last[1])

def fmt(x, f="%.1f"):
    return "-" if x is None else f % x

def counts(c):
    """(label, count per forward) of the projection shapes bench_gemm timed, and FLOP per token."""
    D, H, L = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
    E = c.get("head_dim") or D // H
    G, F, V = c.get("num_key_value_heads") or H, c["intermediate_size"], c["vocab_size"]
    shapes = {"q": (D, H * E, L), "o": (H * E, D, L), "k/v": (D, G * E, 2 * L), "gate/up": (D, F, 2 * L),
              "down": (F, D, L), "classifier": (D, V, 1)}
    linear = sum(k * n * cnt for k, n, cnt in shapes.values())
    attn = 2 * 2 * (T / 2) * H * E * L
    return shapes, (2 * linear + attn) / 1e9

def model_rate(gemm, shapes, kind):
    """GFLOP/s of one forward's projections at the rate bench_gemm measured on each shape (time-weighted)."""
    if not gemm:
        return None
    by = {(s["K"], s["N"]): s for s in gemm["shapes"]}
    flop = sec = 0.0
    for k, n, cnt in shapes.values():
        s = by.get((k, n))
        if s is None or kind + "_gflops" not in s:
            return None
        f = 2.0 * B * T * k * n * cnt / 1e9
        flop, sec = flop + f, sec + f / s[kind + "_gflops"]
    return flop / sec

print("## Scale benchmark, %s\n" % time.strftime("%Y-%m-%d"))
print("%s; eval of %d x %d tokens (WikiText-2 for evobudget, splitmix64 ids for PyTorch); medians.\n" % (cpu, B, T))
for m in models:
    d = os.path.join(ckdir, m)
    c = json.load(open(os.path.join(d, "config.json")))
    shapes, gpt = counts(c)
    ck = os.path.getsize(os.path.join(d, "model.safetensors")) / GIB
    size = "%.2f GiB" % ck if ck >= 0.1 else "%.1f MiB" % (ck * 1024)
    print("### %s: dim %d, %d layers, %d/%d heads, hidden %d, vocab %d, %s; checkpoint %s (BF16); %.3g GFLOP/token\n"
          % (m, c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c.get("num_key_value_heads") or c["num_attention_heads"],
             c["intermediate_size"], c["vocab_size"], "tied" if c.get("tie_word_embeddings") else "untied", size, gpt))
    print("| threads | info s | engine bf16 tok/s | engine bf16 tok/s, whole process | engine f32 tok/s | torch bf16 tok/s | "
          "engine bf16 / torch | whole process / torch | "
          "peak RSS GiB: engine bf16 / f32 / torch | RSS / checkpoint (engine bf16) | engine bf16 GFLOP/s | oneDNN bf16 GFLOP/s | "
          "fraction | engine f32 GFLOP/s | sgemm GFLOP/s | fraction | oneDNN bf16 impl |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in threads:
        tag = "%s-%s" % (m, n)
        info = [float(x) for x in open(os.path.join(out, "info-%s.txt" % tag)).read().split()]
        tok, rss, whole = {}, {}, {}
        for comp in ("bf16", "f32"):
            e, tf = load("eval-%s-%s.json" % (comp, tag)), timefile("eval-%s-%s.time" % (comp, tag))
            if e is None or tf is None or (comp == "bf16" and not have_compute):
                tok[comp] = rss[comp] = whole[comp] = None
                continue
            # positions per second: windows x seq_len over the scoring time (tokens_per_s counts scored tokens)
            tok[comp] = e["windows"] * e["seq_len"] * e["tokens_per_s"] / e["tokens"]
            rss[comp] = tf[1] / 2 ** 20
            whole[comp] = e["windows"] * e["seq_len"] / tf[0]   # the same positions over the process's wall time
        t = load("torch-%s.json" % tag)
        g = load("gemm-%s.json" % tag)
        r_bf = model_rate(g, shapes, "dnnl_bf16")
        r_sg = model_rate(g, shapes, "sgemm")
        impl = sorted({s["dnnl_bf16_impl"] for s in g["shapes"] if "dnnl_bf16_impl" in s}) if g else []
        eb = tok["bf16"] * gpt if tok["bf16"] else None
        ef = tok["f32"] * gpt if tok["f32"] else None
        print("| %s | %.2f | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            n, statistics.median(info), fmt(tok["bf16"]), fmt(whole["bf16"]), fmt(tok["f32"]), fmt(t["tok_s"]),
            fmt(tok["bf16"] / t["tok_s"] if tok["bf16"] else None, "%.2f"),
            fmt(whole["bf16"] / t["tok_s"] if whole["bf16"] else None, "%.2f"),
            fmt(rss["bf16"], "%.2f"), fmt(rss["f32"], "%.2f"), fmt(t["peak_rss_kib"] / 2 ** 20, "%.2f"),
            fmt(rss["bf16"] / ck if rss["bf16"] else None, "%.2f"),
            fmt(eb), fmt(r_bf), fmt(eb / r_bf if eb and r_bf else None, "%.2f"),
            fmt(ef), fmt(r_sg), fmt(ef / r_sg if ef and r_sg else None, "%.2f"), ", ".join(impl) or "-"))
    print("\nLoad average (1, 5, 15 min) when each pass started: " +
          "; ".join("%s thread(s): %s" % (n, open(os.path.join(out, "loadavg-%s-%s.txt" % (m, n))).read().strip()) for n in threads) + ".\n")
print("tok/s: positions per second of the forward + log-softmax (evobudget eval: B windows of T, scoring time only, "
      "and over the whole process's wall time, loading and tokenizing included; "
      "PyTorch: bench/torch_scale.py, median of 3 after a warm-up). GFLOP/s = tok/s x GFLOP/token, "
      "GFLOP/token = 2 x (projection + classifier weights) / 1e9 + causal attention 2 x 2 x (T/2) x H x E x L / 1e9. "
      "oneDNN bf16 / sgemm GFLOP/s: one forward's projections (M = B x T rows) at the rate bench_gemm measures on "
      "each shape with the same threads. Peak RSS: max resident set of the whole process, loading included.")
EOF
