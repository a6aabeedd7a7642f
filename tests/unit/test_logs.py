"""JSON log lines: one object per record, with the traceback when there is one."""

from __future__ import annotations

import io
import json
import logging

import pytest

from services.runtime.logs import (
    ACCESS_LOGGER,
    FASTSTREAM_LOGGERS,
    JsonFormatter,
    configure_logging,
    resolve_format,
)


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("engram.test", logging.WARNING, __file__, 1, message, args, exc_info)


def test_a_record_is_one_json_line() -> None:
    line = JsonFormatter().format(record("applied %d events\nacross %s", 3, "two lines"))
    assert "\n" not in line
    out = json.loads(line)
    assert out["level"] == "WARNING"
    assert out["logger"] == "engram.test"
    assert out["message"] == "applied 3 events\nacross two lines"
    assert out["ts"].endswith("+00:00") and "T" in out["ts"]
    assert "exc" not in out


def test_an_exception_travels_in_exc() -> None:
    out = json.loads(JsonFormatter().format(record("failed", exc=True)))
    assert out["message"] == "failed"
    assert "RuntimeError: boom" in out["exc"] and "Traceback" in out["exc"]


def test_faststream_context_is_kept() -> None:
    rec = record("received")
    rec.subject, rec.message_id = "chat.message.created", "abc123"  # type: ignore[attr-defined]
    out = json.loads(JsonFormatter().format(rec))
    assert out["subject"] == "chat.message.created" and out["message_id"] == "abc123"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_json_unless_a_terminal() -> None:
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("auto", Tty()) == "text"
    assert resolve_format("text", io.StringIO()) == "text"
    assert resolve_format("json", Tty()) == "json"
    with pytest.raises(ValueError, match="auto, json or text"):
        resolve_format("yaml")


def test_faststream_loggers_follow_the_chosen_level() -> None:
    # A worker run at WARNING must not build a record per message received and answered.
    configure_logging("WARNING", "json")
    try:
        for name in FASTSTREAM_LOGGERS:
            assert not logging.getLogger(name).isEnabledFor(logging.INFO)
    finally:
        configure_logging("INFO", "json")
    assert logging.getLogger(FASTSTREAM_LOGGERS[-1]).isEnabledFor(logging.INFO)


def test_a_workers_broker_keeps_its_access_logger_at_the_chosen_level() -> None:
    # FastStream set its default access logger back to INFO when the broker connected:
    # the worker's broker is given the configured one, which connecting leaves alone.
    from services.runtime.settings import WorkerSettings
    from services.runtime.supervise import Supervisor
    from services.runtime.worker_connections import worker_broker

    configure_logging("WARNING", "json")
    try:
        broker = worker_broker("test", WorkerSettings(), Supervisor("engram test", grace_s=1.0))
        broker._setup_logger()  # what connecting does first
        access = logging.getLogger(ACCESS_LOGGER)
        assert broker.config.logger.logger.logger is access
        assert not access.isEnabledFor(logging.INFO)
    finally:
        configure_logging("INFO", "json")
