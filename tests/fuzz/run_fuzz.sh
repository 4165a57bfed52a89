#!/bin/sh
# Runs one libFuzzer target from the repository root:
#   tests/fuzz/run_fuzz.sh TARGET [SECONDS] [extra libFuzzer flags...]
# TARGET is safetensors, config, tokenizer_json, llama2c_bin, db_index or db_payload; SECONDS defaults to 600. New inputs go to
# tests/fuzz/corpus-TARGET-run/ (the seeds in tests/fuzz/corpus-TARGET/ are read, never written; make them
# first with tests/fuzz/make_corpus.py), crashes to tests/fuzz/crash-TARGET-*, and the log to
# build-fuzz/fuzz-logs/TARGET.log. Inputs are written under $TMPDIR (default /dev/shm when it exists).
# BUILD=dir overrides the build directory (default build-fuzz).
set -eu
target=$1
secs=${2:-600}
[ $# -ge 2 ] && shift 2 || shift $#
build=${BUILD:-build-fuzz}
case $target in
  safetensors|config) max_len=4096 ;;
  tokenizer_json|llama2c_bin) max_len=8192 ;;
  db_index|db_payload) max_len=8192 ;;
  *) echo "unknown target $target (safetensors, config, tokenizer_json, llama2c_bin, db_index, db_payload)" >&2; exit 2 ;;
esac
dict=tests/fuzz/dict/$target.dict
# The targets write each input to a file in $TMPDIR: keep that in memory when /dev/shm exists.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
# Stack traces for UndefinedBehaviorSanitizer reports too.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
mkdir -p "tests/fuzz/corpus-$target-run" "$build/fuzz-logs"
exec "$build/tests/fuzz/fuzz_$target" -dict="$dict" -max_len=$max_len -max_total_time="$secs" \
  -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="tests/fuzz/crash-$target-" "$@" \
  "tests/fuzz/corpus-$target-run" "tests/fuzz/corpus-$target" > "$build/fuzz-logs/$target.log" 2>&1
