"""Structured log lines with stable event names: ``run.claimed run_id=vid_... backend=testcard``."""

from __future__ import annotations

import logging
import sys


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: object) -> None:
    parts = [name] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
    logger.log(level, " ".join(parts))


def _fmt(value: object) -> str:
    text = str(value)
    return repr(text) if (" " in text or not text) else text


def configure(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
