"""The UTC days a usage query covers. Pure: no I/O."""

from __future__ import annotations

import datetime as dt
import re

DAY_S = 86400
DAY_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class BadDay(ValueError):
    """Not a day as YYYY-MM-DD."""


def parse_day(text: str | None, name: str) -> dt.date | None:
    """A ``YYYY-MM-DD`` day (None stays None); BadDay, naming ``name``, for anything else."""
    if text is None:
        return None
    try:
        if not DAY_PATTERN.fullmatch(text):
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise BadDay(
            f"'{name}' must be a day as YYYY-MM-DD, e.g. 2026-01-31; got {text!r}"
        ) from None


def usage_range(since: dt.date | None, days: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last day of a usage query: ``days`` days from ``since``, or up to today."""
    first = since or today - dt.timedelta(days - 1)
    try:
        return first, first + dt.timedelta(days - 1)
    except OverflowError:
        return first, dt.date.max


def day_bounds(first: dt.date, last: dt.date) -> tuple[float, float]:
    """``[since, until)`` in Unix seconds: from the start of ``first`` to the end of ``last``."""
    start = dt.datetime(first.year, first.month, first.day, tzinfo=dt.UTC).timestamp()
    return start, start + ((last - first).days + 1) * DAY_S
