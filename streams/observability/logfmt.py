"""Log output for people (text, the default) or for log pipelines (one JSON object per line).

``CONSENTINEL_LOG_FORMAT=json`` makes every record one JSON object with ``ts`` (RFC 3339, UTC),
``level``, ``logger``, ``message`` and, when there is one, ``exc`` (the formatted traceback), plus
any ``extra={...}`` fields given at the call site that are JSON-serialisable.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

from streams.errors import ConfigError

LOG_FORMAT_ENV = "CONSENTINEL_LOG_FORMAT"
"""Environment variable choosing the log format: ``text`` (default) or ``json``."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON object on one line."""
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                value = repr(value)
            payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def log_format() -> str:
    """Return ``"text"`` or ``"json"`` from :data:`LOG_FORMAT_ENV`; ConfigError otherwise."""
    value = (os.environ.get(LOG_FORMAT_ENV) or "text").strip().lower()
    if value not in ("text", "json"):
        raise ConfigError(f"{LOG_FORMAT_ENV}={value!r} is not one of: text, json")
    return value


def configure_logging(level: int, fmt: str = "text") -> None:
    """Install one stderr handler on the root logger with the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
