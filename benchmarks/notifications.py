"""Benchmark of notifications: what they cost a change, and how fast they arrive.

    .venv/bin/python benchmarks/notifications.py [--changes 120] [--block 20]

Prints one JSON document on stdout (progress goes to stderr). In one process it sets up a data
folder with one service (a JSON file in merge mode, reload strategy `none`), runs apphub's sync
engine on it (watching config.ini, as the server does) wired to the notifications as the server
wires them (`notify_of_sync`, the sender started), and three loopback receivers: a Standard
Webhooks webhook, a Slack-shaped one (answers 200 "ok") and a webhook that hangs (never answers
before the sender's 10 s timeout). Then, `--changes` times per side, in blocks of `--block`
alternating between the sides (so that the machine's noise falls on both alike):
  - side `none`: the three destinations disabled (nothing is queued);
  - side `three`: the three enabled.
This is done twice: changes 100 ms apart (`--gap-ms`; a burst still), then back to back (the next
write as soon as the last one's report came: the sends of one change overlap the next's
propagation). Each change is one write through the store (`config.update`, as the API makes it);
measured:
  1. propagation: from just before the write to the sync round's report of that version (its file
     written), per side; p50 and p99, and side `three` as a ratio to side `none` (aim: p99 at most
     1.05x);
  2. apply done -> the webhook receiver holding the whole `sync.applied` event of that version
     (the report's time from a listener registered before the notifier's; the receiver's from
     after it read the body; same process, same clock): aim p50 under 50 ms;
  3. the write returned -> the webhook receiver holding its `settings.changed` event.
Every change of side `three` must reach the webhook (by version) and the hanging receiver must
have been sent to and hung, or the run is invalid (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from apphub.api.app import notify_of_sync
from apphub.audit.log import Actor
from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.paths import DataDir
from apphub.reload.build import build_backends
from apphub.sync.apply import ApplyReport
from apphub.sync.engine import SyncEngine

SCHEMA = """\
config:
  sections:
    bench:
      description: the benchmark's service
      keys:
        value: {type: string, default: "0", apply: hot}
