"""Benchmark of notifications (issue 13): what they cost a change, and how fast they arrive.

    .venv/bin/python benchmarks/notifications.py [--changes 200] [--block 20] [--gap-ms 100]
    .venv/bin/python benchmarks/notifications.py --changes 40 --block 10     # a quick look, ~50 s

Prints one JSON document on stdout (progress goes to stderr); exits 1 when the run is not valid
(`summary.problems`). A missed aim does not make it fail, nor does a warning (`summary.warnings`).

In this process, one data folder served as `apphub serve` serves it (its `Core`, a `SyncEngine`
watching config.ini, `notify_of_sync`, the notifier's sender started) with one service reading one
JSON file (merge mode, reload strategy `none`: the figure is propagation, not a reload), and three
notification destinations: a Standard Webhooks webhook (signatures verified), a Slack-shaped one,
and a webhook that hangs (it never answers: the sender gives up after its 10 s timeout). Two sides:
  - `three`: the three destinations enabled;
  - `none`: the same three disabled (paused). The notifier then does what it does with none
    configured: each write and round finds no destination wanting its event (their filters are
    held in memory), nothing is handed over, queued or due (checked: no delivery is made).
    One request to the hanging receiver may still be in flight (a thread blocked on a socket).
The receivers (tests/notify/receivers.py) and an inotify observer of the target folder run in a
second process (`--worker`), as a real receiver would be elsewhere, so that neither their CPU nor
the GIL weighs on apphub's threads; its clock is the same (CLOCK_MONOTONIC is one clock for the
whole machine: checked at the start, `checks.clock`).

A change is one write through the store, as `PUT /api/v1/settings` makes it: `config.update` of
`[bench] value` (a new value each time), then `engine.request(immediate=True)` (what the route's
`sync_after_write` does; the watcher sees the write too). The sides take turns in blocks of
`--block` changes (none, three, three, none, ...) so that the machine's drift weighs on both
alike; `--changes` measured changes per side, after `--warmup` unmeasured ones. This is done in
each mode of `--modes`: `spaced` (the next change `--gap-ms` after the last one's report) and
`back_to_back` (as soon as it came: a burst, the sends of a change overlap the next change).
After each block of `three`, the benchmark waits until the webhook holds every event of the block
and the Slack destination has nothing pending, so that its sends do not spill into a `none` block.

Measured (all on CLOCK_MONOTONIC):
  1. propagation: from just before the write to the target file renamed into place holding the
     new value (seen by inotify in the worker process); per side p50/p90/p95/p99/max, and
     `three` / `none` (aim: p99 at most 1.05). Also to the sync round's report (a listener
     registered before the notifier's): that adds the round's audit record;
  2. apply done -> webhook: from that report to the webhook receiver having read the whole
     request body of the `sync.applied` event of that version (aim: p50 under 50 ms);
  3. write returned -> webhook: from `config.update` returning to the receiver holding the
     `settings.changed` event of that version.
Checked (else the run is invalid): every measured change's file and report came, with its version;
the webhook got both events of every `three` change (`webhook-id` the event's, signature verified)
and nothing failed (one that arrived more than once is a warning: delivery is at least once, and a
receiver de-duplicates on the event's id); Slack got messages it accepts; the hanging
receiver was sent to and hung: its deliveries stay pending, attempts timed out, none delivered;
side `none` queued nothing.
Also reported: each side's CPU per change by thread group, the sender's rounds (a counter around
`Sender.dispatch`), and (`--idle-s`) what the sender does with no change coming.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from apphub.api.app import notify_of_sync
from apphub.audit.log import Actor
from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.notify.destinations import new_signing_secret
from apphub.notify.sender import TIMEOUT_S
from apphub.paths import DataDir
from apphub.reload.build import build_backends
from apphub.sync.apply import ApplyReport
from apphub.sync.engine import SyncEngine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AIM_RATIO_P99 = 1.05
AIM_WEBHOOK_P50_MS = 50.0
HANG_S = 120.0  # the hanging receiver answers (503) after this, or when it closes: never within the sender's 10 s
CHANGE_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 30.0
SETTLE_S = 0.3  # before each block, whichever side: the last block's stragglers (audit, watcher) settle
VALUE = "bench.value"

SCHEMA = """\
config:
  sections:
    bench:
      description: the notifications benchmark's service
      keys:
        value: {type: string, default: "0", apply: hot}
