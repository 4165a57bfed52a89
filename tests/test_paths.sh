#!/bin/sh
# test_paths.sh SOURCE_DIR -- the committed results speak of the project, not of the machine they were made
# on: no file under experiments/ (manifests, search and eval JSON, tables) names an absolute path of a working
# directory, a home or a scratch directory (the top-level folders work, root, home, tmp, Users). The scripts write what
# they were given, so run them with relative paths (their defaults) before committing what they wrote.
# Prints a PASS/FAIL line, the offending lines on failure.
set -u
src=$1
hits=$(grep -rInE '(^|[^A-Za-z0-9_.~-])/(work|root|home|tmp|Users)/' "$src/experiments" 2>/dev/null | head -20)
if [ -n "$hits" ]; then
    echo "FAIL experiments/ names absolute paths of the machine that ran it (make them relative to the repository):"
    printf '%s\n' "$hits" | cut -c1-240
    exit 1
fi
echo "PASS no absolute machine path in experiments/ ($(find "$src/experiments" -type f | wc -l) files)"
