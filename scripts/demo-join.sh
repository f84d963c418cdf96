#!/usr/bin/env bash
# The join demo: movies ⋈ talents (demo/join/pipeline.yaml), a left join over durable state.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PORT=19093
BROKER="127.0.0.1:$PORT"
scripts/setup.sh
cargo build -q -p meshhost
BIN="${CARGO_TARGET_DIR:-target}/debug/meshhost"
scripts/broker.sh start "$PORT"
RUN_PID=""
cleanup() {
    [ -n "$RUN_PID" ] && kill "$RUN_PID" 2>/dev/null || true
    scripts/broker.sh stop "$PORT"
}
trap cleanup EXIT
rm -rf target/demo-state
for topic in movies talents movies-enriched; do scripts/broker.sh topic "$topic" 3 "$PORT"; done
"$BIN" produce movies --bootstrap-servers "$BROKER" --schema demo/join/movie.avsc --key-field id < demo/join/movies.jsonl
"$BIN" produce talents --bootstrap-servers "$BROKER" --schema demo/join/talent.avsc --key-field movie_id < demo/join/talents.jsonl
echo "== meshhost run demo/join/pipeline.yaml"
MESHHOST_LOG=warn "$BIN" run demo/join/pipeline.yaml &
RUN_PID=$!
echo "== movies-enriched (JSON), one record per change:"
"$BIN" consume movies-enriched --bootstrap-servers "$BROKER" --idle-seconds 5 | cut -c1-220
kill -TERM "$RUN_PID"
wait "$RUN_PID"
RUN_PID=""