"""


def log(message: str) -> None:
    print(f"[notifications] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200, help="measured changes per side and mode (default 200)")
    parser.add_argument("--block", type=int, default=20,
                        help="changes per block; the sides take turns block by block (default 20)")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured changes per side before each mode "
                                                               "(default 10)")
    parser.add_argument("--gap-ms", type=float, default=100.0,
                        help="in the spaced mode, the pause after a change's report before the next (default 100)")
    parser.add_argument("--modes", default="spaced,back_to_back",
                        help="spaced and/or back_to_back, comma-separated (default both)")
    parser.add_argument("--idle-s", type=float, default=3.0,
                        help="at the end, seconds without changes with the destinations enabled, then disabled, to "
                             "see what the sender does meanwhile (default 3; 0: skip)")
    parser.add_argument("--bootstrap", type=int, default=2000,
                        help="resamples for the p99 ratio's interval (default 2000; 0: none)")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON document to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    args.modes = [part.strip() for part in args.modes.split(",") if part.strip()]
    if not args.modes or not set(args.modes) <= {"spaced", "back_to_back"}:
        parser.error("--modes takes spaced and/or back_to_back")
    if args.changes < 1 or args.block < 1 or args.warmup < 0 or args.gap_ms < 0:
        parser.error("--changes and --block must be positive, --warmup and --gap-ms not negative")
    if args.changes % args.block:
        parser.error("--changes must be a multiple of --block")
    return args


def summary_ms(samples: Sequence[float]) -> dict[str, float]:  # "n" is a count
    """Nearest-rank percentiles, as benchmarks/loadgen.py."""
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))], 3)

    return {"n": len(ordered), "p50": at(0.5), "p90": at(0.9), "p95": at(0.95), "p99": at(0.99),
            "max": round(ordered[-1], 3), "mean": round(statistics.fmean(ordered), 3)}


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


# -- the second process: receivers and the target observer --------------------------------------------------


def worker() -> int:
    """Three receivers and an inotify observer of the target folders; answers one JSON line per
    JSON line read on stdin (the benchmark's main thread is its only client)."""
    sys.path.insert(0, str(ROOT))
    from inotify_simple import INotify, flags
    from tests.notify.receivers import Answer, Receiver, Request, SlackReceiver, WebhookReceiver

    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # nothing else may write to the answers
    job = json.loads(sys.stdin.readline())
    lock = threading.Lock()
    records: dict[str, list[dict[str, Any]]] = {"webhook": [], "slack": [], "hangs": []}

    def record(kind: str, entry: dict[str, Any]) -> None:
        with lock:
            records[kind].append(entry)

    class TimedWebhook(WebhookReceiver):
        def answer(self, request: Request) -> Answer:
            at = time.monotonic()  # the whole body was read (Receiver's handler reads it, then answers)
            answer = super().answer(request)  # verifies the Standard Webhooks signature
            body = request.json()
            record("webhook", {"at": at, "type": body.get("type"), "version": body["data"].get("version"),
                               "id": body["data"].get("id"), "webhook_id": request.headers.get("webhook-id"),
                               "status": answer.status, "problems": list(request.problems)})
            return answer

    class TimedSlack(SlackReceiver):
        def answer(self, request: Request) -> Answer:
            at = time.monotonic()
            answer = super().answer(request)
            record("slack", {"at": at, "status": answer.status, "problems": list(request.problems),
                             "text": str(request.json().get("text", ""))[:200]})
            return answer

    class Hanging(Receiver):
        def answer(self, request: Request) -> Answer:
            record("hangs", {"at": time.monotonic(), "webhook_id": request.headers.get("webhook-id")})
            return Answer(503, b"hung", delay_s=HANG_S)  # ends early only when the receiver closes: never a 2xx

    seen: dict[str, float] = {}  # value -> when the target file was seen holding it
    seen_changed = threading.Condition()
    stop = threading.Event()
    inotify = INotify()
    folders = {inotify.add_watch(folder, flags.MOVED_TO | flags.CLOSE_WRITE): folder for folder in job["folders"]}

    def observe() -> None:
        while not stop.is_set():
            events = inotify.read(timeout=100)
            at = time.monotonic()
            for event in events:
                if event.name != "app.json":
                    continue
                try:
                    value = json.loads(Path(folders[event.wd], event.name).read_text(encoding="utf-8"))["value"]
                except (OSError, ValueError, KeyError):
                    continue
                with seen_changed:
                    seen.setdefault(str(value), at)
                    seen_changed.notify_all()

    observer = threading.Thread(target=observe, name="observer", daemon=True)
    observer.start()
    with TimedWebhook(secret=job["secret"]) as webhook, TimedSlack() as slack, Hanging() as hangs:
        out.write(json.dumps({"webhook": webhook.url, "slack": slack.url, "hangs": hangs.url,
                              "now": time.monotonic()}) + "\n")
        sent = {kind: 0 for kind in records}
        for line in sys.stdin:
            command = json.loads(line)
            if command["do"] == "now":
                answer: dict[str, Any] = {"now": time.monotonic()}
            elif command["do"] == "file":  # when the target file held this value (None: not within the timeout)
                value = str(command["value"])
                with seen_changed:
                    seen_changed.wait_for(lambda value=value: value in seen, command["timeout"])  # type: ignore[misc]
                    answer = {"at": seen.get(value)}
            elif command["do"] == "dump":  # what the receivers got since the last dump
                with lock:
                    answer = {kind: found[sent[kind]:] for kind, found in records.items()}
                    sent = {kind: len(found) for kind, found in records.items()}
            elif command["do"] == "quit":
                break
            else:
                answer = {"error": f"unknown command {command['do']!r}"}
            out.write(json.dumps(answer) + "\n")
    stop.set()
    observer.join(2)
    inotify.close()
    return 0


class Worker:
    """The main process's end of the worker."""

    def __init__(self, folders: Sequence[Path], secret: str) -> None:
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                        cwd=ROOT)
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._in: IO[str] = self.process.stdin
        self._out: IO[str] = self.process.stdout
        self._in.write(json.dumps({"folders": [str(folder) for folder in folders], "secret": secret}) + "\n")
        started = self._read()
        self.urls = {kind: str(started[kind]) for kind in ("webhook", "slack", "hangs")}
        self.got: dict[str, list[dict[str, Any]]] = {"webhook": [], "slack": [], "hangs": []}

    def _read(self) -> dict[str, Any]:
        line = self._out.readline()
        if not line:
            raise RuntimeError(f"the worker process ended (exit {self.process.poll()})")
        found: dict[str, Any] = json.loads(line)
        return found

    def call(self, do: str, **fields: Any) -> dict[str, Any]:
        self._in.write(json.dumps({"do": do, **fields}) + "\n")
        return self._read()

    def file_seen(self, value: str, timeout: float) -> float | None:
        at = self.call("file", value=value, timeout=timeout)["at"]
        return None if at is None else float(at)

    def dump(self) -> None:
        for kind, found in self.call("dump").items():
            self.got[kind] += found

    def clock_check(self) -> dict[str, Any]:
        """The worker's clock read between two of this process's: the same clock, or not."""
        checks = []
        for _ in range(5):
            before = time.monotonic()
            theirs = float(self.call("now")["now"])
            after = time.monotonic()
            checks.append((before, theirs, after))
        ok = all(before <= theirs <= after for before, theirs, after in checks)
        return {"same_clock": ok, "round_trip_ms_max": round(max(a - b for b, _, a in checks) * 1000, 3)}

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._in.write(json.dumps({"do": "quit"}) + "\n")
            self._in.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        with contextlib.suppress(OSError):
            self._out.close()


