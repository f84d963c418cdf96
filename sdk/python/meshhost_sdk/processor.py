"""The pure-Python side of a meshhost processor: no WebAssembly here, so a processor's logic can
be tested with plain ``python`` (see :meth:`Processor.run_batch`)."""

from __future__ import annotations

import json
import marshal
import struct
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, List, Optional, Tuple, Union

from .state import MemoryState, State

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "RecordError",
    "Port",
    "OutputPort",
    "Record",
    "Routed",
    "to",
    "Processor",
    "Batch",
]


class ConfigError(Exception):
    """A problem with the processor's ``with:`` configuration or its inputs.

    ``path`` is where the problem is, relative to the ``with:`` mapping (``fields[1]``,
    ``salt``), or ``""`` when it concerns the processor as a whole. Raise it from ``init``;
    raise :class:`ConfigErrors` to report several at once.
    """

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class ConfigErrors(Exception):
    """Several :class:`ConfigError` at once, raised from ``init``."""

    def __init__(self, errors: Iterable[ConfigError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class RecordError(Exception):
    """Raise from ``process_record`` to reject the record with exactly this message (the
    ``meshhost.error`` header of its dead letter). Any other exception rejects the record too,
    with ``"<ExceptionType>: <message>"`` as the reason."""


@dataclass
class Port:
    """An input port: the id of the upstream source or processor, and the Avro schema of its
    values, parsed (``schema``, a dict for a record) and as text (``schema_text``)."""

    name: str
    schema: Any
    schema_text: str

    def fields(self) -> List[dict]:
        """The fields of a record schema (``[]`` for any other schema)."""
        if isinstance(self.schema, dict) and self.schema.get("type") == "record":
            return list(self.schema.get("fields", []))
        return []

    def field(self, name: str) -> Optional[dict]:
        """The field called ``name`` of a record schema, or ``None``."""
        for f in self.fields():
            if f.get("name") == name:
                return f
        return None


@dataclass
class OutputPort:
    """An output port the processor declares in ``init``. ``schema`` is an Avro schema: a
    dict/list (it is serialized), JSON text, or a primitive type name such as ``"string"``."""

    name: str
    schema: Any

    def schema_text(self) -> str:
        if isinstance(self.schema, str):
            try:
                json.loads(self.schema)
                return self.schema
            except ValueError:
                return json.dumps(self.schema)
        return json.dumps(self.schema, separators=(",", ":"))


@dataclass(slots=True)
class Record:
    """One record. ``value`` is the record's value as plain Python (``None`` for a tombstone):
    a record or map is a dict, an array a list, a union its branch's value, an enum its symbol,
    Avro bytes and fixed are ``bytes``. ``key`` and header values are bytes; ``timestamp`` is milliseconds since the Unix epoch or ``None``.
    ``index`` is the record's position in its batch (the ``origin`` of what derives from it) and
    ``input`` the input port it arrived on."""

    value: Any = None
    key: Optional[bytes] = None
    headers: List[Tuple[str, Optional[bytes]]] = field(default_factory=list)
    timestamp: Optional[int] = None
    index: int = 0
    input: int = 0

    def header(self, name: str) -> Optional[bytes]:
        """The value of the last header called ``name``, or ``None``."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    def with_value(self, value: Any) -> "Record":
        """A copy of this record (key, headers, timestamp) with another value."""
        return replace(self, value=value, headers=list(self.headers))


@dataclass(frozen=True)
class Routed:
    """What :func:`to` returns: a value (or :class:`Record`) for a given output port."""

    port: Union[int, str]
    value: Any


def to(port: Union[int, str], value: Any) -> Routed:
    """Route ``value`` (a dict, ``None`` for a tombstone, or a :class:`Record`) to output
    ``port`` (its index or its name); return it, or a list of them, from ``process_record``."""
    return Routed(port, value)


@dataclass
class Batch:
    """The outcome of :meth:`Processor.run_batch`: ``emitted`` as ``(port name, origin,
    Record)`` and ``failures`` as ``(index, reason)``."""

    emitted: List[Tuple[str, int, Record]]
    failures: List[Tuple[int, str]]


def describe(error: BaseException) -> str:
    """The reason a record fails with, for an exception raised while processing it."""
    if isinstance(error, RecordError):
        return str(error)
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _bytes(value: Any) -> Optional[bytes]:
    # Keys and header values are bytes; a str is taken as UTF-8.
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def encode_value(value: Any) -> Optional[bytes]:
    """A value as the host reads it: one ``marshal.dumps`` (``None`` stays a tombstone). The
    host checks it against the port's schema."""
    if value is None:
        return None
    try:
        return marshal.dumps(value)
    except ValueError:
        raise RecordError(
            f"the emitted value is not plain data (dicts, lists, str, bytes, int, float, bool, None): {value!r:.200}"
        ) from None


def _wire_headers(headers: List[Tuple[str, Any]]) -> Tuple[Tuple[str, Optional[bytes]], ...]:
    return tuple((k, _bytes(v)) for k, v in headers) if headers else ()


class Processor:
    """Base class of a Python processor. Override :meth:`init` and :meth:`process_record` (or
    :meth:`process` for a whole batch at once).

    ``TOMBSTONES`` says what the default :meth:`process` does with a record whose value is
    ``None``: ``"forward"`` it unchanged on output port 0 (the default), ``"drop"`` it, or
    ``"process"`` it like any other record.
    """

    TOMBSTONES = "forward"

    #: Durable keyed state (see :mod:`meshhost_sdk.state`): the host's store in a component
    #: (per input partition, restored after a crash), a :class:`MemoryState` natively. Only a
    #: processor whose code mentions ``self.state`` is built with the state import.
    state: State

    # Set by the SDK: the declared output ports, and what the current batch produced.
    outputs: List[OutputPort]
    _emitted: list
    _failures: list

    def init(self, config: dict, inputs: List[Port]) -> List[OutputPort]:
        """Check the ``with:`` configuration (a dict, ``{}`` when absent) and the input ports;
        return the output ports, or raise :class:`ConfigError` / :class:`ConfigErrors`. The
        default declares one port ``out`` with the schema of the first input."""
        return [OutputPort("out", inputs[0].schema_text)]

    def process_record(self, record: Record) -> Any:
        """Handle one record. Return what to emit:

        - a dict (the new value; key, headers and timestamp are kept) or a :class:`Record`,
          on output port 0;
        - ``to(port, value)`` or a ``(port, value)`` tuple, for another output port;
        - a list of those, to emit several records;
        - ``None`` to drop the record.

        Raise an exception (:class:`RecordError` for a clean message) to send the record to the
        dead-letter topic. The default emits the record unchanged.
        """
        return record

    def process(self, input: int, records: List[Record]) -> None:
        """Handle a batch of records that arrived on input port ``input``: call :meth:`emit`
        and :meth:`fail`. The default calls :meth:`process_record` for each record and turns an
        exception into a failure of that record alone."""
        # The per-record loop of every Python plugin: kept lean, since it runs interpreted.
        emitted, failures = self._emitted, self._failures
        process_record, tombstones = self.process_record, self.TOMBSTONES
        for record in records:
            if record.value is None and tombstones != "process":
                if tombstones == "forward":
                    self.emit(0, record.index, record)
                continue
            emitted_mark, failures_mark = len(emitted), len(failures)
            try:
                result = process_record(record)
                if result is None:
                    continue
                if type(result) is dict:
                    # The common case: a new value on port 0, the rest of the record kept
                    # (inlined: every call costs in the interpreter).
                    key, headers = record.key, record.headers
                    if key is not None and type(key) is not bytes:
                        key = _bytes(key)
                    emitted.append((0, record.index, key, encode_value(result), _wire_headers(headers) if headers else (), record.timestamp))
                else:
                    self._emit_result(record, result)
            except Exception as error:  # noqa: BLE001 - every error fails the record alone
                del emitted[emitted_mark:]
                del failures[failures_mark:]
                self.fail(record.index, describe(error))

    def emit(self, port: Union[int, str], origin: int, value: Any, source: Optional[Record] = None) -> None:
        """Emit on output ``port`` (index or name) a record derived from input record ``origin``
        (its index in the batch). ``value`` is a dict (the record keeps the origin's key,
        headers and timestamp; pass ``source`` to say which record that is when it is not the
        batch's record at ``origin``), ``None`` (a tombstone) or a :class:`Record`."""
        index = self._port_index(port)
        if isinstance(value, Record):
            record = value
        else:
            base = source if source is not None else self._batch_record(origin)
            record = Record(value, base.key, list(base.headers), base.timestamp) if base is not None else Record(value)
        self._emitted.append((index, origin, _bytes(record.key), encode_value(record.value), _wire_headers(record.headers), record.timestamp))

    def fail(self, index: int, reason: str) -> None:
        """Reject the input record at ``index``: the host sends it to the dead-letter topic with
        ``reason`` in its ``meshhost.error`` header, and processing goes on."""
        self._failures.append((index, str(reason)))

    # --- helpers --------------------------------------------------------------------------

    def run_batch(self, input: int, records: List[Any]) -> Batch:
        """Run :meth:`process` natively, as the host would (for unit tests). ``records`` are
        :class:`Record` objects or plain values."""
        batch = [r if isinstance(r, Record) else Record(r) for r in records]
        for i, record in enumerate(batch):
            record.index, record.input = i, input
        emitted, failures = _run_batch(self, input, batch)
        names = [p.name for p in self.outputs]
        return Batch(
            [
                (names[port], origin, Record(marshal.loads(value) if value is not None else None, key, list(headers), timestamp, origin, input))
                for port, origin, key, value, headers, timestamp in emitted
            ],
            failures,
        )

    def _emit_result(self, record: Record, result: Any) -> None:
        if result is None:
            return
        if isinstance(result, list):
            for item in result:
                self._emit_result(record, item)
            return
        if isinstance(result, Routed):
            port, value = result.port, result.value
        elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], (int, str)):
            port, value = result
        elif isinstance(result, (dict, Record)):
            port, value = 0, result
        else:
            raise RecordError(f"process_record returned a {type(result).__name__}; expected a dict, a Record, to(port, value), a list of them or None")
        self.emit(port, record.index, value, source=record)

    def _port_index(self, port: Union[int, str]) -> int:
        if isinstance(port, str):
            for i, output in enumerate(self.outputs):
                if output.name == port:
                    return i
            raise RecordError(f"no output port named {port!r} (declared: {', '.join(p.name for p in self.outputs)})")
        if not 0 <= port < len(self.outputs):
            raise RecordError(f"output port {port} does not exist ({len(self.outputs)} declared)")
        return port

    def _batch_record(self, origin: int) -> Optional[Record]:
        # By index, not position: `process` may be given a subset of a batch (run natively).
        for record in getattr(self, "_batch", None) or []:
            if record.index == origin:
                return record
        return None


