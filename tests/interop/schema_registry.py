#!/usr/bin/env python3
"""Interop checks of meshhost against the independent Confluent Python client.

meshhost serves the Confluent Schema Registry REST API (`meshhost catalog serve`) and reads and
writes `format: confluent-avro` Kafka topics. The Rust integration tests run this script, with the
python of the venv made by scripts/pyenv.sh, to prove that confluent-kafka's SchemaRegistryClient,
AvroSerializer and AvroDeserializer work against both.

Every subcommand prints its result as JSON on stdout: one document, or one JSON line per record
for `consume`. Exit codes:
  0  success
  1  any other failure (message on stderr)
  2  bad arguments (argparse)
  3  the registry answered with an error: stdout holds
     {"error_code": E, "http_status": H, "message": M}, e.g. 40401, 40402, 40403, 409, 42201
  4  `consume` got fewer records than --count before --timeout

The registry client is made with max.retries 0, so an HTTP 5xx answer is reported at once instead
of being retried with back-off (the library's default is 2 retries).
"""

import argparse
import datetime
import decimal
import json
import sys
import time
import uuid

import fastavro
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

EXIT_REGISTRY_ERROR = 3
EXIT_TOO_FEW_RECORDS = 4


class TooFewRecords(Exception):
    """`consume` timed out before reading --count records."""


def _json_default(value):
    """Render what Avro decoding yields beyond plain JSON types."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def emit(value):
    """Print one JSON document (or JSON line) on stdout."""
    print(json.dumps(value, default=_json_default), flush=True)


def registry(url):
    """A SchemaRegistryClient for url, reporting errors without retrying."""
    return SchemaRegistryClient({"url": url, "max.retries": 0, "timeout": 30})


def read_schema(path):
    """The Avro schema in the file at path, as the client's Schema."""
    with open(path, encoding="utf-8") as f:
        return Schema(f.read(), "AVRO")


def parse_version(text):
    """A version argument: "latest" or an integer."""
    return text if text == "latest" else int(text)


def registered(reg):
    """A RegisteredSchema as {"id", "version", "subject", "schema"}."""
    out = {"id": reg.schema_id, "version": reg.version, "subject": reg.subject}
    if reg.schema is not None and reg.schema.schema_str is not None:
        out["schema"] = json.loads(reg.schema.schema_str)
    return out


# Registry subcommands


def cmd_register(a):
    """POST /subjects/{subject}/versions."""
    emit({"id": registry(a.url).register_schema(a.subject, read_schema(a.schema_file))})


def cmd_lookup(a):
    """POST /subjects/{subject}: is this schema registered under subject?"""
    reg = registry(a.url).lookup_schema(a.subject, read_schema(a.schema_file))
    emit({"id": reg.schema_id, "version": reg.version, "subject": reg.subject})


def cmd_get_by_id(a):
    """GET /schemas/ids/{id} (with ?subject= when --subject is given, as the deserializer does)."""
    schema = registry(a.url).get_schema(a.id, subject_name=a.subject)
    emit({"schema": json.loads(schema.schema_str), "schemaType": schema.schema_type})


def cmd_latest(a):
    """GET /subjects/{subject}/versions/latest."""
    emit(registered(registry(a.url).get_latest_version(a.subject)))


def cmd_version(a):
    """GET /subjects/{subject}/versions/{version}."""
    emit(registered(registry(a.url).get_version(a.subject, parse_version(a.version), deleted=a.deleted)))


def cmd_versions(a):
    """GET /subjects/{subject}/versions."""
    emit(registry(a.url).get_versions(a.subject, deleted=a.deleted))


def cmd_subjects(a):
    """GET /subjects."""
    emit(registry(a.url).get_subjects(deleted=a.deleted))


def cmd_compatible(a):
    """POST /compatibility/subjects/{subject}/versions/{version}."""
    schema, version = read_schema(a.schema_file), parse_version(a.version)
    emit({"is_compatible": registry(a.url).test_compatibility(a.subject, schema, version=version)})


def cmd_set_compat(a):
    """PUT /config or /config/{subject} with {"compatibility": LEVEL}; prints the answer."""
    emit(registry(a.url).set_compatibility(subject_name=a.subject, level=a.level))


def cmd_get_compat(a):
    """GET /config or /config/{subject}; prints {"compatibilityLevel": LEVEL}."""
    emit({"compatibilityLevel": registry(a.url).get_compatibility(subject_name=a.subject)})


def cmd_delete_subject(a):
    """DELETE /subjects/{subject}[?permanent=true]; prints the deleted versions."""
    emit(registry(a.url).delete_subject(a.subject, permanent=a.permanent))


def cmd_delete_version(a):
    """DELETE /subjects/{subject}/versions/{version}[?permanent=true]; prints the deleted version."""
    emit(registry(a.url).delete_version(a.subject, parse_version(a.version), permanent=a.permanent))


