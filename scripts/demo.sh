#!/usr/bin/env bash
# The quick-start demo: broker and Schema Registry (meshhost's own) up, sample movies produced
# in the Confluent wire format, the filter + projection pipeline of demo/pipeline.yaml run, its
# output (and a dead letter) shown.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PORT=${MESHHOST_DEMO_PORT:-19093}
BROKER="127.0.0.1:$PORT"
REGISTRY="http://127.0.0.1:18093"
scripts/setup.sh
echo "== building meshhost and the stock plugins"
cargo build -q -p meshhost
BIN="${CARGO_TARGET_DIR:-target}/debug/meshhost"
meshhost() { "$BIN" "$@"; }

scripts/broker.sh start "$PORT"
RUN_PID=""
CATALOG_PID=""
cleanup() {
    [ -n "$RUN_PID" ] && kill "$RUN_PID" 2>/dev/null || true
    [ -n "$CATALOG_PID" ] && kill "$CATALOG_PID" 2>/dev/null || true
    scripts/broker.sh stop "$PORT"
}
trap cleanup EXIT
scripts/broker.sh topic movies 3 "$PORT"
scripts/broker.sh topic movies-us 3 "$PORT"
scripts/broker.sh topic us-movies-dlq 1 "$PORT"

echo "== meshhost catalog serve: a Schema Registry on $REGISTRY, kept in the topic _meshhost_catalog"
MESHHOST_LOG=warn "$BIN" catalog serve --listen "${REGISTRY#http://}" --bootstrap-servers "$BROKER" &
CATALOG_PID=$!
until curl -sf "$REGISTRY/subjects" >/dev/null 2>&1; do sleep 0.2; done

echo "== producing $(wc -l < demo/movies.jsonl) movies (Confluent wire format) and one malformed record"
meshhost produce movies --bootstrap-servers "$BROKER" --schema demo/movie.avsc --schema-registry "$REGISTRY" --key-field id < demo/movies.jsonl
echo '{"not": "avro"}' | meshhost produce movies --bootstrap-servers "$BROKER"

echo "== meshhost source publish movies: the topic as a source of the catalog"
meshhost source publish movies --catalog "$REGISTRY" --topic movies --subject movies-value \
    --description "Every film in the demo catalog" --owner content-team --tag movies

echo "== meshhost validate demo/pipeline.yaml"
meshhost validate demo/pipeline.yaml

echo "== meshhost run demo/pipeline.yaml"
MESHHOST_LOG=warn "$BIN" run demo/pipeline.yaml &
RUN_PID=$!

echo "== movies-us (US movies since 2000, projected; each value's schema fetched by its id):"
meshhost consume movies-us --bootstrap-servers "$BROKER" --schema-registry "$REGISTRY" --max 4 --idle-seconds 30
echo "== subjects in the registry:"
curl -s "$REGISTRY/subjects"; echo
echo "== meshhost source show movies"
meshhost source show movies --catalog "$REGISTRY"
echo "== meshhost source lineage us-movies"
meshhost source lineage us-movies --catalog "$REGISTRY"
echo "== us-movies-dlq (the malformed record, with its meshhost.error header):"
meshhost consume us-movies-dlq --bootstrap-servers "$BROKER" --max 1 --idle-seconds 30
kill -TERM "$RUN_PID"
wait "$RUN_PID"
RUN_PID=""
echo "== meshhost stopped cleanly on SIGTERM"