def _batch_head(value_names) -> bytes:
    """`)` 2, the tuple of the port's value names (each interned, with the reference flag, so
    the values' references pick them by position), then `[`: the count and the values follow."""
    names = []
    for name in value_names:
        raw = name.encode("utf-8")
        if name.isascii() and len(raw) <= 255:
            names.append(b"\xda" + bytes([len(raw)]) + raw)  # 'Z' | FLAG_REF
        else:
            names.append(b"\xf4" + struct.pack("<i", len(raw)) + raw)  # 't' | FLAG_REF
    return b")\x02(" + struct.pack("<i", len(names)) + b"".join(names) + b"["


def _load_values(head: bytes, values: List[Optional[bytes]]) -> list:
    """The values of a batch as the host wrote them (``None`` stays a tombstone), in one
    ``marshal.loads``: one call, and the values share the port's field names."""
    present = [v for v in values if v is not None]
    loaded = marshal.loads(head + struct.pack("<i", len(present)) + b"".join(present))[1]
    if len(present) == len(values):
        return loaded
    it = iter(loaded)
    return [None if v is None else next(it) for v in values]


def _output_ports(declared: Any) -> List[OutputPort]:
    if isinstance(declared, OutputPort):
        declared = [declared]
    elif isinstance(declared, dict):
        declared = [OutputPort(name, schema) for name, schema in declared.items()]
    ports = []
    for item in declared or []:
        if isinstance(item, OutputPort):
            ports.append(item)
        elif isinstance(item, tuple) and len(item) == 2:
            ports.append(OutputPort(*item))
        else:
            raise TypeError(f"init returned {item!r}; expected OutputPort(name, schema)")
    if not ports:
        raise ConfigError("", "the processor declared no output port")
    return ports


