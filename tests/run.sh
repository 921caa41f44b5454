#!/bin/sh
# Runs every test program (build/tests/test_*) and script (tests/test_*.sh).
# Each prints "ok   NAME", "FAIL NAME" or "SKIP NAME: why" per test case on
# stderr; a program that exits non-zero without a FAIL line (a crash, a
# sanitizer report) counts as one failure. Last line: N passed, N failed, N skipped.
BUILD=${BUILD:-build}
export BUILD
log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0; failed=0; skipped=0
run_one() {
    name=$1; shift
    "$@" >"$log.out" 2>"$log"
    rc=$?
    cat "$log"
    p=$(grep -c '^ok ' "$log"); f=$(grep -c '^FAIL ' "$log"); s=$(grep -c '^SKIP ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $name: exited with status $rc"; tail -n 20 "$log.out"; f=1
    fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    rm -f "$log.out"
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    echo "== $(basename "$t")"
    run_one "$(basename "$t")" "$t"
done
for t in tests/test_*.sh; do
    [ -f "$t" ] || continue
    echo "== $(basename "$t")"
    run_one "$(basename "$t")" sh "$t"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
