"""Durable keyed state: ``self.state`` of a processor.

Inside a component that uses it, ``self.state`` is the host's store, kept per processor and
input partition, mirrored to a changelog topic and restored from it after a crash or on another
machine; the writes of a call that traps are dropped. A processor whose code never mentions
``self.state`` is built without the ``state`` import and runs stateless. Natively (unit tests,
:meth:`Processor.run_batch`) ``self.state`` is a :class:`MemoryState`.

Keys and values are bytes; a ``str`` is taken as UTF-8.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Dict, List, Optional, Tuple, Union

Bytes = Union[bytes, bytearray, memoryview, str]


def _b(value: Bytes) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"state keys and values are bytes or str, not {type(value).__name__}")


class State:
    """The store's interface (what :class:`MemoryState` and the host's store provide)."""

    def get(self, key: Bytes) -> Optional[bytes]:
        """The value under ``key``, or ``None``."""
        raise NotImplementedError

    def put(self, key: Bytes, value: Bytes) -> None:
        """Store ``value`` under ``key``."""
        raise NotImplementedError

    def delete(self, key: Bytes) -> None:
        """Remove ``key`` (nothing happens when it is absent)."""
        raise NotImplementedError

    def scan_prefix(self, prefix: Bytes) -> List[Tuple[bytes, bytes]]:
        """Every ``(key, value)`` whose key starts with ``prefix``, in key order."""
        raise NotImplementedError


class MemoryState(State):
    """An in-memory store with the host store's semantics, for native tests."""

    def __init__(self, entries: Optional[Dict[bytes, bytes]] = None):
        self.entries: Dict[bytes, bytes] = {_b(k): _b(v) for k, v in (entries or {}).items()}

    def get(self, key: Bytes) -> Optional[bytes]:
        return self.entries.get(_b(key))

    def put(self, key: Bytes, value: Bytes) -> None:
        self.entries[_b(key)] = _b(value)

    def delete(self, key: Bytes) -> None:
        self.entries.pop(_b(key), None)

    def scan_prefix(self, prefix: Bytes) -> List[Tuple[bytes, bytes]]:
        prefix = _b(prefix)
        keys = sorted(self.entries)
        found = []
        for key in keys[bisect_left(keys, prefix):]:
            if not key.startswith(prefix):
                break
            found.append((key, self.entries[key]))
        return found


class HostState(State):
    """The host's store, through the component's WIT ``state`` import."""

    def __init__(self, wit_state):
        self._wit = wit_state

    def get(self, key: Bytes) -> Optional[bytes]:
        return self._wit.get(_b(key))

    def put(self, key: Bytes, value: Bytes) -> None:
        self._wit.put(_b(key), _b(value))

    def delete(self, key: Bytes) -> None:
        self._wit.delete(_b(key))

    def scan_prefix(self, prefix: Bytes) -> List[Tuple[bytes, bytes]]:
        return [(bytes(k), bytes(v)) for k, v in self._wit.scan_prefix(_b(prefix))]
