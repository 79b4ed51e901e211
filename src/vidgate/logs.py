"""Structured log lines with stable event names: ``run.claimed run_id=vid_... backend=testcard``,
and secrets (provider keys) kept out of every line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

REDACTED = "[redacted]"


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: object) -> None:
    parts = [name] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
    logger.log(level, " ".join(parts))


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


def configure(level: str = "INFO", *, secrets: Iterable[str] = ()) -> None:
    """Log to stderr. No line (message or traceback, of any logger) shows any of
    ``secrets``: each record is checked as it is made."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    forms = sorted(
        {f for s in secrets if s.strip() for f in secret_forms(s)}, key=len, reverse=True
    )
    if forms:
        logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory(), forms))


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
