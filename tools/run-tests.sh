#!/bin/sh
# Runs every test binary given on the command line from a scratch directory and sums Check's
# counts into one closing line "tests: N passed, N failed". Exits non-zero on any failure.
set -u
build=$1; shift
scratch=$(mktemp -d "${TMPDIR:-/tmp}/hylo-tests.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
root=$(pwd)
export HYLO_TEST_ROOT="$root" HYLO_TEST_BUILD="$root/$build"
# Many tiny OpenMP regions: spinning threads on a loaded 2-core machine (or under ASan) cost
# more than the work, so threads sleep when idle; two threads keep the parallel paths tested.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
passed=0; failed=0; status=0
for t in "$@"; do
    log="$scratch/$(basename "$t").log"
    (cd "$scratch" && "$root/$t") >"$log" 2>&1
    rc=$?
    cat "$log"
    line=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "$(basename "$t"): no Check summary (exit $rc)"; failed=$((failed + 1)); status=1; continue
    fi
    n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
    e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
    passed=$((passed + n - f - e)); failed=$((failed + f + e))
    [ "$rc" -eq 0 ] || status=1
done
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || status=1
exit $status
