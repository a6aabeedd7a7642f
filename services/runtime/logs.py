"""A worker's logs: JSON lines for a log collector, or plain text for a person.

``configure_logging(level, fmt)``: ``json`` writes one JSON object per line (``ts``,
``level``, ``logger``, ``message``, and ``exc`` with the traceback when there is one);
``text`` the classic one-line format; ``auto`` (the default) JSON unless stderr is a
terminal. FastStream installs its own handlers with ANSI colours (whatever the stream is);
unless the logs go to a terminal in text, its loggers get ours instead.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Literal

import orjson

LogFormat = Literal["auto", "json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Context FastStream adds to its access log records (when set, they are kept).
FASTSTREAM_FIELDS = ("subject", "stream", "queue", "message_id")
ACCESS_LOGGER = "faststream.access.nats"  # the broker logs each message it handles here
FASTSTREAM_LOGGERS = ("faststream", ACCESS_LOGGER)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FASTSTREAM_FIELDS:
            if value := getattr(record, name, None):
                line[name] = str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def resolve_format(fmt: str, stream: object = None) -> Literal["json", "text"]:
    """``auto`` is JSON unless ``stream`` (stderr) is a terminal."""
    if fmt not in ("auto", "json", "text"):
        raise ValueError(f"log format {fmt!r}: auto, json or text")
    if fmt == "auto":
        isatty = getattr(stream if stream is not None else sys.stderr, "isatty", None)
        return "text" if callable(isatty) and isatty() else "json"
    return "json" if fmt == "json" else "text"


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Send every logger's records to stderr in ``fmt`` at ``level``."""
    chosen = resolve_format(fmt)
    formatter: logging.Formatter = (
        JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if chosen == "text" and sys.stderr.isatty():
        return  # FastStream's colours are for a terminal: leave them
    import faststream  # noqa: F401  (creates its loggers and their coloured handlers)

    for name in FASTSTREAM_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        # FastStream adds its coloured handler to its access logger unless one on stdout
        # is there already: this one, plain.
        own = logging.StreamHandler(sys.stdout if name != "faststream" else sys.stderr)
        own.setFormatter(formatter)
        logger.addHandler(own)
        logger.propagate = False
        # Its loggers keep their own level (INFO): without this, a worker run at WARNING
        # still built and wrote a record for every message it received and answered.
        logger.setLevel(level.upper())
