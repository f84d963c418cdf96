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
    """The SDK records of a column-wise WIT batch, and the failures of values that are not JSON."""
    data = batch.bytes

    def part(span):
        return None if span is None else data[span.offset:span.offset + span.length]

    records, failures = [], []
    for i, r in enumerate(batch.records):
        value = None
        if r.value is not None:
            try:
                value = json.loads(part(r.value))
            except ValueError as error:
                failures.append((i, f"the value is not JSON: {error}"))
                continue
        headers = [(h.key, part(h.value)) for h in batch.headers[r.headers.offset:r.headers.offset + r.headers.length]]
        records.append(Record(value, part(r.key), headers, r.timestamp, i, input))
    return records, failures


def _result(emitted, failures):
    """The column-wise WIT result: every emitted key, value and header value in one buffer."""
    data = bytearray()
    headers = []

    def span(part):
        if part is None:
            return None
        start = len(data)
        data.extend(part)
        return _wit.Span(start, len(part))

    emits = []
    for port, origin, key, value, record_headers, timestamp in emitted:
        first = len(headers)
        headers.extend(_wit.Header(k, span(v)) for k, v in record_headers)
        record = _wit.Record(span(key), span(value), _wit.Span(first, len(record_headers)), timestamp)
        emits.append(_wit.Emit(port, origin, _wit.Content_Record(record)))
    failures = [_wit.Failure(index, reason) for index, reason in failures]
    return _wit.BatchResult(emits, failures, bytes(data), headers)
