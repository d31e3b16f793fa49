"""Delivers what the outbox holds, in threads of its own: a write or a sync only hands its event over
(with the destinations that want it, chosen then); this thread queues it in the outbox and sends it,
so a destination that is down, slow or hanging costs a change nothing.

Each destination is served by one task at a time, in the order its events came. A chat destination
is sent no faster than the service takes (Slack about one message a second, Discord five per two
seconds, WeCom twenty a minute): what piles up meanwhile goes out as one message that sums it up,
not one by one. A generic webhook gets every event on its own (a machine reads it), signed as the
Standard Webhooks specification says, with the event's id as `webhook-id` on every retry.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from apphub.notify import changesets
from apphub.notify.cutoff import OpenSockets
from apphub.notify.destinations import Destination, DestinationNotFound, Destinations, Kind
from apphub.notify.events import Event
from apphub.notify.outbox import Delivery, Outbox

logger = logging.getLogger("apphub.notify")

Render = Callable[[Kind, Sequence[Event]], dict[str, object]]  # one message's body for one or more events
# The least time between two messages to one chat destination (their documented rates).
MIN_INTERVAL_S: dict[Kind, float] = {"slack": 1.0, "discord": 0.4, "wecom": 3.0, "webhook": 0.0}
TIMEOUT_S = 10.0
PRUNE_EVERY_S = 3600.0  # how often old deliveries are forgotten (Outbox.prune)
IDLE_S = 5.0  # the longest the sender sleeps with nothing to send
FAULT_PAUSE_S = 5.0  # how long a destination whose task failed unexpectedly is left alone
PAUSE_MAX_S = 2.0  # the longest sends wait for a sync round to end (pause)
ERROR_CHARS = 300  # of a destination's answer, kept with the attempt
ANSWER_CHARS = 10_000  # of an answer read for it (pieces of the URL are taken out before it is cut)


class Sender:
    def __init__(self, outbox: Outbox, destinations: Destinations, render: Render, *,
                 client: httpx.Client | None = None, workers: int = 4,
                 before_dispatch: Callable[[], None] | None = None) -> None:
        """`before_dispatch`: called by the sender's thread before each round (the notifier queues
        there what it was told meanwhile)."""
        self._outbox = outbox
        self._before_dispatch = before_dispatch or (lambda: None)
        self._paused_until = 0.0  # monotonic; see pause
        self._destinations = destinations
        self._render = render
        self._client = client or httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
        self._sockets = OpenSockets()  # of the requests in flight, cut off at stop
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apphub-notify")
        self._busy: set[str] = set()  # destinations with a task in flight
        self._next_allowed: dict[str, float] = {}  # monotonic: a chat destination's pace, a failed task's pause
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._destinations.on_change.append(self.wake)  # one enabled again has deliveries waiting
        self._thread = threading.Thread(target=self._run, name="apphub-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop dispatching and cut off the sends in flight. A send cut off records nothing: its
        delivery stays pending, untried, and goes out at the next start (receivers de-duplicate on
        the event's id). One that had its answer gets up to `timeout` to record it."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        with contextlib.suppress(ValueError):
            self._destinations.on_change.remove(self.wake)
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)  # a task cancelled before it ran releases its name
        self._sockets.cut_off()
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._busy:
            self._client.close()

    def wake(self) -> None:
        """Something was queued: look now rather than at the next due time."""
        self._wake.set()

    def pause(self) -> None:
        """A sync round is carrying a change to the services: neither queue nor send until it
        reports (resume), at most PAUSE_MAX_S. Sending beside it would take the interpreter and
        the database from the round, which the change's propagation would pay for."""
        self._paused_until = time.monotonic() + PAUSE_MAX_S

    def resume(self) -> None:
        self._paused_until = 0.0
        self._wake.set()

    def _run(self) -> None:
        pruned_at = 0.0
        while not self._stop.is_set():
            paused = self._paused_until - time.monotonic()
            if paused > 0:
                self._wake.wait(paused)
                self._wake.clear()
                continue
            wait = IDLE_S
            try:
                self._before_dispatch()
                self.dispatch()
                if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                    pruned_at = time.monotonic()
                    self._outbox.prune()
                wait = self._seconds_to_next()
            except Exception:  # the notifier must outlive a database hiccup; the next round retries
                logger.exception("notifications: a round failed")
            self._wake.wait(wait)
            self._wake.clear()

    def dispatch(self) -> int:
        """Start a task for every destination that has a delivery due, no task in flight, and no
        pace to keep; how many. The task reads the deliveries once it holds the destination: a list
        read before would hold those that a task ending meanwhile has just delivered (sent twice)."""
        now, clock = time.time(), time.monotonic()
        started = 0
        for name, first in self._outbox.first_due_at().items():
            if first > now:
                continue
            with self._lock:
                if self._stop.is_set() or name in self._busy or clock < self._next_allowed.get(name, 0.0):
                    continue
                self._busy.add(name)
            try:
                task = self._pool.submit(self._serve, name)
            except RuntimeError:  # the pool is shut down: stopping
                self._release(name)
                break
            task.add_done_callback(functools.partial(self._release_if_cancelled, name))
            started += 1
        return started

    def _seconds_to_next(self) -> float:
        """How long until something may be sent: the first due delivery of a destination neither
        busy (its task wakes the sender as it ends) nor paced; at most IDLE_S (a change of the
        destinations, a queued event or a resume wakes it sooner)."""
        first_due = self._outbox.first_due_at()
        now, clock = time.time(), time.monotonic()
        with self._lock:
            waits = [max(first - now, self._next_allowed.get(name, 0.0) - clock)
                     for name, first in first_due.items() if name not in self._busy]
        return max(min([IDLE_S, *waits]), 0.0)

    def _serve(self, name: str) -> None:
        try:
            try:
                destination = self._destinations.get(name)
            except DestinationNotFound:
                return  # removed: its pending deliveries were failed with it
            if not destination.enabled:
                return
            due = self._outbox.due_for(name)
            if destination.kind == "webhook":
                for delivery in due:
                    if self._stop.is_set() or not self._send(destination, [delivery]):
                        break  # down: the rest wait for the retry, in order
            else:
                self._serve_chat(destination, due)
        except Exception:
            if not self._stop.is_set():  # stopping closes the database under a send cut short
                logger.exception("notifications: delivering to '%s' failed", name)
                with self._lock:  # a fault that comes back at once is not retried in a tight loop
                    self._next_allowed[name] = time.monotonic() + FAULT_PAUSE_S
        finally:
            self._release(name)
            self._wake.set()

    def _release_if_cancelled(self, name: str, task: Future[None]) -> None:
        if task.cancelled():  # never ran (the sender stopped): its `finally` will not release it
            self._release(name)

    def _release(self, name: str) -> None:
        with self._lock:
            self._busy.discard(name)

    def _serve_chat(self, destination: Destination, due: list[Delivery]) -> None:
        """One message, however many piled up; a change whose sync report is on its way waits for
        it (changesets), with what came after it."""
        pile = due
        if destination.holds_change_sets():
            held = {delivery.id: delivery for delivery in self._outbox.untried(destination.name)}
            pile = sorted({**held, **{delivery.id: delivery for delivery in due}}.values(), key=lambda d: d.id)
            pile, waiting, until = changesets.split(pile, time.time())
            if waiting and until is not None:
                self._outbox.postpone(waiting, until)
        if pile:
            self._send(destination, pile)
            with self._lock:
                self._next_allowed[destination.name] = time.monotonic() + MIN_INTERVAL_S[destination.kind]

    def _send(self, destination: Destination, deliveries: list[Delivery]) -> bool:
        """One POST for `deliveries` (one, or a chat destination's pile); each records the result.
        Whether it was delivered."""
        events = [delivery.event for delivery in deliveries]
        try:
            body = json.dumps(self._render(destination.kind, events), separators=(",", ":"), ensure_ascii=False)
        except Exception as exc:  # recorded like a refusal: retried on the schedule, never in a tight loop
            logger.exception("notifications: the message for '%s' could not be built", destination.name)
            for delivery in deliveries:
                self._outbox.record(delivery, None, f"the message could not be built ({type(exc).__name__})", 0.0)
            return False
        url, headers = destination.url.reveal(), {"content-type": "application/json", "user-agent": "apphub"}
        if destination.kind == "webhook":
            headers.update(_signed(destination, events[0], body))
        started = time.monotonic()
        status, error, retry_after = None, None, None
        try:
            target = httpx.URL(url)
            if destination.kind == "discord":  # Discord says what is wrong only with wait=true
                target = target.copy_set_param("wait", "true")
            response = self._client.post(target, content=body.encode("utf-8"), headers=headers,
                                         extensions={"trace": self._sockets.trace})
            status, error, retry_after = _judged(destination.kind, response)
            # an error page may repeat the path (a credential): taken out before the text is cut
            error = without_url(error, url)[:ERROR_CHARS] if error else None
        except httpx.TimeoutException:
            error = f"no answer within {TIMEOUT_S:g} s"
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # UnicodeError: a host IDNA refuses
            # the exception's text may name the URL: a credential
            error = f"could not connect ({type(exc).__name__})" if isinstance(exc, httpx.HTTPError) \
                else f"the URL cannot be used ({type(exc).__name__}): add the destination again with a valid one"
        if status is None and self._stop.is_set():
            return False  # cut off by stop (cutoff): not an attempt, the next start sends it
        duration_ms = (time.monotonic() - started) * 1000
        gone = status == 410
        for delivery in deliveries:
            self._outbox.record(delivery, status, error, duration_ms,
                                retry_after=retry_after, final=gone)
        if gone:
            self._destinations.set_enabled(destination.name, False, "the destination answered 410 Gone: it no "
                                           "longer exists; add it again with its new URL")
            logger.warning("notifications: destination '%s' answered 410 Gone and is disabled", destination.name)
        return error is None and status is not None and 200 <= status < 300


