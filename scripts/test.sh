#!/usr/bin/env bash
# The whole test suite: installs what is missing, starts the broker, runs every test.
#   scripts/test.sh [cargo test arguments...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
PORT="${MESHHOST_TEST_PORT:-19092}"
scripts/broker.sh start "$PORT"
trap 'scripts/broker.sh stop "$PORT"' EXIT
MESHHOST_TEST_BROKER="127.0.0.1:$PORT" cargo test --workspace "$@"