"""
ACTOR = Actor("benchmark", "api")
HANG_S = 30.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(fraction: float) -> float:  # nearest rank, as benchmarks/loadgen.py
        return round(ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))], 3)

    return {"n": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1], 3)}


class Receiver:
    """A loopback HTTP receiver: records when each body was read, and what it said."""

    def __init__(self, hang_s: float = 0.0) -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        self.hang_s = hang_s
        self.closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.got.append((time.monotonic(), json.loads(body)))
                if receiver.hang_s:
                    receiver.closing.wait(receiver.hang_s)
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # the sender gave up on a hanging answer

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/benchmark"

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def prepared(root: Path) -> Core:
    data = DataDir(root / "data")
    initialise(data)
    (data.schema_dir / "bench.yaml").write_text(SCHEMA, encoding="utf-8")
    srv = root / "srv"
    srv.mkdir()
    target = srv / "app.json"
    target.write_text('{"value": "0"}\n', encoding="utf-8")
    core = Core(data)
    core.system.update({"sync": {"roots": str(srv), "debounce_ms": "0", "drift_interval_s": "0"}}, ACTOR)
    core.config.update({"bench": {"value": "0"}}, ACTOR)
    (data.root / "services.yaml").write_text(
        f"services:\n  app:\n    files:\n      - path: {target}\n        format: json\n        mode: merge\n"
        "        map:\n          value: \"${bench.value}\"\n    reload: {strategy: none}\n", encoding="utf-8")
    return core


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="apphub-bench-notify-") as folder:
        core = prepared(Path(folder))
        reports: dict[str, float] = {}
        reported = threading.Condition()

        def heard(report: ApplyReport) -> None:  # before the notifier's: the moment the apply is done
            with reported:
                reports[report.version] = time.monotonic()
                reported.notify_all()

        engine = SyncEngine(core, build_backends, watch=True)
        engine.on_report.append(heard)
        notify_of_sync(core, engine)
        webhook, slack, hanging = Receiver(), Receiver(), Receiver(hang_s=HANG_S)
        try:
            engine.start()
            deadline = time.monotonic() + 20
            while engine.status.engine.syncs < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            destinations = core.notifications.destinations
            destinations.add("hook", "webhook", webhook.url, events=["settings.changed", "sync.applied"])
            destinations.add("chat", "slack", slack.url)
            destinations.add("hangs", "webhook", hanging.url)
            core.notifications.start()
            counter = iter(range(1, 10**9))
            return {f"{name}_gap_{gap:g}ms": measure(args, gap, counter, core, reports, reported, webhook, slack,
                                                      hanging)
                    for name, gap in (("spaced", args.gap_ms), ("back_to_back", 0.0))}
        finally:
            engine.stop()
            core.notifications.close()
            for receiver in (webhook, slack, hanging):
                receiver.close()
            core.close()


def measure(args: argparse.Namespace, gap_ms: float, counter: Iterator[int], core: Core, reports: dict[str, float],
            reported: threading.Condition, webhook: Receiver, slack: Receiver, hanging: Receiver) -> dict[str, Any]:
    """Both sides, changes `gap_ms` apart (after each one's report)."""
    propagation: dict[str, list[float]] = {"none": [], "three": []}
    writes: dict[str, list[float]] = {"none": [], "three": []}
    written_at: dict[str, float] = {}  # version -> when its write returned (side three)
    for block in range(2 * args.changes // args.block):
        side = "three" if block % 2 else "none"
        for name in ("hook", "chat", "hangs"):
            core.notifications.destinations.set_enabled(name, side == "three", "benchmark: side none")
        for _ in range(args.block):
            number = next(counter)
            started = time.monotonic()
            version = core.config.update({"bench": {"value": str(number)}}, ACTOR).snapshot.version
            returned = time.monotonic()
            with reported:
                if not reported.wait_for(lambda version=version: version in reports, 30):  # type: ignore[misc]
                    raise SystemExit(f"no sync report for change {number} within 30 s")
            propagation[side].append((reports[version] - started) * 1000)
            writes[side].append((returned - started) * 1000)
            time.sleep(gap_ms / 1000)
            if side == "three":
                written_at[version] = returned
        if side == "three":  # its events are matched to destinations when queued: before they are disabled
            arrived(webhook, written_at, 30)
        log(f"gap {gap_ms:g} ms, block {block + 1}: {side}, p50 {summary_ms(propagation[side])['p50']} ms so far")
    arrived(webhook, written_at, 30)
    synced, changed = arrivals(webhook, "sync.applied"), arrivals(webhook, "settings.changed")
    missing = [version for version in written_at if version not in synced or version not in changed]
    if missing or not hanging.got:
        raise SystemExit(f"invalid run: {len(missing)} events never reached the webhook; the hanging receiver got "
                         f"{len(hanging.got)} requests")
    none, three = summary_ms(propagation["none"]), summary_ms(propagation["three"])
    apply_to_receiver = summary_ms([(synced[v] - reports[v]) * 1000 for v in written_at])
    return {
        "propagation_ms": {"none": none, "three_one_hanging": three},
        "propagation_ratio": {"p50": round(three["p50"] / none["p50"], 3), "p99": round(three["p99"] / none["p99"], 3),
                              "aim_p99": 1.05, "met": three["p99"] / none["p99"] <= 1.05},
        "write_ms": {"none": summary_ms(writes["none"]), "three_one_hanging": summary_ms(writes["three"])},
        "apply_done_to_webhook_ms": {**apply_to_receiver, "aim_p50": 50, "met": apply_to_receiver["p50"] < 50},
        "write_returned_to_webhook_ms": summary_ms([(changed[v] - written_at[v]) * 1000 for v in written_at]),
        "hanging_receiver_requests_so_far": len(hanging.got),
        "slack_messages_so_far": len(slack.got),
        "webhook_events_so_far": len(webhook.got),
    }


def arrived(webhook: Receiver, versions: dict[str, float], timeout: float) -> None:
    """Wait until the webhook holds both events of every one of `versions` (or `timeout` passed)."""
    deadline = time.monotonic() + timeout
    kinds = ("sync.applied", "settings.changed")
    while time.monotonic() < deadline and not all(
            version in arrivals(webhook, kind) for kind in kinds for version in versions):
        time.sleep(0.01)


def arrivals(receiver: Receiver, kind: str) -> dict[str, float]:
    """version -> when the receiver held its first event of `kind` (a webhook's Standard Webhooks body)."""
    found: dict[str, float] = {}
    for at, body in list(receiver.got):
        if body.get("type") == kind:
            found.setdefault(body["data"]["version"], at)
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=120, help="changes per side (default 120)")
    parser.add_argument("--gap-ms", type=float, default=100.0,
                        help="pause after each change's report in the spaced run (default 100; a second run "
                             "has none: changes back to back)")
    parser.add_argument("--block", type=int, default=20, help="changes per block, sides alternating (default 20)")
    args = parser.parse_args(argv)
    figures = run(args)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).parent).stdout.strip()
    figures["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "commit": commit}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
