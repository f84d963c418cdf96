"""The component side: the class componentize-py exports as ``meshhost:processor/processor``.

Only importable inside a component build (it uses the bindings componentize-py generates for
the ``plugin`` world). :func:`export` wraps a :class:`meshhost_sdk.Processor` subclass; the
build's entry module does ``Processor = export(MyProcessor)``.
"""

import json

from componentize_py_types import Err
from wit_world.imports import log as _wit_log
from wit_world.imports import types as _wit

from . import log as _log
from .processor import Processor as _Base
from .processor import Record, _run_batch, run_init

_LEVELS = {
    "debug": _wit_log.Level.DEBUG,
    "info": _wit_log.Level.INFO,
    "warn": _wit_log.Level.WARN,
    "error": _wit_log.Level.ERROR,
}


def _host_log(level: str, message: str) -> None:
    _wit_log.log(_LEVELS.get(level, _wit_log.Level.INFO), message)


_log._backend = _host_log

# A component instance is single-threaded and holds one processor, built by `init`.
_instance = None


def export(cls: type) -> type:
    """The componentize-py export class for the processor class ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, _Base)):
        raise TypeError(f"{cls!r} is not a subclass of meshhost_sdk.Processor")

    class Processor:
        def init(self, config: str, inputs):
            global _instance
            processor, result = run_init(cls, config, [(p.name, p.schema) for p in inputs])
            if processor is None:
                raise Err([_wit.ConfigError(e.path, e.message) for e in result])
            _instance = processor
            return _wit.InitResult([_wit.OutputPort(name, schema) for name, schema in result], _wit.ValueFormat.JSON)

        def process(self, input: int, batch):
            processor = _instance
            if processor is None:
                raise RuntimeError("process called before init")
            records, failures = _records_of(batch, input)
            emitted, batch_failures = _run_batch(processor, input, records)
            failures.extend(batch_failures)
            return _result(emitted, failures)

    Processor.__name__ = Processor.__qualname__ = "Processor"
    return Processor


def _records_of(batch, input: int):
    """The SDK records of a column-wise WIT batch (see `batch` in wit/processor.wit), and the
    failures of values that are not JSON."""
    data, at, first_header = batch.bytes, 0, 0
    records, failures = [], []
    for i, (key_length, value_length) in enumerate(zip(batch.key_lengths, batch.value_lengths)):
        key = value = None
        if key_length >= 0:
            key, at = data[at:at + key_length], at + key_length
        if value_length >= 0:
            value, at = data[at:at + value_length], at + value_length
        count = batch.header_counts[i]
        headers = [(h.key, h.value) for h in batch.headers[first_header:first_header + count]]
        first_header += count
        if value is not None:
            try:
                value = json.loads(value)
            except ValueError as error:
                failures.append((i, f"the value is not JSON: {error}"))
                continue
        timestamp = batch.timestamps[i]
        records.append(Record(value, key, headers, timestamp if timestamp >= 0 else None, i, input))
    return records, failures


def _result(emitted, failures):
    """The column-wise WIT result: every emitted key and value in one buffer, one list per
    record attribute (a length of -1 is none)."""
    data = bytearray()

    def length(part):
        if part is None:
            return -1
        data.extend(part)
        return len(part)

    ports, origins, key_lengths, value_lengths, timestamps, header_counts, headers = [], [], [], [], [], [], []
    for port, origin, key, value, record_headers, timestamp in emitted:
        ports.append(port)
        origins.append(origin)
        key_lengths.append(length(key))
        value_lengths.append(length(value))
        # Kafka has no timestamps before 1970 (-1 is none; -2 would mean "the origin's").
        timestamps.append(-1 if timestamp is None or timestamp < 0 else int(timestamp))
        header_counts.append(len(record_headers))
        headers.extend(_wit.Header(k, v) for k, v in record_headers)
    batch = _wit.Batch(bytes(data), key_lengths, value_lengths, timestamps, header_counts, headers)
    return _wit.BatchResult(ports, origins, batch, [_wit.Failure(index, reason) for index, reason in failures])
