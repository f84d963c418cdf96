#!/usr/bin/env bash
# The change data capture demo, the Data Mesh movie entity as one pipeline: the Postgres table
# movies, captured (row envelope), left-joined with the Kafka topic talents
# (demo/cdc/pipeline.yaml) into the Kafka topic movies-enriched; then an UPDATE and a DELETE in
# Postgres and a new talent on Kafka, and the changed and retracted join results appear.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PORT=19094
PG_PORT=15433
BROKER="127.0.0.1:$PORT"
scripts/setup.sh
cargo build -q -p meshhost
BIN="${CARGO_TARGET_DIR:-target}/debug/meshhost"
scripts/broker.sh start "$PORT"
scripts/postgres.sh start "$PG_PORT" >/dev/null
RUN_PID=""
cleanup() {
    [ -n "$RUN_PID" ] && kill "$RUN_PID" 2>/dev/null || true
    scripts/broker.sh stop "$PORT"
    scripts/postgres.sh stop "$PG_PORT"
}
trap cleanup EXIT
export PGPASSWORD=meshhost
sql() { scripts/postgres.sh psql "$PG_PORT" -c "$1"; }
rm -rf target/demo-cdc-state
sql "CREATE TABLE movies (id text PRIMARY KEY, title text NOT NULL, year int NOT NULL);
     INSERT INTO movies VALUES ('m1', 'Inception', 2010), ('m2', 'Moonlight', 2016), ('m3', 'Free Solo', 2018);"
scripts/broker.sh topic talents 6 "$PORT"
scripts/broker.sh topic movies-enriched 1 "$PORT"
printf '%s\n' '{"movie_id": "m1", "cast": ["Leonardo DiCaprio", "Elliot Page"]}' '{"movie_id": "m2", "cast": ["Mahershala Ali"]}' |
    "$BIN" produce talents --bootstrap-servers "$BROKER" --key-field movie_id
echo "== meshhost run demo/cdc/pipeline.yaml (a snapshot of movies, then its changes, joined with talents)"
MESHHOST_LOG=warn "$BIN" run demo/cdc/pipeline.yaml &
RUN_PID=$!
echo "== movies-enriched after the snapshot:"
"$BIN" consume movies-enriched --bootstrap-servers "$BROKER" --idle-seconds 5 | cut -c1-220
echo "== UPDATE movies SET year = 2011 WHERE id = 'm1'; DELETE FROM movies WHERE id = 'm2'"
sql "UPDATE movies SET year = 2011 WHERE id = 'm1'"
sql "DELETE FROM movies WHERE id = 'm2'"
echo '== talents on Kafka: {"movie_id": "m3", "cast": ["Alex Honnold"]}'
echo '{"movie_id": "m3", "cast": ["Alex Honnold"]}' | "$BIN" produce talents --bootstrap-servers "$BROKER" --key-field movie_id
sleep 3
echo "== movies-enriched now (the last three records: m1 changed, m2 retracted by a tombstone, m3 joined):"
"$BIN" consume movies-enriched --bootstrap-servers "$BROKER" --idle-seconds 5 | cut -c1-220
kill -TERM "$RUN_PID"
wait "$RUN_PID"
RUN_PID=""