# Kafka subcommands


def produce_all(producer, messages):
    """Produce (topic, key, value) triples, wait for every delivery, raise on any failure."""
    failures = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(err)

    for topic, key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(30)
    if left:
        raise KafkaException(f"{left} message(s) not delivered within 30 s")
    if failures:
        raise KafkaException(failures[0])


def read_records(path):
    """The dicts of a JSON-lines file ("-" for stdin), blank lines skipped."""
    f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with f:
        return [json.loads(line) for line in f if line.strip()]


# The Avro types that a JSON value of each type may stand for, when it has to pick a union branch.
JSON_FITS = {str: ("string", "enum", "bytes", "fixed"), dict: ("record", "map"), list: ("array",)}


def avro_kind(schema):
    """The type name of a (non-union) Avro schema: "record", "bytes", a named type's name..."""
    return schema["type"] if isinstance(schema, dict) else schema


def json_to_avro(schema, value, named):
    """Turn JSON strings into bytes where the Avro schema wants bytes or fixed (latin-1, the
    inverse of how `consume` prints them), defaults of absent fields included (fastavro would
    write a bytes default as given, a str, and fail); fastavro takes everything else as is."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, dict) and isinstance(schema["type"], (list, dict)):  # {"type": [...] or {...}}
        return json_to_avro(schema["type"], value, named)
    if isinstance(schema, list):  # a union: the first branch the JSON value can be
        fits = JSON_FITS.get(type(value), ())
        for branch in schema:
            branch = named.get(branch, branch) if isinstance(branch, str) else branch
            if avro_kind(branch) in fits:
                return json_to_avro(branch, value, named)
        return value
    kind = avro_kind(schema)
    if kind in ("bytes", "fixed") and isinstance(value, str):
        return value.encode("latin-1")
    if kind == "record" and isinstance(value, dict):
        out = dict(value)
        for field in schema["fields"]:
            name, ftype = field["name"], field["type"]
            if name in value:
                out[name] = json_to_avro(ftype, value[name], named)
            elif "default" in field:  # a union's default is of its first branch
                first = ftype[0] if isinstance(ftype, list) else ftype
                out[name] = json_to_avro(first, field["default"], named)
        return out
    if kind == "array" and isinstance(value, list):
        return [json_to_avro(schema["items"], v, named) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: json_to_avro(schema["values"], v, named) for k, v in value.items()}
    return value


def cmd_produce(a):
    """Serialize each record with AvroSerializer (auto-registering under <topic>-value) and produce."""
    schema_str = read_schema(a.schema_file).schema_str
    parsed = fastavro.parse_schema(json.loads(schema_str))
    named = parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}
    serializer = AvroSerializer(registry(a.url), schema_str, conf={"auto.register.schemas": True})
    ctx = SerializationContext(a.topic, MessageField.VALUE)
    messages = []
    for record in read_records(a.records):
        key = None if a.key_field is None else str(record[a.key_field]).encode()
        messages.append((a.topic, key, serializer(json_to_avro(parsed, record, named), ctx)))
    produce_all(Producer({"bootstrap.servers": a.bootstrap}), messages)
    schema_id = int.from_bytes(messages[0][2][1:5], "big") if messages else None
    emit({"produced": len(messages), "schema_id": schema_id})


def cmd_produce_raw(a):
    """Produce values given as hex strings, unchanged (for bad-input tests)."""
    messages = [(a.topic, None, bytes.fromhex(h)) for h in a.hex]
    produce_all(Producer({"bootstrap.servers": a.bootstrap}), messages)
    emit({"produced": len(messages)})


def cmd_produce_keyed(a):
    """Produce {"key": K, "value": V} lines as JSON values (null: a tombstone) with the producer's
    own partitioner; print {produced, partitions: {key: partition}} as the broker placed them."""
    placed = {}

    def on_delivery(err, msg):
        if err is None:
            placed[msg.key().decode()] = msg.partition()

    conf = {"bootstrap.servers": a.bootstrap}
    if a.partitioner:
        conf["partitioner"] = a.partitioner
    producer = Producer(conf)
    for record in read_records(a.records):
        value = None if record["value"] is None else json.dumps(record["value"]).encode()
        producer.produce(a.topic, key=record["key"].encode(), value=value, on_delivery=on_delivery)
        producer.poll(0)
    left = producer.flush(30)
    if left:
        raise KafkaException(f"{left} message(s) not delivered within 30 s")
    emit({"produced": len(placed), "partitions": placed})


def cmd_consume(a):
    """Read --count values from the start of the topic; decode with AvroDeserializer, or --raw."""
    if not a.raw and a.url is None:
        raise ValueError("consume needs the registry URL unless --raw")
    deserializer = None if a.raw else AvroDeserializer(registry(a.url))
    consumer = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "group.id": a.group or f"meshhost-interop-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([a.topic])
    deadline = time.monotonic() + a.timeout
    got = 0
    try:
        while got < a.count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TooFewRecords(f"got {got} of {a.count} records from {a.topic} within {a.timeout} s")
            msg = consumer.poll(min(left, 1.0))
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                # e.g. the topic does not exist yet, or the broker is not up yet: --timeout bounds it
                print(f"consume: {msg.error()}", file=sys.stderr)
                continue
            value = msg.value()
            if a.raw:
                emit(
                    None
                    if value is None
                    else {
                        "magic": value[0] if value else None,
                        "schema_id": int.from_bytes(value[1:5], "big") if len(value) >= 5 else None,
                        "length": len(value),
                    }
                )
            else:
                ctx = SerializationContext(msg.topic(), MessageField.VALUE, msg.headers())
                emit(deserializer(value, ctx))
            got += 1
    finally:
        consumer.close()


def parser():
    """The command line."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Exit codes: see the module docstring."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(spec, func, help_):
        """A subcommand from "name positional...", described by func's docstring."""
        name, *positionals = spec.split()
        s = sub.add_parser(name, help=help_, description=func.__doc__)
        for arg in positionals:
            s.add_argument(arg)
        s.set_defaults(func=func)
        return s

    command("register url subject schema_file", cmd_register, "register a schema, print {id}")
    command("lookup url subject schema_file", cmd_lookup, "print {id, version, subject} of a registered schema")
    s = command("get-by-id url", cmd_get_by_id, "print {schema, schemaType} of a schema id")
    s.add_argument("id", type=int)
    s.add_argument("--subject", help="pass ?subject=S, as AvroDeserializer does")
    command("latest url subject", cmd_latest, "print {id, version, subject, schema} of the latest version")
    s = command("version url subject version", cmd_version, "print {id, version, subject, schema} of a version")
    s.add_argument("--deleted", action="store_true", help="include soft-deleted versions")
    s = command("versions url subject", cmd_versions, "print a subject's versions")
    s.add_argument("--deleted", action="store_true", help="include soft-deleted versions")
    s = command("subjects url", cmd_subjects, "print the subjects")
    s.add_argument("--deleted", action="store_true", help="include soft-deleted subjects")
    s = command("compatible url subject schema_file", cmd_compatible, "print {is_compatible} against a version")
    s.add_argument("--version", default="latest", help="latest (default) or a version number")
    s = command("set-compat url level", cmd_set_compat, "set the global or a subject's compatibility level")
    s.add_argument("--subject")
    s = command("get-compat url", cmd_get_compat, "print {compatibilityLevel}, global or a subject's")
    s.add_argument("--subject")
    s = command("delete-subject url subject", cmd_delete_subject, "delete a subject, print the deleted versions")
    s.add_argument("--permanent", action="store_true", help="hard delete (after a soft one)")
    s = command("delete-version url subject version", cmd_delete_version, "delete a version, print it")
    s.add_argument("--permanent", action="store_true", help="hard delete (after a soft one)")
    s = command(
        "produce bootstrap url topic schema_file records",
        cmd_produce,
        "produce JSON-lines records (a file, or - for stdin) as Confluent Avro, print {produced, schema_id}",
    )
    s.add_argument("--key-field", help="use str(record[F]) as the message key")
    s = command(
        "produce-keyed bootstrap topic records",
        cmd_produce_keyed,
        "produce {key, value} JSON lines as JSON values, print {produced, partitions}",
    )
    s.add_argument("--partitioner", help="librdkafka's partitioner (default: its consistent_random)")
    s = command("produce-raw bootstrap topic", cmd_produce_raw, "produce values given in hex, print {produced}")
    s.add_argument("hex", nargs="+", help="one message value, as hex")
    s = command("consume bootstrap", cmd_consume, "print --count values from the start of a topic, as JSON lines")
    s.add_argument("url", nargs="?", help="the registry (not needed with --raw)")
    s.add_argument("topic")
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    s.add_argument("--group", help="consumer group (default: a fresh one)")
    s.add_argument("--raw", action="store_true", help="print {magic, schema_id, length} instead of decoding")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except SchemaRegistryError as e:
        emit({"error_code": e.error_code, "http_status": e.http_status_code, "message": e.error_message})
        print(f"{args.command}: registry error: {e}", file=sys.stderr)
        return EXIT_REGISTRY_ERROR
    except TooFewRecords as e:
        print(f"{args.command}: {e}", file=sys.stderr)
        return EXIT_TOO_FEW_RECORDS
    except Exception as e:  # noqa: BLE001 - any other failure is reported the same way
        print(f"{args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
