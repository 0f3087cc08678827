"""How every process we own writes its log: text lines for people, or with LOG_FORMAT=json one
JSON object per line for log pipelines. Structured fields travel as `extra={"fields": {...}}`
and appear as keys of the JSON object, or as a JSON tail of the text line."""

import json
import logging
import os
import sys
import tempfile
from datetime import UTC, datetime
from typing import Any

import msgspec

from service.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"
_encoder = msgspec.json.Encoder(enc_hook=str)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        fields = _fields(record)
        return f"{line} {json.dumps(fields, sort_keys=True, default=str)}" if fields else line


class JsonFormatter(logging.Formatter):
    """One object per record: ts (UTC, ISO 8601), level, logger, message, pid, the record's
    fields, and exc with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in _fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


def configure(settings: Settings) -> None:
    """Send this process's records to stderr in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "JSON" else TextFormatter())
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


def granian_config_file(settings: Settings) -> str:
    """A dictConfig file for granian's --log-config that puts its own records, its workers'
    and our application's through the same formatter; the caller removes it."""
    formatter = JsonFormatter if settings.log_format == "JSON" else TextFormatter
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "service",
        "stream": "ext://sys.stderr",
    }
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"service": handler},
        "root": {"handlers": ["service"], "level": settings.log_level},
        "loggers": {
            "_granian": {"handlers": ["service"], "level": settings.log_level, "propagate": False},
            "granian.access": {"handlers": ["service"], "level": "INFO", "propagate": False},
        },
    }
    descriptor, path = tempfile.mkstemp(prefix="order-service-granian-log-", suffix=".json")
    with os.fdopen(descriptor, "w") as file:
        json.dump(config, file)
    return path


def report_fatal(message: str) -> None:
    """The last word of a process that cannot start or go on, in its log's format; read from
    the environment directly, since the settings themselves may be what failed."""
    if os.environ.get("LOG_FORMAT", "").strip().upper() == "JSON":
        record = logging.LogRecord("service", logging.CRITICAL, __file__, 0, message, None, None)
        print(JsonFormatter().format(record), file=sys.stderr)
    else:
        print(f"error: {message}", file=sys.stderr)
