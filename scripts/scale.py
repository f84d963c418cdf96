#!/usr/bin/env python3
"""Scale-out figures: throughput of 1, 2 and 3 `meshhost run` instances of one pipeline
(filter + projection over a 6-partition topic), and the time from a member's SIGKILL to its
partitions being committed again by another member.

    scripts/scale.sh [--records N]     (starts a broker, builds meshhost in release, runs this)

Independent of meshhost's own code: records are written and offsets read with confluent-kafka.
"""
import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import fastavro
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

SCHEMA = {
    "type": "record", "name": "Movie", "namespace": "scale",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "title", "type": "string"},
        {"name": "year", "type": "int"},
        {"name": "country", "type": "string"},
        {"name": "synopsis", "type": "string"},
    ],
}
PARTITIONS = 6


def create_topics(broker, *names):
    admin = AdminClient({"bootstrap.servers": broker})
    futures = admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    for future in futures.values():
        future.result()


def produce(broker, topic, count):
    parsed = fastavro.parse_schema(SCHEMA)
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 20, "queue.buffering.max.messages": 500000})
    synopsis = "x" * 120
    for i in range(count):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, {
            "id": i, "title": f"Movie {i}", "year": 1950 + i % 75,
            "country": ["US", "FR", "JP"][i % 3], "synopsis": synopsis})
        while True:
            try:
                producer.produce(topic, key=f"movie-{i}".encode(), value=out.getvalue())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def ends(broker, topic):
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "scale-probe"})
    result = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    consumer.close()
    return result


def committed(broker, group, topic):
    consumer = Consumer({"bootstrap.servers": broker, "group.id": group})
    parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    consumer.close()
    return {tp.partition: tp.offset for tp in parts}


def write_pipeline(directory, name, input_topic, output_topic):
    with open(os.path.join(directory, "movie.avsc"), "w") as f:
        import json
        json.dump(SCHEMA, f)
    path = os.path.join(directory, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(f"""name: {name}
kafka:
  properties: {{session.timeout.ms: "6000", heartbeat.interval.ms: "500"}}
sources:
  movies: {{topic: {input_topic}, format: avro, schema: movie.avsc}}
processors:
  recent:
    uses: mesh/filter@0.1
    inputs: [movies]
    with: {{condition: "year >= 2000 && country == 'US'"}}
  slim:
    uses: mesh/projection@0.1
    inputs: [recent]
    with: {{fields: [id, title, year]}}
sinks:
  out: {{topic: {output_topic}, format: avro, inputs: [slim]}}
""")
    return path


def start(meshhost, pipeline, broker, log):
    return subprocess.Popen([meshhost, "run", pipeline, "--bootstrap-servers", broker],
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))


def wait_committed(broker, group, topic, target, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        now = committed(broker, group, topic)
        if all(now.get(p, -1) >= target[p] for p in target):
            return time.time()
        time.sleep(0.2)
    sys.exit(f"offsets of {group} never reached {target}")


def throughput(meshhost, broker, directory, input_topic, records, instances):
    name = f"scale-{instances}-{uuid.uuid4().hex[:6]}"
    output = f"{name}-out"
    create_topics(broker, output)
    pipeline = write_pipeline(directory, name, input_topic, output)
    target = ends(broker, input_topic)
    started = time.time()
    runs = [start(meshhost, pipeline, broker, os.path.join(directory, f"{name}-{i}.log")) for i in range(instances)]
    done = wait_committed(broker, f"meshhost-{name}", input_topic, target)
    for run in runs:
        run.send_signal(signal.SIGTERM)
    for run in runs:
        run.wait(60)
    return records / (done - started)


def feed(broker, topic, stop):
    """Keep records arriving (about 20k/s) until `stop` is set."""
    parsed = fastavro.parse_schema(SCHEMA)
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 20})
    i = 0
    while not stop.is_set():
        for _ in range(2000):
            out = io.BytesIO()
            fastavro.schemaless_writer(out, parsed, {
                "id": i, "title": f"Movie {i}", "year": 2001, "country": "US", "synopsis": "live"})
            producer.produce(topic, key=f"live-{i}".encode(), value=out.getvalue())
            i += 1
        producer.poll(0)
        time.sleep(0.1)
    producer.flush(30)


def failover(meshhost, broker, directory, input_topic):
    """Two members reading a live stream; SIGKILL one; seconds until its partitions commit again."""
    name = f"failover-{uuid.uuid4().hex[:6]}"
    live = f"{name}-in"
    create_topics(broker, live)
    input_topic = live
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(broker, live, stop))
    feeder.start()
    output = f"{name}-out"
    create_topics(broker, output)
    pipeline = write_pipeline(directory, name, input_topic, output)
    group = f"meshhost-{name}"
    logs = [os.path.join(directory, f"{name}-{i}.log") for i in range(2)]
    a = start(meshhost, pipeline, broker, logs[0])
    time.sleep(3)
    b = start(meshhost, pipeline, broker, logs[1])
    # b is working once it has committed something of its own partitions
    deadline = time.time() + 60
    while "partitions assigned" not in open(logs[1]).read() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(2)
    owned_b = [p for p in range(PARTITIONS) if f'"{input_topic}", {p})' in open(logs[1]).read().split("partitions assigned")[-1]]
    before = committed(broker, group, input_topic)
    b.send_signal(signal.SIGKILL)
    killed = time.time()
    b.wait()
    resumed = None
    while time.time() < killed + 120:
        now = committed(broker, group, input_topic)
        if owned_b and all(now.get(p, -1) > before.get(p, -1) for p in owned_b):
            resumed = time.time()
            break
        time.sleep(0.1)
    a.send_signal(signal.SIGTERM)
    a.wait(60)
    stop.set()
    feeder.join()
    return owned_b, (resumed - killed) if resumed else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--meshhost", required=True)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="meshhost-scale-")
    input_topic = f"scale-in-{uuid.uuid4().hex[:6]}"
    create_topics(args.broker, input_topic)
    print(f"producing {args.records} records into {input_topic} ({PARTITIONS} partitions)...", flush=True)
    produce(args.broker, input_topic, args.records)
    rates = {}
    for instances in (1, 2, 3):
        rates[instances] = throughput(args.meshhost, args.broker, directory, input_topic, args.records, instances)
        print(f"{instances} instance(s): {rates[instances]:,.0f} records/s "
              f"({rates[instances] / rates[1]:.2f}x one instance)", flush=True)
    owned, seconds = failover(args.meshhost, args.broker, directory, input_topic)
    if seconds is None:
        print(f"SIGKILL of a member (partitions {owned}): its partitions did not commit again within 120 s")
    else:
        print(f"SIGKILL of a member (partitions {owned}): committed again by the other member after {seconds:.1f} s "
              f"(session.timeout.ms 6000)")


if __name__ == "__main__":
    main()
