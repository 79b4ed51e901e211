"""The hot path's shortcuts give what the general code they replace gives: query strings
as ``parse_qsl`` reads them, timestamps as ``datetime`` writes them, file URLs as
``quote`` makes them, API keys as Starlette's headers present them."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote

from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from vidgate.server.auth import presented_key, presented_key_raw
from vidgate.server.polls import query_params
from vidgate.storage.local import LocalStorage
from vidgate.views import iso

query_chars = st.sampled_from([*"ab=&;%+ 2F\x00é_-.~", "runId", "requestId", "=", "&"])


@settings(max_examples=2000, deadline=None)
@given(st.lists(query_chars, max_size=30).map("".join))
@example("runId=vid_1&modelSlug=testcard-video")
@example("a=1&a=2&&b&=&c==d")
@example("a=%20&b=x+y")
def test_query_params_read_as_parse_qsl_does(query: str) -> None:
    raw = query.encode("utf-8")
    expected = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
    assert query_params(raw) == expected


def _datetime_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@settings(max_examples=5000, deadline=None)
@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
@example(0.0)
@example(1_700_000_000.0005)  # half a millisecond: rounding to microseconds, then down
@example(1_700_000_000.9999995)  # rounds up into the next second
@example(1_700_000_000.0000005)
@example(86_399.9999999)  # ... and into the next day
@example(951_782_399.9999996)  # 2000-02-29T23:59:59.999999x: into March
def test_iso_writes_what_datetime_writes(ts: float) -> None:
    assert iso(ts) == _datetime_iso(ts)


def test_iso_of_every_millisecond_of_a_second_and_around_midnight() -> None:
    for base in (1_764_460_799.0, 1_764_460_800.0, 0.0):
        for ms in range(1000):
            ts = base + ms / 1000
            assert iso(ts) == _datetime_iso(ts), ts
            nudged = math.nextafter(ts, math.inf)
            assert iso(nudged) == _datetime_iso(nudged)
    assert iso(None) is None


@given(st.text(alphabet=st.sampled_from(list("aZ09_.-~/ %?#é+")), min_size=1, max_size=20))
def test_file_urls_quote_their_key_as_quote_does(key: str) -> None:
    storage = LocalStorage(Path("/nonexistent"), b"s" * 32)
    url, _ = storage.signed_url(key, "http://h", 3600, now=1_700_000_000)
    assert url.startswith(f"http://h/files/{quote(key)}?exp=")


header_values = st.sampled_from(["", " ", "vg_k", " vg_k ", "Bearer vg_b", "bearer  x", "Basic z"])


@given(
    st.lists(
        st.tuples(st.sampled_from(["x-api-key", "authorization", "host"]), header_values),
        max_size=4,
    )
)
def test_raw_headers_present_the_key_starlette_headers_do(pairs: list[tuple[str, str]]) -> None:
    raw = [(name.encode(), value.encode()) for name, value in pairs]
    assert presented_key_raw(raw) == presented_key(Headers(raw=raw))
