"""Reading a server-sent event stream in tests, as a plain HTTP client sees it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    id: int | None
    data: dict[str, Any] | None
    comment: str | None = None


def read_events(response: httpx.Response) -> Iterator[Event]:
    """Events and comments in arrival order (the ``retry:`` field is skipped)."""
    event_id: int | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield Event(event_id, json.loads("\n".join(data)))
            event_id, data = None, []
        elif line.startswith(":"):
            yield Event(None, None, comment=line[1:].strip())
        elif line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
