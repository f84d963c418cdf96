"""The program a user would write instead of a meshhost pipeline with the bench's Python plugin:
a plain confluent-kafka + fastavro loop that consumes, decodes, filters, projects, encodes,
produces and commits (after the produced records are delivered: at least once, like meshhost).

    python plain_loop.py BROKER INPUT OUTPUT GROUP RECORDS MOVIE.avsc SLIM.avsc

It stops once it has consumed RECORDS records and their output is delivered and committed.
"""

import io
import json
import sys

import fastavro
from confluent_kafka import Consumer, Producer

broker, input_topic, output_topic, group, records, movie_path, slim_path = sys.argv[1:8]
records = int(records)
movie = fastavro.parse_schema(json.load(open(movie_path)))
slim = fastavro.parse_schema(json.load(open(slim_path)))
# Output field ← input field, in the output's order (title is renamed to name).
FIELDS = [("id", "id"), ("name", "title"), ("year", "year"), ("director", "director"), ("rating", "rating"), ("synopsis", "synopsis")]

consumer = Consumer({
    "bootstrap.servers": broker,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
producer = Producer({"bootstrap.servers": broker, "linger.ms": 5})
consumer.subscribe([input_topic])

seen = 0
while seen < records:
    batch = consumer.consume(num_messages=1000, timeout=1.0)
    for message in batch:
        if message.error():
            raise SystemExit(f"consume: {message.error()}")
        value = fastavro.schemaless_reader(io.BytesIO(message.value()), movie, None)
        if value["year"] >= 2000 and value["country"] == "US":
            out = io.BytesIO()
            fastavro.schemaless_writer(out, slim, {name: value[field] for name, field in FIELDS})
            while True:
                try:
                    producer.produce(output_topic, out.getvalue(), key=message.key())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    seen += len(batch)
    if batch:
        producer.flush()
        consumer.commit(asynchronous=False)
consumer.close()
