#!/bin/sh
# Builds and runs the whole test suite twice: a release build, then a build with AddressSanitizer and
# UndefinedBehaviorSanitizer. Run from the repository root after ./setup.sh.
# Parts of tests that need the real data in ../shared/data skip where it is missing (ctest shows them as
# Skipped); the line after each half counts them.
set -eu
jobs=$(nproc 2>/dev/null || echo 2)
skipped() { # build directory, name of the half: one summary line of what was skipped
  log=$1/Testing/Temporary/LastTest.log
  parts=$(grep -c '^SKIP' "$log" || true)
  echo "run-all: $2: $parts parts of tests skipped for missing real data (each SKIP line in $log names the file)"
}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure
skipped build release
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEVB_SANITIZE=address,undefined
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -LE nosan
skipped build-asan "address+undefined"
