#!/bin/sh
# test_rooms.sh NM OBJECTS -- the layout's rule at link level (../shared/DESIGN.md, "Rooms"): every symbol
# that an object of core/ leaves undefined is defined by no library object outside core/, and every symbol
# an object of search/ leaves undefined by none outside core/ and search/ (so search/ knows no model, not
# even through a helper); the other rooms use only the rooms DESIGN.md lets them (none but cli/ uses
# problems/). OBJECTS is the library's object files, separated by ';' (CMake's
# $<TARGET_OBJECTS:evobudget_obj>); each one's room is the folder it was compiled from. Prints a PASS/FAIL
# line per room, with the offending symbols and the rooms that define them; exits 77 (skipped) without nm.
set -u
export LC_ALL=C # one collation for sort and join
nm=$1 objects=$2
if [ -z "$nm" ] || ! command -v "$nm" > /dev/null 2>&1; then
    echo "SKIP: no nm (binutils) to read the object files"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# The objects as arguments; nm -A names each line's object ("PATH:ADDRESS TYPE NAME", "PATH: U NAME"), and
# an object's room is the folder it was compiled from (.../evobudget_obj.dir/<room>/<file>.c.o).
old_ifs=$IFS
IFS=';'
set -- $objects
IFS=$old_ifs
room_of='{ f = $1; sub(/:[^:]*$/, "", f); n = split(f, p, "/"); r = p[n - 1] }'
# "symbol room" for every global symbol the library's objects define; "room symbol" for those they use.
"$nm" -A --defined-only "$@" > "$tmp/nm_defined" && "$nm" -A --undefined-only "$@" > "$tmp/nm_used" ||
    { echo "FAIL $nm could not read the library's objects"; exit 1; }
awk "$room_of"' NF == 3 && $2 ~ /^[A-Z]$/ { print $3, r }' "$tmp/nm_defined" > "$tmp/defined"
awk "$room_of"' { print r, $NF }' "$tmp/nm_used" > "$tmp/used"
if [ ! -s "$tmp/defined" ]; then
    echo "FAIL no symbols read from the library's objects ($objects)"
    exit 1
fi
sort -u "$tmp/defined" > "$tmp/defs"

# check ROOM ALLOWED...: the symbols ROOM uses that a room outside {ROOM, ALLOWED...} defines.
check() {
    room=$1
    shift
    if ! grep -q "^$room " "$tmp/used"; then
        echo "FAIL no object of $room/ among the library's objects"
        fails=$((fails + 1))
        return
    fi
    awk -v r="$room" '$1 == r { print $2 }' "$tmp/used" | sort -u | join - "$tmp/defs" |
        awk -v ok="$room $*" 'BEGIN { n = split(ok, a, " "); for (i = 1; i <= n; i++) allowed[a[i]] = 1 }
                              !($2 in allowed) { print "  " $1 " (defined in " $2 "/)" }' > "$tmp/bad"
    if [ -s "$tmp/bad" ]; then
        echo "FAIL $room/ uses symbols of rooms it may not use (only: ${*:-none}):"
        cat "$tmp/bad"
        fails=$((fails + 1))
    else
        echo "PASS $room/ uses no library symbol outside ${*:+$* and }itself"
    fi
}
check core
check search core
check models core
check problems core search evaluators compressors models datasets
check compressors core models datasets
check evaluators core models compressors search datasets
check datasets core models
exit $((fails > 0))
