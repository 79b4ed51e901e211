"""Log lines: console lines on a terminal, JSON otherwise; both name the run and the
request they were logged in; JSON fields are redacted as messages are."""

from __future__ import annotations

import json
import logging
import sys

from vidgate import logs

SECRET = "sk-live-0123456789abcdef"


def _record(name: str, message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def _event_record(name: str, **fields: object) -> logging.LogRecord:
    """A record as :func:`vidgate.logs.event` makes it."""
    made: list[logging.LogRecord] = []
    logger = logging.getLogger("vidgate.test.logs")
    handler = logging.Handler()
    handler.emit = made.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logs.event(logger, name, **fields)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    return made[0]


def test_console_lines_add_the_run_and_the_request_they_were_logged_in() -> None:
    console = logs.ConsoleFormatter()
    plain = console.format(_event_record("run.claimed", run_id="vid_1", backend="testcard"))
    assert plain.endswith("vidgate.test.logs run.claimed run_id=vid_1 backend=testcard")
    run, request = logs.run_id.set("vid_2"), logs.request_id.set("req-9")
    try:
        inside = console.format(_record("httpx", "HTTP Request: GET /x"))
        named = console.format(_event_record("run.completed", run_id="vid_2"))
    finally:
        logs.run_id.reset(run)
        logs.request_id.reset(request)
    assert inside.endswith("HTTP Request: GET /x run_id=vid_2 request_id=req-9")
    assert named.endswith("run.completed run_id=vid_2 request_id=req-9")  # not named twice


def test_json_lines_carry_fields_redacted_and_name_library_events() -> None:
    formatter = logs.JsonFormatter(list(logs.secret_forms(SECRET)))
    record = _event_record("provider.poll_failed", run_id="vid_3", error=f"bad key {SECRET}")
    line = json.loads(formatter.format(record))
    assert line["event"] == "provider.poll_failed" and line["run_id"] == "vid_3"
    assert line["error"] == "bad key [redacted]" and SECRET not in json.dumps(line)
    access = _record("uvicorn.access", '%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET", "/", "1.1", 200)
    assert json.loads(formatter.format(access))["event"] == "http.request"
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        crashed = _record("vidgate.worker", "worker.claim_failed")
        crashed.exc_info = sys.exc_info()
    line = json.loads(formatter.format(crashed))
    assert line["event"] == "worker.claim_failed"
    assert "RuntimeError: failed with [redacted]" in line["exception"]
    assert json.loads(formatter.format(_record("x", "no event here")))["event"] is None
