#!/usr/bin/env bash
# Start the services the tests need, run lint and the whole suite, stop the services.
# pytest's own exit status is kept: 5 (no tests collected) fails like any other error.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin

scripts/test-services.sh start || exit 1
eval "$(scripts/test-services.sh env)"
trap 'scripts/test-services.sh stop' EXIT

"$BIN/ruff" check core backends tui tests benchmarks scripts || exit 1
"$BIN/pytest" -q -p no:cacheprovider "$@"
status=$?
if [[ $status -eq 5 ]]; then
    echo "run-tests: pytest collected no tests; that is a failure." >&2
fi
exit $status
