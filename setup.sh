#!/bin/sh
# Installs the Debian 12 packages evobudget needs (idempotent; run as root, or as a user with sudo).
#   ./setup.sh           build and test dependencies
#   ./setup.sh --fuzz    also clang and its libFuzzer/sanitizer runtime (tests/fuzz)
#   ./setup.sh --bench   also PyTorch and NumPy (bench/ compares against PyTorch; experiments/ trains with it)
set -eu
# python3-msgpack: the example Python worker (examples/worker/), which the tests run; gnuplot-nox: `evobudget plot`;
# Open MPI: evobudget-mpi and its test
pkgs="cmake make gcc libc6-dev pkg-config libopenblas-dev libgsl-dev libmsgpack-dev libjansson-dev libxxhash-dev python3 python3-msgpack gnuplot-nox libopenmpi-dev openmpi-bin"
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
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "setup.sh: installing$missing" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
