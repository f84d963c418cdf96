"""The component side: the class componentize-py exports as ``meshhost:processor/processor``.

Only importable inside a component build (it uses the bindings componentize-py generates for
the ``plugin`` world). :func:`export` wraps a :class:`meshhost_sdk.Processor` subclass; the
build's entry module does ``Processor = export(MyProcessor)``.
"""

import gc

from componentize_py_types import Err
from wit_world.imports import log as _wit_log
from wit_world.imports import types as _wit

from . import log as _log
from .state import HostState
from .processor import Processor as _Base
from .processor import Record, _batch_head, _load_values, _run_batch, run_init

_LEVELS = {
    "debug": _wit_log.Level.DEBUG,
    "info": _wit_log.Level.INFO,
    "warn": _wit_log.Level.WARN,
    "error": _wit_log.Level.ERROR,
}


def _host_log(level: str, message: str) -> None:
    _wit_log.log(_LEVELS.get(level, _wit_log.Level.INFO), message)


_log._backend = _host_log

# Only the stateful world (chosen by the build for code that uses `self.state`) imports `state`.
try:
    from wit_world.imports import state as _wit_state
except ImportError:
    _wit_state = None

# The cyclic collector would run every few records (its default threshold counts 700
# container allocations, and a parsed record holds several); records rarely form cycles, so
# collect far less often, and keep the objects of start-up out of every collection.
gc.set_threshold(100_000, 20, 20)

# A component instance is single-threaded and holds one processor, built by `init`.
_instance = None
# Per input port, what goes before a batch's values to make them one marshal object (see
# `python-marshal` in wit/processor.wit).
_batch_heads = []



def export(cls: type) -> type:
    """The componentize-py export class for the processor class ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, _Base)):
        raise TypeError(f"{cls!r} is not a subclass of meshhost_sdk.Processor")

    class Processor:
        def init(self, config: str, inputs):
            global _instance, _batch_heads
            state = HostState(_wit_state) if _wit_state is not None else None
            processor, result = run_init(cls, config, [(p.name, p.schema) for p in inputs], state)
            if processor is None:
                raise Err([_wit.ConfigError(e.path, e.message) for e in result])
            _instance = processor
            _batch_heads = [_batch_head(p.value_names) for p in inputs]
            gc.freeze()
            outputs = [_wit.OutputPort(name, schema) for name, schema in result]
            return _wit.InitResult(outputs, _wit.ValueFormat.PYTHON_MARSHAL)

        def process(self, input: int, batch):
            processor = _instance
            if processor is None:
                raise RuntimeError("process called before init")
            records = _records_of(batch, input)
            emitted, failures = _run_batch(processor, input, records)
            return _result(emitted, failures)

    Processor.__name__ = Processor.__qualname__ = "Processor"
    return Processor


def _records_of(batch, input: int):
    """The SDK records of a column-wise WIT batch (see `batch` in wit/processor.wit)."""
    data, at = batch.bytes, 0
    keys, values = [], []
    for key_length, value_length in zip(batch.key_lengths, batch.value_lengths):
        if key_length >= 0:
            keys.append(data[at:at + key_length])
            at += key_length
        else:
            keys.append(None)
        if value_length >= 0:
            values.append(data[at:at + value_length])
            at += value_length
        else:
            values.append(None)
    parsed = _load_values(_batch_heads[input], values)
    timestamps, header_counts, wit_headers = batch.timestamps, batch.header_counts, batch.headers
    records, first_header = [], 0
    for i, value in enumerate(parsed):
        count = header_counts[i]
        if count:
            headers = [(h.key, h.value) for h in wit_headers[first_header:first_header + count]]
            first_header += count
        else:
            headers = []
        timestamp = timestamps[i]
        records.append(Record(value, keys[i], headers, timestamp if timestamp >= 0 else None, i, input))
    return records


def _result(emitted, failures):
    """The column-wise WIT result: every emitted key and value in one buffer, one list per
    record attribute (a length of -1 is none)."""
    chunks = []
    ports, origins, key_lengths, value_lengths, timestamps, header_counts, headers = [], [], [], [], [], [], []
    Header = _wit.Header
    for port, origin, key, value, record_headers, timestamp in emitted:
        ports.append(port)
        origins.append(origin)
        if key is None:
            key_lengths.append(-1)
        else:
            chunks.append(key)
            key_lengths.append(len(key))
        if value is None:
            value_lengths.append(-1)
        else:
            chunks.append(value)
            value_lengths.append(len(value))
        # Kafka has no timestamps before 1970 (-1 is none; -2 would mean "the origin's").
        timestamps.append(-1 if timestamp is None or timestamp < 0 else int(timestamp))
        header_counts.append(len(record_headers))
        if record_headers:
            headers.extend(Header(k, v) for k, v in record_headers)
    batch = _wit.Batch(b"".join(chunks), key_lengths, value_lengths, timestamps, header_counts, headers)
    return _wit.BatchResult(ports, origins, batch, [_wit.Failure(index, reason) for index, reason in failures])
