"""Structured log lines with stable event names: ``run.claimed run_id=vid_... backend=testcard``,
and secrets (provider keys) kept out of every line.

On a terminal a line reads as above; otherwise (a file, journald, a container's log) each
line is one JSON object: ``{"ts", "level", "logger", "event", "message", "request_id",
"run_id", ...}``, with each field of :func:`event` as a key of its own. The request id of
the HTTP request being answered, and the run a worker is working on, are added to every
line logged meanwhile (see :data:`request_id` and :func:`about_run`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, TextIO
from urllib.parse import quote

REDACTED = "[redacted]"
request_id: ContextVar[str | None] = ContextVar("vidgate_request_id", default=None)
"""The ``X-Request-ID`` of the request this task answers (set by the app)."""
run_id: ContextVar[str | None] = ContextVar("vidgate_run_id", default=None)
"""The run this task works on (set by the worker: see :func:`about_run`)."""
_EVENT = "vidgate_event"
_FIELDS = "vidgate_fields"
_EVENT_NAME = re.compile(r"[a-z_]+(?:\.[a-z_]+)+")
_LOGGER_EVENTS = {"uvicorn.access": "http.request"}
"""Events of the lines other libraries log (their messages name none)."""


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: object) -> None:
    """Log event ``name`` (a stable dotted name, e.g. ``run.claimed``) with ``fields``
    (those that are None are left out)."""
    given = {k: v for k, v in fields.items() if v is not None}
    parts = [name] + [f"{k}={_fmt(v)}" for k, v in given.items()]
    logger.log(level, " ".join(parts), extra={_EVENT: name, _FIELDS: given})


@contextlib.contextmanager
def about_run(run: str) -> Iterator[None]:
    """Every line logged inside the block (in this task) carries ``run_id``."""
    token = run_id.set(run)
    try:
        yield
    finally:
        run_id.reset(token)


def _fmt(value: object) -> str:
    text = str(value)
    return repr(text) if (" " in text or not text) else text


def secret_forms(secret: str) -> tuple[str, ...]:
    """The ways a secret can show in a text: as it is and without surrounding whitespace,
    each URL-encoded, and escaped the way ``repr`` writes it as text or bytes (a key with
    an odd character, in an error message that quotes a header). Longest first."""
    forms = []
    for value in dict.fromkeys((secret, secret.strip())):
        forms += [
            value,
            quote(value, safe=""),
            repr(value)[1:-1],
            repr(value.encode("utf-8", "backslashreplace"))[2:-1],
        ]
    return tuple(sorted({form for form in forms if form}, key=len, reverse=True))


def redact(text: str, forms: Iterable[str]) -> str:
    """``text`` with each of ``forms`` (see :func:`secret_forms`) replaced by ``[redacted]``."""
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


LogFormat = str
"""``auto`` (JSON unless the stream is a terminal), ``json`` or ``console``."""


def configure(
    level: str = "INFO",
    *,
    secrets: Iterable[str] = (),
    log_format: LogFormat = "auto",
    stream: TextIO | None = None,
) -> None:
    """Log to ``stream`` (stderr): JSON lines, or console lines on a terminal. No line
    (message, field or traceback, of any logger) shows any of ``secrets``: each record is
    checked as it is made."""
    stream = stream or sys.stderr
    forms = sorted(
        {f for s in secrets if s.strip() for f in secret_forms(s)}, key=len, reverse=True
    )
    as_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(forms) if as_json else ConsoleFormatter())
    logging.basicConfig(level=level, handlers=[handler])
    if forms:
        logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory(), forms))


def _context(record: logging.LogRecord) -> dict[str, Any]:
    """The event's name and fields, with the request and run the line was logged in."""
    fields: dict[str, Any] = dict(getattr(record, _FIELDS, None) or {})
    name = getattr(record, _EVENT, None)
    if name is None:
        first = str(record.msg).split(" ", 1)[0]
        name = first if _EVENT_NAME.fullmatch(first) else _LOGGER_EVENTS.get(record.name)
    rid, run = request_id.get(), run_id.get()
    if rid is not None:
        fields.setdefault("request_id", rid)
    if run is not None:
        fields.setdefault("run_id", run)
    return {"event": name, **fields}


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger message``, and the request id and run of the line when the
    message does not show them already."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid, run = request_id.get(), run_id.get()
        extra = ""
        if run is not None and f"run_id={run}" not in line:
            extra += f" run_id={run}"
        if rid is not None:
            extra += f" request_id={rid}"
        if not extra:
            return line
        first, newline, rest = line.partition("\n")
        return first + extra + newline + rest


class JsonFormatter(logging.Formatter):
    """One JSON object a line; the message and field values redacted (fields are set on
    a record after the redacting record factory has seen it)."""

    def __init__(self, forms: list[str]) -> None:
        super().__init__()
        self.forms = forms

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        for key, value in _context(record).items():
            line[key] = self._clean(value)
        line["message"] = redact(record.getMessage(), self.forms)
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = redact(record.exc_text, self.forms)
        return json.dumps(line, ensure_ascii=False, default=str)

    def _clean(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        return redact(str(value), self.forms)


def _redacting(make: Any, forms: list[str]) -> Any:
    formatter = logging.Formatter()

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format: the logging module reports it where it formats
            return record
        clean = redact(message, forms)
        if clean != message:  # otherwise untouched: some formatters read record.args
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[0] is not None:
            text = formatter.formatException(record.exc_info)
            record.exc_text = redact(text, forms)
        return record

    return make_record