# -- the data folder, served as `apphub serve` serves it ------------------------------------------------------


SIDES = ("none", "three")
DESTINATIONS = ("hook", "chat", "hangs")


@dataclass
class Sample:
    side: str
    mode: str
    value: str
    version: str
    started: float
    returned: float
    report_at: float
    file_at: float
    measured: bool

    @property
    def to_file_ms(self) -> float:
        return (self.file_at - self.started) * 1000

    @property
    def to_report_ms(self) -> float:
        return (self.report_at - self.started) * 1000

    @property
    def write_ms(self) -> float:
        return (self.returned - self.started) * 1000


class Invalid(Exception):
    """The run cannot be trusted (an event or a file that never came, a side that queued what it should not)."""


class World:
    """One data folder served as `apphub serve` serves it, with the three destinations."""

    def __init__(self, root: Path) -> None:
        self.actor = Actor("benchmark", "api")
        data = DataDir(root / "data")
        initialise(data)
        (data.schema_dir / "bench.yaml").write_text(SCHEMA, encoding="utf-8")
        self.srv = root / "srv" / "app"
        self.srv.mkdir(parents=True)
        target = self.srv / "app.json"
        target.write_text('{"value": "0", "other": "kept"}\n', encoding="utf-8")
        self.core = Core(data)
        self.core.system.update({"sync": {"roots": str(root / "srv"), "drift_interval_s": "0"}}, self.actor)
        self.core.config.update({"bench": {"value": "0"}}, self.actor)
        (data.root / "services.yaml").write_text(
            f"services:\n  app:\n    files:\n      - path: {target}\n        format: json\n"
            "        mode: merge\n        map:\n          value: \"${bench.value}\"\n    reload: {strategy: none}\n",
            encoding="utf-8")
        self.reports: dict[str, tuple[float, ApplyReport]] = {}  # version -> (when, the first report of it)
        self.reported = threading.Condition()
        self.engine: SyncEngine | None = None
        self.side = "three"
        self.file_after_report = 0  # the worker saw the file after the report came (it was slow to be run)
        self.dispatches = 0  # the sender's rounds (Sender.dispatch), and their time
        self.dispatch_s = 0.0

    def start(self, urls: dict[str, str], secret: str) -> None:
        self.engine = SyncEngine(self.core, build_backends, watch=True)
        self.engine.on_report.append(self._heard)  # before the notifier's: the moment the apply is done
        notify_of_sync(self.core, self.engine)  # as the server
        self.engine.start()
        deadline = time.monotonic() + 30
        while self.engine.status.engine.syncs < 1:
            if time.monotonic() > deadline:
                raise Invalid("no first sync within 30 s")
            time.sleep(0.01)
        destinations = self.core.notifications.destinations
        destinations.add("hook", "webhook", urls["webhook"], secret=secret)
        destinations.add("chat", "slack", urls["slack"])
        destinations.add("hangs", "webhook", urls["hangs"])
        self.core.notifications.start()
        sender = self.core.notifications.sender
        assert sender is not None
        dispatch = sender.dispatch

        def counted() -> int:  # a counter around the sender's round: microseconds
            started = time.perf_counter()
            try:
                return dispatch()
            finally:
                self.dispatches += 1
                self.dispatch_s += time.perf_counter() - started

        sender.dispatch = counted  # type: ignore[method-assign]

    def set_side(self, side: str) -> None:
        """`three`: the destinations enabled; `none`: all three disabled (paused), which leaves the
        notifier doing what it does with none configured: no destination wants the events, nothing
        is handed over, queued or due."""
        if side != self.side:
            for name in DESTINATIONS:
                self.core.notifications.destinations.set_enabled(name, side == "three", "benchmark: side none")
            self.side = side
            sender = self.core.notifications.sender
            if sender is not None:  # enabling wakes it too (Destinations.on_change); older versions did not
                sender.wake()

    def _heard(self, report: ApplyReport) -> None:
        at = time.monotonic()
        with self.reported:
            self.reports.setdefault(report.version, (at, report))
            self.reported.notify_all()

    def change(self, worker: Worker, value: str, mode: str, measured: bool) -> Sample:
        assert self.engine is not None
        started = time.monotonic()
        result = self.core.config.update({"bench": {"value": value}}, self.actor)
        returned = time.monotonic()
        self.engine.request(immediate=True)  # as the API's sync_after_write
        version = result.snapshot.version
        with self.reported:
            if not self.reported.wait_for(lambda: version in self.reports, CHANGE_TIMEOUT_S):
                raise Invalid(f"no sync report of version {version[:12]} ({value}) within {CHANGE_TIMEOUT_S:g} s")
            report_at, report = self.reports[version]
        outcome = report.outcomes.get("app")
        if outcome is None or outcome.result != "applied":
            raise Invalid(f"version {version[:12]} ({value}) was not applied: {report}")
        file_at = worker.file_seen(value, CHANGE_TIMEOUT_S)
        if file_at is None:
            raise Invalid(f"the target file never held {value}")
        if file_at <= started:
            raise Invalid(f"{value}'s file seen at {file_at}, before its write at {started}")
        self.file_after_report += file_at > report_at
        return Sample(self.side, mode, value, version, started, returned, report_at, file_at, measured)

    def deliveries_made(self) -> int:
        """How many deliveries were ever queued (the outbox's last id)."""
        newest = self.core.notifications.outbox.deliveries(limit=1)
        return newest[0].id if newest else 0

    def pending(self, destination: str) -> int:
        return len(self.core.notifications.outbox.deliveries(destination=destination, state="pending", limit=100_000))

    def close(self) -> None:
        if self.engine is not None:
            self.engine.stop()
        self.core.close()


