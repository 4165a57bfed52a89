#!/bin/sh
# Builds and runs the whole test suite twice: a release build, then a build with AddressSanitizer and
# UndefinedBehaviorSanitizer. Run from the repository root after ./setup.sh.
set -eu
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEVB_SANITIZE=address,undefined
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -LE nosan
