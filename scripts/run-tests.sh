#!/usr/bin/env bash
# Start the services the tests need, run lint and the whole suite on each store
# (the embedded SQLite, then PostgreSQL), stop the services.
# pytest's own exit status is kept: 5 (no tests collected) fails like any other error.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin

scripts/test-services.sh start || exit 1
eval "$(scripts/test-services.sh env)"
trap 'scripts/test-services.sh stop' EXIT

"$BIN/ruff" check core backends tui tests benchmarks scripts || exit 1
status=0
for store in ${LAUNCH_TUI_TEST_STORES:-sqlite postgres}; do
    echo "run-tests: the suite on --store $store"
    "$BIN/pytest" -q -p no:cacheprovider --store "$store" "$@"
    rc=$?
    if [[ $rc -eq 5 ]]; then
        echo "run-tests: pytest collected no tests on $store; that is a failure." >&2
    fi
    [[ $rc -eq 0 ]] || status=$rc
done
exit $status