# -- the run ---------------------------------------------------------------------------------------------------


def thread_cpu() -> dict[str, float]:
    """CPU seconds of every thread of this process so far, by group."""
    groups: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, ProcessLookupError):
            continue  # it ended meanwhile
        name = thread.name
        group = ("notify_sender" if name == "apphub-notify" else "notify_pool" if name.startswith("apphub-notify")
                 else "sync" if name == "apphub-sync" else "sync_io" if name.startswith("apphub-io")
                 else "main" if thread is threading.main_thread() else "other")
        groups[group] = groups.get(group, 0.0) + seconds
    return groups


@dataclass
class Usage:
    """What one side's blocks used: CPU by thread group, the sender's rounds, deliveries queued."""

    cpu: dict[str, float] = field(default_factory=dict)
    process_s: float = 0.0
    dispatches: int = 0
    dispatch_s: float = 0.0
    queued: int = 0
    seconds: float = 0.0

    def measure(self, world: World) -> Callable[[], None]:
        cpu, process, dispatches = thread_cpu(), time.process_time(), world.dispatches
        dispatch_s, queued, began = world.dispatch_s, world.deliveries_made(), time.monotonic()

        def done() -> None:
            for group, seconds in thread_cpu().items():
                self.cpu[group] = self.cpu.get(group, 0.0) + seconds - cpu.get(group, 0.0)
            self.process_s += time.process_time() - process
            self.dispatches += world.dispatches - dispatches
            self.dispatch_s += world.dispatch_s - dispatch_s
            self.queued += world.deliveries_made() - queued
            self.seconds += time.monotonic() - began

        return done

    def per_change(self, changes: int) -> dict[str, Any]:
        return {"cpu_ms_per_change": {"process": round(self.process_s / changes * 1000, 3),
                                      **{group: round(seconds / changes * 1000, 3)
                                         for group, seconds in sorted(self.cpu.items())}},
                "sender_rounds_per_change": round(self.dispatches / changes, 2),
                "sender_round_ms_mean": round(self.dispatch_s / max(self.dispatches, 1) * 1000, 3),
                "deliveries_queued": self.queued, "seconds": round(self.seconds, 2)}


