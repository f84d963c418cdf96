#!/usr/bin/env bash
# The whole test suite: installs what is missing, starts the broker and Postgres, runs every test.
#   scripts/test.sh [cargo test arguments...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
PORT="${MESHHOST_TEST_PORT:-19092}"
PG_PORT="${MESHHOST_TEST_POSTGRES_PORT:-15432}"
scripts/broker.sh start "$PORT"
scripts/postgres.sh start "$PG_PORT" >/dev/null
trap 'scripts/broker.sh stop "$PORT"; scripts/postgres.sh stop "$PG_PORT"' EXIT
MESHHOST_TEST_BROKER="127.0.0.1:$PORT" MESHHOST_TEST_POSTGRES="$PG_PORT" cargo test --workspace "$@"
