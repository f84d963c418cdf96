#!/usr/bin/env bash
# The fault matrix as a table (README "Guarantees"): runs the fault tests against a fresh broker
# and prints, per fault, records in and out, lost, duplicated, dead-lettered, and recovery.
#   scripts/faults.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >/dev/null
PORT="${MESHHOST_FAULTS_PORT:-19097}"
scripts/broker.sh start "$PORT"
trap 'scripts/broker.sh stop "$PORT"' EXIT
OUT="$(mktemp)"
MESHHOST_TEST_BROKER="127.0.0.1:$PORT" cargo test -p meshhost --test all -- --nocapture --test-threads 2 \
    faults:: pipeline::hostile pipeline::too_many scale::stateless scale::an_unreadable >"$OUT" 2>&1 || {
    grep -E "^test |panicked" "$OUT" >&2
    exit 1
}
echo "| fault | records in | out | lost | duplicated | dead-lettered | recovery |"
echo "|---|---|---|---|---|---|---|"
grep '^fault: ' "$OUT" | sed 's/^fault: /| /; s/$/ |/; s/| in /| /; s/| out /| /; s/| lost /| /; s/| duplicated /| /; s/| dead-lettered /| /'
