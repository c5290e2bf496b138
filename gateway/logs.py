"""Log records as text or as one JSON object a line, with the identifiers they concern.

Identifiers come two ways: ``extra={"device_id": ...}`` on a call (the MQTT
sessions, whose callbacks share one context), or :func:`bound` for everything
logged by a task while it serves one request (the management API binds a
request id). Secrets are never passed to a log call; as a second line of
defence, a password inside a URL (``postgresql://user:pass@host``) is masked in
every message.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

# The identifiers a record may carry, in the order a JSON line shows them.
FIELDS = ("request_id", "project_id", "device_id", "device", "client_id", "protocol", "remote")
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_fields", default={})
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@")


@contextmanager
def bound(**fields: str) -> Iterator[None]:
    """Add these identifiers to every record logged in this context (a task, a request)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def masked(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", text)


class ContextFilter(logging.Filter):
    """Copies the bound identifiers onto each record (a call's own ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = masked(super().format(record))
        ids = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None) is not None)
        return f"{line} [{ids}]" if ids else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": masked(record.getMessage()),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = str(value)
        if record.exc_info:
            entry["exception"] = masked(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def handler(fmt: str, stream: Any = None) -> logging.Handler:
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    out.addFilter(ContextFilter())
    return out


def configure(level: str, fmt: str) -> None:
    """The process's logging: one handler on the root logger, replacing any before it."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(fmt))
    root.setLevel(level.upper())
