"""The program a user would write instead of a meshhost pipeline with a Postgres upsert sink: a
plain confluent-kafka + fastavro + psycopg loop that consumes, decodes, upserts each batch with
`executemany` (psycopg 3 pipelines it), commits the transaction, then commits the offsets (at
least once, like meshhost).

    python postgres_loop.py BROKER INPUT GROUP RECORDS MOVIE.avsc DATABASE_URL TABLE

The table exists (the bench creates it like meshhost's). It stops once it has consumed RECORDS
records and committed them, and prints {"records": N, "seconds": S} from the first batch on.
"""

import io
import json
import sys
import time

import fastavro
import psycopg
from confluent_kafka import Consumer
from psycopg.types.json import Jsonb

broker, input_topic, group, records, movie_path, url, table = sys.argv[1:8]
records = int(records)
movie = fastavro.parse_schema(json.load(open(movie_path)))
COLUMNS = ["id", "title", "year", "country", "rating", "genre", "director", "tags", "awards", "synopsis"]
JSON_COLUMNS = {"director", "awards"}
UPSERT = (
    f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
    f"ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in COLUMNS if c != 'id')}"
)

consumer = Consumer({
    "bootstrap.servers": broker,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
consumer.subscribe([input_topic])
started = None  # when the first batch arrived: the rate leaves start-up and the group join out
with psycopg.connect(url) as connection:
    seen = 0
    while seen < records:
        batch = consumer.consume(num_messages=1000, timeout=1.0)
        if batch and started is None:
            started = time.monotonic()
        rows = []
        for message in batch:
            if message.error():
                raise SystemExit(f"consume: {message.error()}")
            value = fastavro.schemaless_reader(io.BytesIO(message.value()), movie, None)
            rows.append([
                Jsonb(value[c]) if c in JSON_COLUMNS else value[c] for c in COLUMNS
            ])
        if rows:
            with connection.cursor() as cursor:
                cursor.executemany(UPSERT, rows)
            connection.commit()
            consumer.commit(asynchronous=False)
        seen += len(batch)
print(json.dumps({"records": seen, "seconds": time.monotonic() - started}))
consumer.close()
