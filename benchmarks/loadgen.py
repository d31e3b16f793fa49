"""A small HTTP/1.1 load generator: keep-alive connections over raw asyncio streams.

Run as its own process (so that it does not share an interpreter, or a GIL, with a server):
it reads one JSON job on stdin and prints one JSON result on stdout.

A job: host, port, method, path, headers ({name: value}), body (a template where every `{seq}`
becomes a number unique within the job, so that each request can carry a different value),
concurrency (one connection per client), and either
  - duration + warmup (seconds): clients send requests back to back; the ones that complete in
    the `duration` window after the warm-up are measured, or
  - requests + warmup_requests: that many requests in total, shared by the clients.
Optional checks: expect_status (default 200), body_must_not_contain (a text that marks a failure).
`raw: true` adds every measured latency (ns) to the result, for a caller that pools several loads.

Each request is timed with perf_counter_ns from just before its bytes are written to just after
the last byte of its body is read. The client parses only the status line and Content-Length.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_MAX_ERROR_SAMPLES = 5


class _ProtocolError(Exception):
    """A response the client cannot use (no Content-Length, garbled status line)."""


@dataclass
class Job:
    host: str
    port: int
    method: str
    path: str
    headers: dict[str, str]
    body: str | None
    concurrency: int
    duration: float | None
    warmup: float
    requests: int | None
    warmup_requests: int
    expect_status: int
    body_must_not_contain: bytes | None
    raw: bool

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Job:
        bad = raw.get("body_must_not_contain")
        return cls(
            host=raw.get("host", "127.0.0.1"),
            port=int(raw["port"]),
            method=raw.get("method", "GET"),
            path=raw["path"],
            headers=dict(raw.get("headers", {})),
            body=raw.get("body"),
            concurrency=int(raw.get("concurrency", 1)),
            duration=None if raw.get("duration") is None else float(raw["duration"]),
            warmup=float(raw.get("warmup", 0.0)),
            requests=None if raw.get("requests") is None else int(raw["requests"]),
            warmup_requests=int(raw.get("warmup_requests", 0)),
            expect_status=int(raw.get("expect_status", 200)),
            body_must_not_contain=None if bad is None else bad.encode(),
            raw=bool(raw.get("raw", False)),
        )

    def request_bytes(self, seq: int) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        body = b""
        if self.body is not None:
            body = self.body.replace("{seq}", str(seq)).encode()
            lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Tally:
    """What the clients saw: latencies of measured requests (ns) and every kind of failure."""

    latencies: list[int] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    reconnects: int = 0
    first_start_ns: int | None = None  # of the measured requests
    last_done_ns: int = 0

    def fail(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < _MAX_ERROR_SAMPLES:
            self.error_samples.append(what)


class Plan:
    """Decides, for each request, whether to send it and whether it is measured."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.seq = 0
        self.started_ns = time.perf_counter_ns()
        if job.duration is not None:
            self.window_start_ns = self.started_ns + int(job.warmup * 1e9)
            self.window_end_ns = self.window_start_ns + int(job.duration * 1e9)

    def next_seq(self) -> int | None:
        """The number of the next request to send, or None when the job is done."""
        job = self.job
        if job.duration is not None:
            if time.perf_counter_ns() >= self.window_end_ns:
                return None
        elif self.seq >= job.warmup_requests + (job.requests or 0):
            return None
        self.seq += 1
        return self.seq

    def measured(self, seq: int, done_ns: int) -> bool:
        if self.job.duration is not None:
            return self.window_start_ns <= done_ns < self.window_end_ns
        return seq > self.job.warmup_requests


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(_HEAD_END)
    if not head.startswith(b"HTTP/1.1 ") or len(head) < 12:
        raise _ProtocolError(f"bad status line {head[:40]!r}")
    status = int(head[9:12])
    lowered = head.lower()
    at = lowered.find(_CONTENT_LENGTH)
    if at < 0:
        if status in (204, 304):
            return status, b"", b"\r\nconnection: close" in lowered
        raise _ProtocolError(f"status {status} without content-length")
    end = lowered.index(b"\r\n", at + 2)
    length = int(lowered[at + len(_CONTENT_LENGTH) : end])
    body = await reader.readexactly(length) if length else b""
    return status, body, b"\r\nconnection: close" in lowered


