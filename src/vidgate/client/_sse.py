"""Reading a ``text/event-stream`` body, as the HTML standard's event-stream parser does.

Pure: :meth:`SSEDecoder.feed` takes the bytes as they arrive, in chunks cut anywhere, and
returns the events they complete. Lines end with LF, CRLF or a lone CR; a line starting
with ``:`` is a comment (a keep-alive) and is dropped; ``data:`` lines join with a newline;
``id:`` and ``retry:`` are remembered; one space after the colon is not part of the value.
An event is dispatched by a blank line, and only when it carried data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event. ``id`` is the last event id seen on the stream so far (the
    value to send as ``Last-Event-ID`` on a reconnect); ``retry_ms`` the last ``retry:``."""

    data: str
    event: str = "message"
    id: str | None = None
    retry_ms: int | None = None


class SSEDecoder:
    """Incremental event-stream decoder. One per connection (``last_event_id`` may be
    carried over to the next one with ``SSEDecoder(last_event_id=...)``)."""

    def __init__(self, *, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self._buffer = b""
        self._started = False
        self._after_cr = False  # the previous chunk ended with CR: a leading LF belongs to it
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events completed by ``chunk``."""
        if not chunk:
            return []
        if not self._started:
            self._started = True
            chunk = chunk.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is not content
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        lines = (self._buffer + chunk).replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._buffer = lines.pop()  # the unfinished last line (empty after a line end)
        events = []
        for raw in lines:
            event = self._line(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(
            data="\n".join(data),
            event=event or "message",
            id=self.last_event_id,
            retry_ms=self.retry_ms,
        )