def without_url(text: str, url: str) -> str:
    """`text` (a destination's answer) without the URL or any piece of it long enough to be a
    token: its path, query, and their parts of more than 8 characters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(the answer is not kept: the URL cannot be read)"
    pieces = {url, parts.path, parts.query, parts.netloc if parts.password else "",
              *re.split(r"[/?&=;#]", f"{parts.path}?{parts.query}")}
    for piece in sorted((p for p in pieces if len(p) > 8), key=len, reverse=True):
        text = text.replace(piece, "********")
        text = text.replace(quote(piece, safe="/"), "********")
    return text


def _signed(destination: Destination, event: Event, body: str) -> dict[str, str]:
    """The Standard Webhooks headers: the event's id (the same on every retry: receivers de-duplicate
    on it), the time of this attempt, and the HMAC-SHA256 signature of `id.timestamp.body`."""
    assert destination.secret is not None  # a webhook always has one (Destinations.add)
    at = datetime.now(UTC)
    signature = Webhook(destination.secret.reveal()).sign(event.id, at, body)
    return {"webhook-id": event.id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature}


def _judged(kind: Kind, response: httpx.Response) -> tuple[int, str | None, float | None]:
    """The status, what went wrong (None: delivered), and how long the destination asked us to wait."""
    status = response.status_code
    retry_after = _retry_after(response)
    if 200 <= status < 300:
        if kind == "wecom":  # WeCom answers 200 with an error code in the body
            code = _json(response).get("errcode", 0)
            if code != 0:
                return status, f"WeCom errcode {code}: {str(_json(response).get('errmsg', ''))[:ANSWER_CHARS]}", None
        return status, None, None
    return status, f"HTTP {status}: {response.text[:ANSWER_CHARS]}", retry_after


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds or as an HTTP date, or Discord's `retry_after` (seconds) in its body."""
    header = response.headers.get("retry-after")
    if header:
        with contextlib.suppress(ValueError):
            seconds = float(header)
            return max(seconds, 0.0) if math.isfinite(seconds) else None
        with contextlib.suppress(TypeError, ValueError):
            return max(email.utils.parsedate_to_datetime(header).timestamp() - time.time(), 0.0)
    found = _json(response).get("retry_after")
    return float(found) if isinstance(found, int | float) and math.isfinite(found) else None


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        found = response.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
