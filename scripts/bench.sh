#!/usr/bin/env bash
# The benchmark suite, in one command: starts the broker on port 19094 (never the tests' 19092),
# builds meshhost and the suite in release, runs every benchmark and prints one table of ratios
# measured in this run (also written to target/bench/results.md). About 4 minutes on 2 cores.
#
#   scripts/bench.sh                       the full suite (1M records of 200 B, 250k of 2 KB)
#   scripts/bench.sh --quick               a smoke run (100k / 25k records, fewer rounds)
#   scripts/bench.sh --only avro,stage     some of: avro, source, stage, load, startup, e2e, metrics, guest, catalog, postgres
#   scripts/bench.sh --records N --records-2k N --rounds R --e2e-rounds R
#
# MESHHOST_BENCH_PORT changes the broker port. The broker started here is stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
PORT="${MESHHOST_BENCH_PORT:-19094}"
scripts/broker.sh start "$PORT"
# The postgres phase starts Postgres on 15434 (MESHHOST_BENCH_POSTGRES names another port to use).
trap 'scripts/broker.sh stop "$PORT"; [ -n "${MESHHOST_BENCH_POSTGRES:-}" ] || scripts/postgres.sh stop 15434 >/dev/null 2>&1 || true' EXIT
cargo build --release -p meshhost --bench suite
SUITE="$(cargo build --release -p meshhost --bench suite --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\/suite-[0-9a-f]*\)".*/\1/p' | tail -n 1)"
if [ -z "$SUITE" ] || [ ! -x "$SUITE" ]; then
    echo "bench: cannot find the built suite binary" >&2
    exit 1
fi
"$SUITE" --broker "127.0.0.1:$PORT" "$@"
