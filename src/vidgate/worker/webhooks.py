"""The webhook sender: delivers the outbox (``webhook_deliveries``), at least once.

Deliveries are written with the run change that calls for them, so none is lost between a
change and its send. The sender leases due deliveries, sends each concurrently (so a slow
or dead receiver delays nobody else), and records every attempt. Any 2xx is delivered;
``410 Gone`` stops; anything else is retried with exponential backoff and jitter, with the
same ``webhook-id``, until ``retry_for_s`` after the event. The body is rendered once, at
the first attempt, and every retry sends the same bytes. Targets are checked again at
every attempt, as the connection is made and against the address it is made to: a host
that now resolves inside the network is refused (see :mod:`vidgate.netguard`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from typing import Any

import httpx

from vidgate.config import ServerSettings, WebhookSettings
from vidgate.events.hub import RunChange
from vidgate.logs import event
from vidgate.metrics import Metrics
from vidgate.netguard import GuardedTransport, Resolve, Unresolved, UnsafeTarget, system_resolve
from vidgate.storage.base import Storage
from vidgate.store.errors import StoreUnavailable
from vidgate.store.records import DeliveryRecord, KeyRecord, RunRecord
from vidgate.store.sql import SQLStore
from vidgate.store.webhooks import DELIVERED, FAILED, GONE, PENDING
from vidgate.views import encode, iso, status_body
from vidgate.webhooks import sign
from vidgate.worker.wakeup import sleep_until

log = logging.getLogger("vidgate.webhooks")
IDLE_S = 1.0
"""How often an idle sender looks for retries that have come due."""
LEASE_S = 60.0
USER_AGENT = "vidgate-webhooks"
KEY_CACHE_S = 5.0
SNAPSHOTS_KEPT = 10_000


def retry_delay_s(attempts: int, settings: WebhookSettings) -> float:
    """The wait after the ``attempts``-th failed attempt: doubling, capped, with jitter."""
    delay: float = min(settings.max_retry_s, settings.first_retry_s * 2.0 ** min(attempts - 1, 30))
    return delay * random.uniform(0.75, 1.25)


def public_base_url(settings: ServerSettings) -> str:
    """Where video links in webhook bodies point: ``public_base_url``, else the address
    the API listens on."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