def run_init(cls: type, config_text: str, inputs: List[Tuple[str, str]], state: Optional[State] = None) -> Tuple[Optional[Processor], Any]:
    """Build and initialise a processor with ``state`` as its ``self.state`` (a fresh
    :class:`MemoryState` by default). Returns ``(processor, [(name, schema text)])`` or
    ``(None, [ConfigError])``."""
    try:
        config = json.loads(config_text) if config_text else {}
    except ValueError as error:
        return None, [ConfigError("", f"configuration is not JSON: {error}")]
    ports = []
    for name, schema in inputs:
        try:
            parsed = json.loads(schema)
        except ValueError as error:
            return None, [ConfigError("", f"input {name!r}: schema is not JSON: {error}")]
        ports.append(Port(name, parsed, schema))
    try:
        processor = cls()
        processor.state = state if state is not None else MemoryState()
        outputs = _output_ports(processor.init(config, ports))
        processor.outputs = outputs
        declared = [(p.name, p.schema_text()) for p in outputs]
    except ConfigErrors as error:
        return None, error.errors or [ConfigError("", "invalid configuration")]
    except ConfigError as error:
        return None, [error]
    except Exception as error:  # noqa: BLE001 - report, don't trap
        return None, [ConfigError("", f"init failed: {describe(error)}")]
    processor._emitted, processor._failures = [], []
    return processor, declared


def _run_batch(processor: Processor, input: int, records: List[Record]) -> Tuple[list, list]:
    """Call ``processor.process`` on a batch. An exception escaping it fails only the records
    that raise: the batch is retried record by record (like the host does after a trap)."""
    emitted, failures = [], []
    processor._emitted, processor._failures, processor._batch = emitted, failures, records
    try:
        processor.process(input, records)
        return emitted, failures
    except Exception as error:  # noqa: BLE001
        if len(records) == 1:
            return [], [(records[0].index, describe(error))]
        first_error = error
    finally:
        processor._batch = None
    # Retry alone each record, renumbered 0, and map its results back to its index.
    emitted, failures = [], []
    for record in records:
        alone = replace(record, index=0, headers=list(record.headers))
        one_emitted, one_failures = _run_batch(processor, input, [alone])
        emitted.extend((port, record.index, *rest) for port, _, *rest in one_emitted)
        failures.extend((record.index, reason) for _, reason in one_failures)
    del first_error
    return emitted, failures