def run_mode(mode: str, args: argparse.Namespace, world: World, worker: Worker,
             counter: Iterator[int]) -> tuple[list[Sample], dict[str, Any]]:
    gap_s = args.gap_ms / 1000 if mode == "spaced" else 0.0
    samples: list[Sample] = []
    for side in SIDES:  # warm-up: unmeasured
        switch(world, side)
        for _ in range(args.warmup):
            samples.append(world.change(worker, f"n{next(counter)}", mode, measured=False))
            time.sleep(gap_s)
        if side == "three":
            drain(world, worker, samples)
    usage = {side: Usage() for side in SIDES}
    blocks: dict[str, list[float]] = {side: [] for side in SIDES}
    for block in range(2 * args.changes // args.block):
        side = SIDES[(block + 1) // 2 % 2]  # none, three, three, none, none, three, ...
        switch(world, side)
        done = usage[side].measure(world)
        made = []
        for _ in range(args.block):
            made.append(world.change(worker, f"n{next(counter)}", mode, measured=True))
            time.sleep(gap_s)
        done()
        samples += made
        blocks[side].append(round(statistics.median(s.to_file_ms for s in made), 3))
        if side == "three":  # its sends end before the other side's block: they are not that block's cost
            drain(world, worker, samples)
        log(f"{mode}: block {block + 1} ({side}): p50 {blocks[side][-1]} ms")
    if usage["none"].queued:
        raise Invalid(f"{mode}: {usage['none'].queued} deliveries were queued with every destination disabled")
    return samples, {"block_p50_ms": blocks, "usage": {side: found.per_change(args.changes)
                                                        for side, found in usage.items()}}


def switch(world: World, side: str) -> None:
    """Let the last change's events be queued (or not) on the side it was made on, then switch."""
    time.sleep(SETTLE_S)
    world.set_side(side)
    time.sleep(SETTLE_S)


def drain(world: World, worker: Worker, samples: Sequence[Sample]) -> None:
    """Wait until the webhook holds both events of every change of side `three` so far, and
    neither the webhook nor Slack has anything pending."""
    versions = {sample.version for sample in samples if sample.side == "three"}
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        worker.dump()
        held = {(event["type"], event["version"]) for event in worker.got["webhook"]}
        missing = [v for v in versions if ("sync.applied", v) not in held or ("settings.changed", v) not in held]
        if not missing and world.pending("hook") == 0 and world.pending("chat") == 0:
            return
        if time.monotonic() > deadline:
            raise Invalid(f"after {DRAIN_TIMEOUT_S:g} s the webhook still misses events of {len(missing)} changes; "
                          f"pending: hook {world.pending('hook')}, chat {world.pending('chat')}")
        time.sleep(0.05)


def hung_out(world: World) -> None:
    """Wait for the hanging destination's first attempt to time out (a quick run can end sooner)."""
    deadline = time.monotonic() + TIMEOUT_S + 10
    while time.monotonic() < deadline:
        if any(d.attempts for d in world.core.notifications.outbox.deliveries(destination="hangs", limit=100_000)):
            return
        time.sleep(0.2)


def idle(world: World, seconds: float) -> dict[str, Any]:
    """What the sender does with no change coming, per side: its rounds and CPU per second; and
    what one round's query of the due deliveries (Outbox.due) costs with the backlog there is."""
    found: dict[str, Any] = {}
    for side in ("three", "none"):
        world.set_side(side)
        time.sleep(0.5)
        usage = Usage()
        done = usage.measure(world)
        time.sleep(seconds)
        done()
        found[side] = {"sender_rounds_per_s": round(usage.dispatches / usage.seconds, 1),
                       "sender_cpu_ms_per_s": round(usage.cpu.get("notify_sender", 0.0) / usage.seconds * 1000, 2),
                       "process_cpu_ms_per_s": round(usage.process_s / usage.seconds * 1000, 2)}
        outbox = world.core.notifications.outbox
        times, rows = [], 0
        for _ in range(20):
            started = time.perf_counter()
            rows = len(outbox.due())
            times.append((time.perf_counter() - started) * 1000)
        found[side].update({"due_rows": rows, "due_ms_p50": round(statistics.median(times), 3)})
    found["hangs_pending"] = world.pending("hangs")
    world.set_side("three")
    outbox = world.core.notifications.outbox
    queries: dict[str, Callable[[], object]] = {
        "due": outbox.due, "next_due_at": outbox.next_due_at, "awaiting_sync": outbox.awaiting_sync,
        # what a round and a task read now (Sender.dispatch, Sender._serve)
        "first_due_at": outbox.first_due_at, "due_for_hangs": lambda: outbox.due_for("hangs"),
        "untried_chat": lambda: outbox.untried("chat"),
        # the query of due() alone, without making a Delivery (json.loads, Event) of each row
        "due_sql_only": lambda: outbox._db.query(  # a private attribute: a diagnostic
            "SELECT * FROM (SELECT o.*, row_number() OVER (PARTITION BY o.destination ORDER BY o.id) AS place"
            " FROM notify_outbox o JOIN notify_destinations d ON d.name = o.destination AND d.enabled = 1"
            " WHERE o.state = 'pending' AND o.next_at <= ?) WHERE place <= ? ORDER BY id", (time.time(), 100))}
    found["sender_queries_ms_p50"] = {}
    for name, query in queries.items():
        times = []
        for _ in range(20):
            started = time.perf_counter()
            query()
            times.append((time.perf_counter() - started) * 1000)
        found["sender_queries_ms_p50"][name] = round(statistics.median(times), 3)
    return found


def bootstrap_ratio(three: Sequence[float], none: Sequence[float], fraction: float, resamples: int,
                    rng: random.Random) -> list[float] | None:
    """A 90 % interval of percentile(three) / percentile(none), resampling each side."""
    if resamples <= 0:
        return None
    ratios = sorted(percentile(rng.choices(three, k=len(three)), fraction)
                    / percentile(rng.choices(none, k=len(none)), fraction) for _ in range(resamples))
    return [round(ratios[int(0.05 * resamples)], 3), round(ratios[int(0.95 * resamples) - 1], 3)]


def figures(mode: str, samples: Sequence[Sample], extra: dict[str, Any], worker: Worker,
            args: argparse.Namespace) -> dict[str, Any]:
    measured = [s for s in samples if s.mode == mode and s.measured]
    side = {name: [s for s in measured if s.side == name] for name in SIDES}
    to_file = {name: [s.to_file_ms for s in found] for name, found in side.items()}
    to_report = {name: [s.to_report_ms for s in found] for name, found in side.items()}
    webhook: dict[tuple[str, str], float] = {}
    for event in worker.got["webhook"]:
        webhook.setdefault((event["type"], event["version"]), event["at"])
    applied = [(webhook[("sync.applied", s.version)] - s.report_at) * 1000 for s in side["three"]
               if ("sync.applied", s.version) in webhook]  # a missing one makes the run invalid (validate)
    changed = [(webhook[("settings.changed", s.version)] - s.returned) * 1000 for s in side["three"]
               if ("settings.changed", s.version) in webhook]
    rng = random.Random(13)

    def ratios(found: dict[str, list[float]]) -> dict[str, Any]:
        return {"p50": round(percentile(found["three"], 0.5) / percentile(found["none"], 0.5), 3),
                "p99": round(percentile(found["three"], 0.99) / percentile(found["none"], 0.99), 3),
                "mean": round(statistics.fmean(found["three"]) / statistics.fmean(found["none"]), 3),
                "p99_bootstrap_90pct": bootstrap_ratio(found["three"], found["none"], 0.99, args.bootstrap, rng)}

    ratio_file = ratios(to_file)
    apply_to_webhook = summary_ms(applied)
    return {
        "gap_ms": args.gap_ms if mode == "spaced" else 0.0,
        "propagation_to_file_ms": {"none": summary_ms(to_file["none"]),
                                   "three_one_hanging": summary_ms(to_file["three"])},
        "propagation_ratio": {**ratio_file, "aim_p99": AIM_RATIO_P99, "met": ratio_file["p99"] <= AIM_RATIO_P99},
        "propagation_to_report_ms": {"none": summary_ms(to_report["none"]),
                                     "three_one_hanging": summary_ms(to_report["three"])},
        "propagation_to_report_ratio": ratios(to_report),
        "write_ms": {name: summary_ms([s.write_ms for s in found]) for name, found in side.items()},
        "apply_done_to_webhook_ms": {**apply_to_webhook, "aim_p50": AIM_WEBHOOK_P50_MS,
                                     "met": apply_to_webhook.get("p50", math.inf) < AIM_WEBHOOK_P50_MS},
        "write_returned_to_webhook_ms": summary_ms(changed),
        **extra,
    }


def validate(world: World, worker: Worker,
             samples: Sequence[Sample]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Every event of side `three` arrived, signed; Slack took its messages; the hanging one hung:
    the problems (the run is invalid) and the warnings. An event that arrived more than once is a
    warning: delivery is at least once (a receiver de-duplicates on the event's id)."""
    problems: list[str] = []
    warnings: list[str] = []
    versions = {s.version for s in samples if s.side == "three"}
    events = worker.got["webhook"]
    by_kind = {kind: Counter(e["version"] for e in events if e["type"] == kind)
               for kind in ("settings.changed", "sync.applied")}
    for kind, counted in by_kind.items():
        missing = versions - set(counted)
        repeated = [v for v, n in counted.items() if n > 1]
        if missing:
            problems.append(f"webhook: {kind} missing for {len(missing)} changes")
        if repeated:
            warnings.append(f"webhook: {kind} arrived more than once for {len(repeated)} changes")
    none_versions = {s.version for s in samples if s.side == "none"}
    leaked = [e for e in events if e["version"] in none_versions]
    if leaked:
        problems.append(f"webhook: {len(leaked)} events of changes made with the destinations disabled")
    ids = [e["id"] for e in events]
    if len(set(ids)) != len(ids):
        warnings.append(f"webhook: {len(ids) - len(set(ids))} requests repeated an event already received")
    if any(e["webhook_id"] != e["id"] for e in events):
        problems.append("webhook: a webhook-id header that is not the event's id")
    refused = [e for e in events if e["status"] != 200 or e["problems"]]
    if refused:
        problems.append(f"webhook: {len(refused)} requests not verified/accepted: {refused[0]['problems']}")
    outbox = world.core.notifications.outbox
    hook = Counter(d.state for d in outbox.deliveries(destination="hook", limit=100_000))
    chat = Counter(d.state for d in outbox.deliveries(destination="chat", limit=100_000))
    hangs = outbox.deliveries(destination="hangs", limit=100_000)
    hang_states = Counter(d.state for d in hangs)
    attempts = [a for d in hangs if d.attempts for a in outbox.attempts(d.id)]
    timed_out = [a for a in attempts if a.status is None and a.error and "no answer within" in a.error]
    slack = worker.got["slack"]
    if hook.get("delivered", 0) != len(set(ids)) or set(hook) != {"delivered"}:
        problems.append(f"webhook deliveries {dict(hook)} against {len(set(ids))} events received")
    if not slack or any(m["status"] != 200 or m["problems"] for m in slack) or set(chat) != {"delivered"}:
        problems.append(f"slack: {len(slack)} messages, deliveries {dict(chat)}, refused "
                        f"{[m['problems'] for m in slack if m['problems']][:1]}")
    if not worker.got["hangs"] or not timed_out or hang_states.get("delivered") or not hang_states.get("pending"):
        problems.append(f"the hanging destination: {len(worker.got['hangs'])} requests received, deliveries "
                        f"{dict(hang_states)}, {len(timed_out)} attempts timed out: it did not hang as meant")
    checks = {
        "changes_on_side_three": len(versions),
        "changes_on_side_none": len(none_versions),
        "webhook_events_of_side_none": len(leaked),
        "webhook_requests": len(events),
        "webhook_repeated_arrivals": len(ids) - len(set(ids)),
        "webhook_settings_changed": sum(by_kind["settings.changed"].values()),
        "webhook_sync_applied": sum(by_kind["sync.applied"].values()),
        "webhook_other_events": len(events) - 2 * len(versions),
        "webhook_signatures_verified": sum(1 for e in events if e["status"] == 200 and not e["problems"]),
        "webhook_deliveries": dict(hook),
        "slack_messages": len(slack),
        "slack_deliveries": dict(chat),
        "hanging_requests_received": len(worker.got["hangs"]),
        "hanging_deliveries": dict(hang_states),
        "hanging_attempts_timed_out": len(timed_out),
        "hanging_attempt_ms": summary_ms([a.duration_ms for a in timed_out]),
        "file_seen_after_report": world.file_after_report,
    }
    return checks, problems, warnings


class Tally(logging.Handler):
    """Counts what apphub logged at WARNING and above (a notifier's error would show here)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counted: Counter[str] = Counter()
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.counted[f"{record.name} {record.levelname}"] += 1
        if len(self.first) < 5:
            self.first.append(f"{record.name}: {record.getMessage()[:300]}")


def machine() -> dict[str, Any]:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], capture_output=True, text=True, check=False, cwd=ROOT).stdout.strip()

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "commit": git("rev-parse", "--short", "HEAD"),
            "git_src_changes": bool(git("status", "--porcelain", "--", "src"))}


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[str], list[str]]:
    tally = Tally()
    logging.getLogger("apphub").addHandler(tally)
    problems: list[str] = []
    warnings: list[str] = []
    result: dict[str, Any] = {"checks": {}, "modes": {}, "diagnostics": {}}
    with tempfile.TemporaryDirectory(prefix="apphub-bench-notify-", dir=args.tmp) as folder:
        world: World | None = None
        worker: Worker | None = None
        try:
            world = World(Path(folder))
            secret = new_signing_secret()
            worker = Worker([world.srv], secret)
            result["checks"]["clock"] = worker.clock_check()
            if not result["checks"]["clock"]["same_clock"]:
                problems.append("the worker's clock is not this process's: the latencies cannot be compared")
            world.start(worker.urls, secret)
            gc.collect()
            gc.freeze()  # as `apphub serve` does after start-up
            counter = iter(range(1, 10**9))
            samples: list[Sample] = []
            for mode in args.modes:
                log(f"{mode}: {args.changes} changes per side in blocks of {args.block}")
                made, extra = run_mode(mode, args, world, worker, counter)
                samples += made
                worker.dump()
                result["modes"][mode] = figures(mode, samples, extra, worker, args)
            world.set_side("three")
            drain(world, worker, samples)
            hung_out(world)
            if args.idle_s > 0:
                result["diagnostics"]["idle"] = idle(world, args.idle_s)
            worker.dump()
            checks, found, warned = validate(world, worker, samples)
            result["checks"].update(checks)
            problems += found
            warnings += warned
        except Invalid as exc:
            problems.append(str(exc))
        finally:
            sender = world.core.notifications.sender if world is not None else None
            result["diagnostics"]["hang_in_flight_at_stop"] = sender is not None and "hangs" in sender._busy
            stopping = time.monotonic()
            if world is not None:  # as a server stops: a request to the hanging receiver may be in flight
                world.close()
            result["diagnostics"]["stop_s"] = round(time.monotonic() - stopping, 3)
            if worker is not None:
                worker.close()
            logging.getLogger("apphub").removeHandler(tally)
    result["diagnostics"]["apphub_warnings"] = dict(tally.counted)
    result["diagnostics"]["apphub_warnings_first"] = tally.first
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and [t for t in threading.enumerate() if t is not threading.main_thread()]:
        time.sleep(0.05)
    result["diagnostics"]["threads_left"] = sorted(t.name for t in threading.enumerate()
                                                   if t is not threading.main_thread())
    return result, problems, warnings


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker()
    began = time.monotonic()
    result, problems, warnings = run(args)
    for warning in warnings:
        log(f"warning: {warning}")
    aims = []
    for mode, found in result["modes"].items():
        aims.append({"figure": f"{mode}.propagation_ratio.p99", "value": found["propagation_ratio"]["p99"],
                     "aim": f"<= {AIM_RATIO_P99}", "met": found["propagation_ratio"]["met"]})
        webhook = found["apply_done_to_webhook_ms"]
        aims.append({"figure": f"{mode}.apply_done_to_webhook_ms.p50", "value": webhook.get("p50"),
                     "aim": f"< {AIM_WEBHOOK_P50_MS:g}", "met": webhook["met"]})
    document = {
        "benchmark": "notifications",
        "what": {"change": "IniStore.update of [bench] value, then engine.request(immediate=True), as "
                           "PUT /api/v1/settings does",
                 "sides": "three: a Standard Webhooks webhook, a Slack-shaped one and a webhook that hangs, enabled; "
                          "none: the same three disabled (nothing wanted, queued or due)",
                 "propagation": "just before the write -> the target file renamed into place holding the value "
                                "(inotify, in the worker process)",
                 "apply_done": "the sync round's report (a listener registered before the notifier's)",
                 "webhook_holds": "the webhook receiver (worker process) read the whole body of that version's event"},
        "options": {"changes": args.changes, "block": args.block, "warmup": args.warmup, "gap_ms": args.gap_ms,
                    "modes": args.modes, "idle_s": args.idle_s},
        **result,
        "summary": {"aims": aims, "all_met": bool(aims) and all(aim["met"] for aim in aims),
                    "valid": not problems, "problems": problems, "warnings": warnings},
        "machine": machine(),
        "elapsed_s": round(time.monotonic() - began, 1),
    }
    text = json.dumps(document, indent=2)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
