#!/usr/bin/env bash
# The change data capture demo: Postgres tables movies and talents, captured (row envelope) and
# joined (demo/cdc/pipeline.yaml) into the Kafka topic movies-enriched; then an UPDATE and a
# DELETE in Postgres, and the changed and retracted join results appear.
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
     CREATE TABLE talents (movie_id text PRIMARY KEY, cast_names text[] NOT NULL);
     -- updates must carry unchanged long (TOASTed) values: meshhost asks for the whole old row
     ALTER TABLE movies REPLICA IDENTITY FULL;
     ALTER TABLE talents REPLICA IDENTITY FULL;
     INSERT INTO movies VALUES ('m1', 'Inception', 2010), ('m2', 'Moonlight', 2016), ('m3', 'Free Solo', 2018);
     INSERT INTO talents VALUES ('m1', '{Leonardo DiCaprio,Elliot Page}'), ('m2', '{Mahershala Ali}');"
scripts/broker.sh topic movies-enriched 1 "$PORT"
echo "== meshhost run demo/cdc/pipeline.yaml (snapshot of both tables, then their changes)"
MESHHOST_LOG=warn "$BIN" run demo/cdc/pipeline.yaml &
RUN_PID=$!
echo "== movies-enriched after the snapshot:"
"$BIN" consume movies-enriched --bootstrap-servers "$BROKER" --idle-seconds 5 | cut -c1-220
echo "== UPDATE movies SET year = 2011 WHERE id = 'm1'; DELETE FROM movies WHERE id = 'm2'"
sql "UPDATE movies SET year = 2011 WHERE id = 'm1'"
sql "DELETE FROM movies WHERE id = 'm2'"
sleep 3
echo "== movies-enriched now (the last two records: m1 changed, m2 retracted by a tombstone):"
"$BIN" consume movies-enriched --bootstrap-servers "$BROKER" --idle-seconds 5 | cut -c1-220
kill -TERM "$RUN_PID"
wait "$RUN_PID"
RUN_PID=""
