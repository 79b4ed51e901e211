"""Properties of the run state machine, signed file URLs and the remote poll backoff."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidgate.runs.status import TERMINAL, Status, can_transition
from vidgate.storage.base import BadSignature, url_expiry
from vidgate.storage.local import LocalStorage
from vidgate.worker.remote.outcomes import MAX_BACKOFF_S, backoff_s

statuses = st.sampled_from(list(Status))


@settings(deadline=None)
@given(st.lists(statuses, max_size=12))
def test_a_run_moves_forward_only_and_terminal_states_have_no_way_out(
    attempts: list[Status],
) -> None:
    """Whatever changes are attempted, the accepted ones go queue → progress → an end,
    skipping at most the middle, never back, never twice, and nothing follows an end."""
    stage = {Status.IN_QUEUE: 0, Status.IN_PROGRESS: 1} | dict.fromkeys(TERMINAL, 2)
    current, path = Status.IN_QUEUE, [Status.IN_QUEUE]
    for target in attempts:
        if can_transition(current, target):
            assert not current.is_terminal
            current = target
            path.append(target)
    assert [stage[s] for s in path] == sorted({stage[s] for s in path})
    assert len(path) <= 3
    for status in path[:-1]:
        assert not status.is_terminal
    if current.is_terminal:
        assert not any(can_transition(current, target) for target in Status)


@settings(deadline=None)
@given(statuses)
def test_every_status_has_its_own_flat_spelling(status: Status) -> None:
    others = [s for s in Status if s is not status]
    assert status.flat not in {s.flat for s in others}
    assert status.flat == status.flat.lower()


# Signed file URLs

keys = st.lists(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,12}", fullmatch=True).filter(
        lambda part: part != ".."
    ),
    min_size=1,
    max_size=3,
).map("/".join)
SECRET = b"s" * 32


@pytest.fixture(scope="module")
def storage() -> Iterator[LocalStorage]:
    with tempfile.TemporaryDirectory() as root:
        yield LocalStorage(Path(root), SECRET)


def _parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return unquote(split.path.removeprefix("/files/")), query["exp"][0], query["sig"][0]


def _verifies(storage: LocalStorage, key: str, exp: str, sig: str) -> bool:
    try:
        storage.open_signed(key, exp, sig)
    except FileNotFoundError:  # the signature held; there is just no file
        return True
    except BadSignature:
        return False
    return True


@settings(deadline=None)
@given(keys, st.integers(60, 10**6))
def test_a_signed_url_verifies_until_it_expires(
    storage: LocalStorage, key: str, ttl_s: int
) -> None:
    url, expires = storage.signed_url(key, "https://h.example/", ttl_s)
    assert url.startswith("https://h.example/files/")
    path_key, exp, sig = _parts(url)
    assert (path_key, int(exp)) == (key, expires)
    assert _verifies(storage, key, exp, sig)
    old_url, _ = storage.signed_url(key, "https://h", ttl_s, now=time.time() - 2 * ttl_s)
    assert not _verifies(storage, *_parts(old_url))


@settings(deadline=None)
@given(keys, keys, st.integers(60, 10**6), st.integers(-(10**6), 10**6), st.data())
def test_a_signed_url_fails_for_any_change(
    storage: LocalStorage,
    key: str,
    other_key: str,
    ttl_s: int,
    shift: int,
    data: st.DataObject,
) -> None:
    _, exp, sig = _parts(storage.signed_url(key, "http://h", ttl_s)[0])
    if other_key != key:
        assert not _verifies(storage, other_key, exp, sig)
    if shift:
        assert not _verifies(storage, key, str(int(exp) + shift), sig)
    where = data.draw(st.integers(0, len(sig) - 1))
    letter = data.draw(st.sampled_from("ABCxyz019-_").filter(lambda c: c != sig[where]))
    assert not _verifies(storage, key, exp, sig[:where] + letter + sig[where + 1 :])
    assert not _verifies(storage, key, exp, sig + "A")
    assert not _verifies(storage, key, exp, "")


@settings(deadline=None)
@given(st.integers(60, 10**6), st.floats(0, 10**9), st.floats(0, 10**7), st.floats(0, 10**7))
def test_a_link_lasts_at_least_half_its_ttl_and_changes_only_forward(
    ttl_s: int, issued: float, later: float, more: float
) -> None:
    now = issued + later
    expires = url_expiry(ttl_s, issued_from=issued, now=now)
    assert ttl_s / 2 - 1 <= expires - now <= ttl_s
    assert url_expiry(ttl_s, issued_from=issued, now=now + more) >= expires


# The remote poll's backoff

jitters = st.floats(0.8, 1.2)
retry_afters = st.one_of(st.none(), st.floats(0, 10**5))


@settings(deadline=None)
@given(st.integers(0, 64), st.floats(0.01, 600), jitters, retry_afters)
def test_backoff_grows_with_failures_up_to_its_cap(
    failures: int, base_s: float, jitter: float, retry_after_s: float | None
) -> None:
    delay = backoff_s(failures, base_s, retry_after_s, jitter=jitter)
    later = backoff_s(failures + 1, base_s, retry_after_s, jitter=jitter)
    assert delay <= later
    assert delay <= max(MAX_BACKOFF_S, retry_after_s or 0.0)
    assert delay >= min(base_s * 0.8, MAX_BACKOFF_S)


@settings(deadline=None)
@given(st.integers(0, 64), st.floats(0.01, 600), retry_afters)
def test_backoff_honours_retry_after_and_its_cap_with_random_jitter(
    failures: int, base_s: float, retry_after_s: float | None
) -> None:
    delay = backoff_s(failures, base_s, retry_after_s)
    assert delay >= (retry_after_s or 0.0)
    assert delay <= max(MAX_BACKOFF_S, retry_after_s or 0.0)
    assert math.isfinite(delay) and delay > 0
