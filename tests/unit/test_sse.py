"""The event-stream decoder: fields, comments, line ends and chunks cut anywhere."""

from __future__ import annotations

import pytest

from vidgate.client._sse import ServerSentEvent, SSEDecoder

STREAM = (
    b": keep-alive\n\n"
    b"retry: 1500\n"
    b'id: 1\ndata: {"status": "IN_QUEUE"}\n\n'
    b": keep-alive\n\n"
    b"id:2\ndata: first line\ndata:second line\ndata:  two spaces\n\n"
    b"event: custom\nid: 3\ndata: x\n\n"
)

EXPECTED = [
    ServerSentEvent('{"status": "IN_QUEUE"}', id="1", retry_ms=1500),
    ServerSentEvent("first line\nsecond line\n two spaces", id="2", retry_ms=1500),
    ServerSentEvent("x", event="custom", id="3", retry_ms=1500),
]


def feed_all(chunks: list[bytes], decoder: SSEDecoder | None = None) -> list[ServerSentEvent]:
    decoder = decoder or SSEDecoder()
    events = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def test_a_whole_stream_at_once() -> None:
    assert feed_all([STREAM]) == EXPECTED


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_ends(ending: bytes) -> None:
    assert feed_all([STREAM.replace(b"\n", ending)]) == EXPECTED


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_every_split_point_and_byte_by_byte(ending: bytes) -> None:
    stream = STREAM.replace(b"\n", ending)
    for cut in range(len(stream) + 1):
        assert feed_all([stream[:cut], stream[cut:]]) == EXPECTED, cut
    assert feed_all([bytes([b]) for b in stream]) == EXPECTED


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    events = feed_all([b"data: a\r", b"\ndata: b\r", b"", b"\n\r\n"])
    assert events == [ServerSentEvent("a\nb")]


def test_comments_and_empty_events_are_not_dispatched() -> None:
    assert feed_all([b": keep-alive\n\n:\n\n\n\nid: 7\n\n"]) == []
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 7\n\n") == []
    assert decoder.last_event_id == "7"  # an id without data still counts
    assert decoder.feed(b"data: y\n\n") == [ServerSentEvent("y", id="7")]


def test_an_unfinished_event_is_held_back() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 1\ndata: part") == []
    assert decoder.feed(b"ial\n") == []
    assert decoder.feed(b"\n") == [ServerSentEvent("partial", id="1")]


def test_retry_and_id_edge_cases() -> None:
    decoder = SSEDecoder(last_event_id="4")
    assert decoder.feed(b"retry: soon\nretry: 2.5\ndata: a\n\n") == [ServerSentEvent("a", id="4")]
    assert decoder.retry_ms is None
    assert decoder.feed(b"id: 5\x00\nretry:250\ndata\n\n") == [
        ServerSentEvent("", id="4", retry_ms=250)
    ]
    assert decoder.feed(b"id\ndata: b\n\n") == [ServerSentEvent("b", id="", retry_ms=250)]


def test_unknown_fields_bom_and_utf8_split_across_chunks() -> None:
    text = "data: café ✓\n\n".encode()
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef\xbb\xbfunknown: field\n" + text[:10]) == []
    assert decoder.feed(text[10:]) == [ServerSentEvent("café ✓")]