async def _client(job: Job, plan: Plan, tally: Tally) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while (seq := plan.next_seq()) is not None:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(job.host, job.port)
                except OSError as exc:  # the server is gone: this client is done, and says so
                    tally.fail(f"connect: {type(exc).__name__}: {exc}")
                    return
            assert reader is not None
            request = job.request_bytes(seq)
            started = time.perf_counter_ns()
            try:
                writer.write(request)
                status, body, closing = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, _ProtocolError, ValueError) as exc:
                tally.fail(f"{type(exc).__name__}: {exc}")
                writer.close()
                reader = writer = None
                tally.reconnects += 1
                continue
            done = time.perf_counter_ns()
            # Every response is checked, warm-up included; only those in the window are timed.
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if status != job.expect_status:
                tally.fail(f"status {status}: {body[:200].decode('utf-8', 'replace')}")
            elif job.body_must_not_contain is not None and job.body_must_not_contain in body:
                tally.fail(f"body contains {job.body_must_not_contain.decode()!r}")
            elif plan.measured(seq, done):
                tally.latencies.append(done - started)
                if tally.first_start_ns is None or started < tally.first_start_ns:
                    tally.first_start_ns = started
                tally.last_done_ns = max(tally.last_done_ns, done)
            if closing:
                writer.close()
                reader = writer = None
                tally.reconnects += 1
    finally:
        if writer is not None:
            writer.close()


def percentile(ordered: list[int], fraction: float) -> int:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return 0
    rank = max(1, -(-round(fraction * 1_000_000) * len(ordered) // 1_000_000))  # ceil, in integers
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(latencies_ns: list[int]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds."""
    ordered = sorted(latencies_ns)

    def ms(ns: float) -> float:
        return round(ns / 1e6, 3)

    return {
        "p50": ms(percentile(ordered, 0.50)),
        "p90": ms(percentile(ordered, 0.90)),
        "p99": ms(percentile(ordered, 0.99)),
        "max": ms(ordered[-1]) if ordered else 0.0,
        "mean": ms(sum(ordered) / len(ordered)) if ordered else 0.0,
    }


def summarise(job: Job, tally: Tally) -> dict[str, Any]:
    count = len(tally.latencies)
    if job.duration is not None:
        window = job.duration
    elif tally.first_start_ns is not None:
        window = (tally.last_done_ns - tally.first_start_ns) / 1e9
    else:
        window = 0.0
    return {
        "concurrency": job.concurrency,
        "requests": count,
        "seconds": round(window, 3),
        "rps": round(count / window, 1) if window > 0 else 0.0,
        "latency_ms": latency_summary(tally.latencies),
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "statuses_all": {str(status): n for status, n in sorted(tally.statuses.items())},  # warm-up included
        "reconnects": tally.reconnects,
        **({"latencies_ns": tally.latencies} if job.raw else {}),
    }


async def run(job: Job) -> dict[str, Any]:
    plan = Plan(job)
    tally = Tally()
    limit = (job.warmup + job.duration + 60) if job.duration is not None else 600.0
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.wait_for(asyncio.gather(*(_client(job, plan, tally) for _ in range(job.concurrency))), limit)
    result = summarise(job, tally)
    # Near 100 % would mean the client, not the server, sets the pace.
    result["client_cpu_pct"] = round(100 * (time.process_time() - cpu) / (time.perf_counter() - wall), 1)
    return result


def main() -> None:
    job = Job.from_json(json.loads(sys.stdin.read()))
    try:
        import uvloop
    except ImportError:
        loop_name = "asyncio"
        result = asyncio.run(run(job))
    else:
        loop_name = "uvloop"
        result = uvloop.run(run(job))
    result["client_loop"] = loop_name
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