class WebhookSender:
    def __init__(
        self,
        store: SQLStore,
        storage: Storage,
        settings: WebhookSettings,
        server: ServerSettings,
        url_ttl_s: int,
        owner: str,
        *,
        resolve: Resolve = system_resolve,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or Metrics()
        self.storage = storage
        self.settings = settings
        self.base = public_base_url(server)
        self.url_ttl_s = url_ttl_s
        self.owner = owner
        self.resolve = resolve
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._keys: dict[str, tuple[KeyRecord, float]] = {}
        self._snapshots: dict[str, RunRecord] = {}
        self._ready: collections.deque[DeliveryRecord] = collections.deque()
        self._look = True  # look in the outbox (at start: whatever is pending)
        self._running = False
        self._http: httpx.AsyncClient | None = None  # while running
        # A lease outlasts any attempt (DNS check, connect, send and answer all fall within
        # timeout_s), so no other sender takes a delivery while it is being made.
        self.lease_s = max(LEASE_S, 2 * settings.timeout_s + 30)

    def wake(self, change: RunChange | None = None) -> None:
        """A run changed and may have queued a delivery. One queued by this process comes
        leased to this sender and is sent at once; one queued elsewhere (or a resync) makes
        the sender look in the outbox. A change made here also carries the run as
        committed, from which the body is rendered without reading the run again."""
        delivery = change.delivery if change is not None else None
        if change is not None and change.run is not None:
            if len(self._snapshots) >= SNAPSHOTS_KEPT:
                self._snapshots.pop(next(iter(self._snapshots)))
            self._snapshots[change.run_id] = change.run
        if delivery is not None and delivery.lease_owner == self.owner:
            if self._http is not None and len(self._tasks) < self.settings.concurrency:
                self._send(self._http, delivery)  # at once, not on the loop's next turn
            else:
                self._ready.append(delivery)
            self._offer_leases()
        else:
            self._look = True
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        timeout = httpx.Timeout(self.settings.timeout_s)
        transport = None
        if not self.settings.allow_private_hosts:
            limits = httpx.Limits(max_connections=self.settings.concurrency)
            transport = GuardedTransport(resolve=self.resolve, limits=limits)
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
        ) as http:
            self._running, self._http = True, http
            self._offer_leases()
            try:
                while not stop.is_set():
                    self._wake.clear()  # before looking: a wake-up meanwhile is not lost
                    while self._ready and len(self._tasks) < self.settings.concurrency:
                        self._send(http, self._ready.popleft())
                    free = self.settings.concurrency - len(self._tasks)
                    if self._look and free > 0:
                        self._look = False
                        try:
                            claimed = await self.store.claim_deliveries(
                                self.owner, free, self.lease_s
                            )
                        except StoreUnavailable as exc:  # looked for again in a while
                            event(log, "webhook.claim_failed", logging.WARNING, error=exc)
                            claimed = []
                        except Exception:
                            log.exception("webhook.claim_failed")
                            claimed = []
                        for delivery in claimed:
                            self._send(http, delivery)
                        if len(claimed) == free:  # more may be due
                            self._look = True
                    await sleep_until(IDLE_S, stop, self._wake)
                    if not self._wake.is_set():  # a quiet second: look for due retries
                        self._look = True
            finally:
                self._running, self._http = False, None
                self.store.sender = None
                # Attempts cut off here, and deliveries not yet sent, are handed back.
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                try:
                    await self.store.release_deliveries(self.owner)
                except Exception:
                    log.exception("webhook.release_failed")

    def _offer_leases(self) -> None:
        """While this sender has room, deliveries written in this process come leased to
        it and go out at once; with a backlog they are written free, for any sender to
        claim, so none waits here until its lease runs out."""
        busy = len(self._tasks) + len(self._ready) >= self.settings.concurrency
        self.store.sender = None if busy or not self._running else (self.owner, self.lease_s)

    def _send(self, http: httpx.AsyncClient, delivery: DeliveryRecord) -> None:
        task = asyncio.create_task(self._deliver(http, delivery))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._offer_leases()
        self._wake.set()  # a slot came free

    async def _deliver(self, http: httpx.AsyncClient, delivery: DeliveryRecord) -> None:
        try:
            payload = delivery.payload or await self._render(delivery)
            outcome = await self._attempt(http, delivery, payload)
        except Exception as exc:  # the attempt is retried; the sender goes on
            log.exception(
                "webhook.attempt_crashed run_id=%s delivery=%s", delivery.run_id, delivery.id
            )
            payload = delivery.payload or ""
            outcome = {"at": time.time(), "statusCode": None, "error": f"internal: {exc!r}"}
        status = self._status_after(delivery, outcome)
        next_at = None
        if status == PENDING:
            next_at = outcome["at"] + retry_delay_s(delivery.attempts + 1, self.settings)
            outcome["nextAttemptAt"] = iso(next_at)
        await self.store.record_attempt(
            delivery,
            self.owner,
            status=status,
            attempt=outcome,
            next_attempt_at=next_at,
            payload=payload,
        )
        self.metrics.webhook_attempt(status)
        event(
            log,
            f"webhook.{status}",
            run_id=delivery.run_id,
            delivery=delivery.id,
            type=delivery.type,
            attempt=delivery.attempts + 1,
            status_code=outcome.get("statusCode"),
            error=outcome.get("error"),
        )

    def _status_after(self, delivery: DeliveryRecord, outcome: dict[str, Any]) -> str:
        code = outcome.get("statusCode")
        if outcome.get("refused"):
            return FAILED
        if isinstance(code, int) and 200 <= code < 300:
            return DELIVERED
        if code == 410:
            return GONE
        if outcome["at"] - delivery.created_at >= self.settings.retry_for_s:
            return FAILED  # retried for long enough: given up
        return PENDING

    async def _key(self, key_id: str) -> KeyRecord:
        """The key's signing secrets, read at most every ``KEY_CACHE_S`` (a rotation keeps
        the old secret signing far longer than that)."""
        cached = self._keys.get(key_id)
        if cached is not None and time.monotonic() - cached[1] < KEY_CACHE_S:
            return cached[0]
        key = await self.store.get_key(key_id)
        self._keys[key_id] = (key, time.monotonic())
        return key

    async def _render(self, delivery: DeliveryRecord) -> str:
        """The body, from the run as the change that queued the delivery left it (read
        again if that is not at hand, e.g. the change was made by another process)."""
        run = self._snapshots.get(delivery.run_id)
        if run is not None and run.seq == delivery.seq:
            del self._snapshots[delivery.run_id]
        else:
            run = await self.store.get(delivery.run_id)
        data = await status_body(
            self.store, self.storage, run, base=self.base, url_ttl_s=self.url_ttl_s
        )
        body = {"type": delivery.type, "timestamp": iso(delivery.created_at), "data": data}
        return encode(body).decode()

    async def _attempt(
        self, http: httpx.AsyncClient, delivery: DeliveryRecord, payload: str
    ) -> dict[str, Any]:
        started = time.time()
        outcome: dict[str, Any] = {"at": started, "statusCode": None, "error": None}
        key = await self._key(delivery.api_key_id)
        timestamp = int(started)
        body = payload.encode("utf-8")
        signatures = [
            sign(secret, delivery.id, timestamp, body)
            for secret in key.signing_secrets(started, self.settings.secret_overlap_s)
        ]
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signatures),
        }
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                response = await http.post(delivery.url, content=body, headers=headers)
            outcome["statusCode"] = response.status_code
            if not 200 <= response.status_code < 300:
                outcome["error"] = f"the receiver answered HTTP {response.status_code}"
        except Unresolved as exc:  # perhaps a passing DNS fault: tried again later
            outcome["error"] = f"the webhook URL {exc}"
        except UnsafeTarget as exc:  # checked as it connected: nothing was sent
            outcome.update(error=f"refused: the webhook URL {exc}", refused=True)
        except TimeoutError:
            outcome["error"] = f"no answer within {self.settings.timeout_s:g} s"
        except httpx.HTTPError as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"[:500]
        outcome["durationMs"] = round((time.time() - started) * 1000, 1)
        return outcome
