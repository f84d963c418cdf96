"""Logging into the host's log, tagged with the processor's id.

Inside a component the messages go to the host (``meshhost:processor/log``); run natively (unit
tests) they go to stderr.
"""

import sys
from typing import Callable

__all__ = ["debug", "info", "warn", "error", "log"]


def _stderr(level: str, message: str) -> None:
    print(f"[{level}] {message}", file=sys.stderr)


# Replaced by meshhost_sdk.guest when running inside a component.
_backend: Callable[[str, str], None] = _stderr


def log(level: str, message: str) -> None:
    """Log ``message`` at ``level``: ``"debug"``, ``"info"``, ``"warn"`` or ``"error"``."""
    _backend(level, str(message))


def debug(message: str) -> None:
    log("debug", message)


def info(message: str) -> None:
    log("info", message)


def warn(message: str) -> None:
    log("warn", message)


def error(message: str) -> None:
    log("error", message)
