#!/bin/sh
# test_install.sh SOURCE_DIR BUILD_DIR -- `cmake --install` into a temporary prefix, then a separate CMake
# project (examples/library) finds the library with find_package, builds a program that defines a fitness
# and runs a search, and the program runs; a second program (sparsity_example) builds the demo model's
# sparsity problem through the public API, searches it, and writes a configuration that `evobudget eval`
# reads; the pkg-config file compiles the first program. Prints PASS/FAIL
# lines and exits non-zero on any failure.
set -u
src=$1 build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { if [ "$1" = 0 ]; then echo "PASS $2"; else echo "FAIL $2"; fails=$((fails + 1)); fi; }
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log" 2>&1
check $? "cmake --install into a fresh prefix"
test -f "$tmp/prefix/include/evobudget/evb_search.h" && test -f "$tmp/prefix/lib/cmake/evobudget/evobudgetConfig.cmake" &&
  test -f "$tmp/prefix/lib/pkgconfig/evobudget.pc" && ls "$tmp/prefix/lib/"libevobudget.so* > /dev/null 2>&1 && test -x "$tmp/prefix/bin/evobudget"
check $? "headers, shared library, CMake package, pkg-config file and the program are in place"
cmake -S "$src/examples/library" -B "$tmp/example" -DCMAKE_PREFIX_PATH="$tmp/prefix" > "$tmp/cfg.log" 2>&1 &&
  cmake --build "$tmp/example" > "$tmp/build.log" 2>&1
check $? "a separate CMake project finds it with find_package(evobudget) and builds"
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/example/search_example" > "$tmp/out.txt" 2>&1
check $? "the example program runs its search"
cat "$tmp/out.txt"
grep -q "^best fitness" "$tmp/out.txt" && awk '/^best fitness/ {exit !($3 < 480.0)}' "$tmp/out.txt"
check $? "and its best beats the uniform allocation (fitness below 480)"
# the main job through the public API: the demo model's 50% sparsity problem, EvoPress on KL, a configuration
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/example/sparsity_example" "$src/assets/demo" "$src/assets/demo/calib.txt" "$tmp/db" "$tmp/best.json" > "$tmp/sp.txt" 2>&1
check $? "sparsity_example builds the demo model's sparsity problem (evb_mp_build) and searches it"
cat "$tmp/sp.txt"
awk '/best KL/ {for (i = 1; i <= NF; i++) { if ($i == "KL") b = $(i + 1); if ($i == "(uniform") u = $(i + 1) } } END {exit !(b != "" && b + 0 <= u + 0)}' "$tmp/sp.txt"
check $? "its best allocation's KL is at most the uniform allocation's"
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/prefix/bin/evobudget" eval --config "$tmp/best.json" --data "$src/assets/demo/calib.txt" --max-tokens 2000 --json > "$tmp/ev.json" 2> "$tmp/ev.err"
check $? "evobudget eval reads the configuration it wrote (model and database from the file)"
grep -q '"kl"' "$tmp/ev.json"
check $? "and reports its KL"
PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" cc "$src/examples/library/search_example.c" -o "$tmp/pc_example" \
  $(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --cflags --libs evobudget) > "$tmp/pc.log" 2>&1 &&
  LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/pc_example" > /dev/null
check $? "pkg-config --cflags --libs evobudget compiles and links the same program"
echo "$fails failed"
exit $fails
