"""Benchmark of config propagation: config.ini saved by hand -> every affected target file written.

    .venv/bin/python benchmarks/propagation.py [--services 1,10,50,200] [--changes 200] [--debounce 0,50]

Prints one JSON document on stdout (progress goes to stderr). In one run it:
  1. for each number of services N and each debounce (system.ini [sync] debounce_ms), sets up a
     data folder whose manifest has N services, each reading one JSON file (merge mode, three mapped
     keys, reload strategy `none`, no health check: the figure is propagation, not reload), starts
     `apphub --data-dir TMP serve` as a subprocess, and saves config.ini the way an editor does
     (temporary file, then rename over config.ini), `--changes` times per series:
       - series `all`: the change sets [bench] shared, which every service reads (N files change);
       - series `one`: the change sets [bench] sNNN, which one service reads (1 file changes; any
         write to another service's file is counted and makes the run invalid).
     Latency: from just before the rename to the moment the last affected target file was renamed
     into place holding the new value, seen by inotify on the target folders from this process;
  2. the floor, in the same run: a minimal raw-inotify loop (this file with --floor-worker, its
     own subprocess) that watches the same data folder and, on each config.ini change, rewrites
     the same files with the same bytes (apphub's own output, the values cut in) the same durable
     way (temporary file, fsync, rename, folder fsync); apphub's p50/p99 as a ratio to it;
  3. save -> reload issued and save -> healthy for examples/quickstart, if that folder exists;
  4. plan time with 200 services and 5,000 keys in config.ini: Planner.plan of the services a
     one-key change affects (Planner.affected, as the engine does) versus a plan of all of them;
  5. the machine and the git commit.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import hashlib
import importlib.metadata
import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from benchmarks import api_settings, loadgen
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import api_settings  # type: ignore[no-redef, import-not-found, unused-ignore]
    import loadgen  # type: ignore[no-redef, import-not-found, unused-ignore]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AIM_P99_MS = 100.0
AIM_SERVICES = 50
AIM_DEBOUNCE_MS = 0
SECTION = "bench"
SHARED_KEY = "shared"
MARKERS = {"shared": "@@shared@@", "own": "@@own@@"}
EXTRA_PACKAGES = ("watchdog", "inotify_simple", "PyYAML", "Jinja2", "prometheus-client")

SCHEMA_YAML = """\
# The propagation benchmark's section: `shared` is read by every service, sNNN by service NNN only.
config:
  sections:
    bench:
      description: propagation benchmark
      extra_keys: true
      keys:
        shared: {type: string, apply: reload}
        region: {type: string, default: eu-west, apply: reload}
"""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", default="1,10,50,200",
                        help="comma-separated service counts (default 1,10,50,200)")
    parser.add_argument("--changes", type=int, default=200, help="measured changes per series (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured changes before each series (default 5)")
    parser.add_argument("--debounce", default="0,50",
                        help="comma-separated system.ini [sync] debounce_ms values (default 0,50; 50 is apphub's)")
    parser.add_argument("--series", default="all,one",
                        help="all: change a key every service reads; one: a key one service reads (default both)")
    parser.add_argument("--one-debounce", default="0",
                        help="debounce values at which the `one` series runs too (default 0; 'all' for every one)")
    parser.add_argument("--layout", choices=("per-service", "one-folder"), default="per-service",
                        help="target files each in a folder of its own (/srv/svcNNN/app.json, default) or all in one")
    parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                        help="run the minimal inotify loop at each N (default: yes)")
    parser.add_argument("--floor-fsync", action=argparse.BooleanOptionalAction, default=True,
                        help="the floor writes durably like apphub: fsync of the file and the folder (default: yes)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="apphub serve's log level (default info, as `apphub serve` runs by default)")
    parser.add_argument("--drift-interval", type=int, default=0,
                        help="system.ini [sync] drift_interval_s (default 0: no drift timer firing mid-series)")
    parser.add_argument("--engine-timings", action=argparse.BooleanOptionalAction, default=True,
                        help="after each change (once idle) read the engine's stage timings from /api/v1/sync/status")
    parser.add_argument("--change-timeout", type=float, default=30.0, help="seconds one change may take at most")
    parser.add_argument("--idle-window-ms", type=float, default=30.0,
                        help="between changes, wait until the server used < 1 ms CPU over debounce + this (ms)")
    parser.add_argument("--quickstart", action=argparse.BooleanOptionalAction, default=True,
                        help="measure examples/quickstart if it exists (default: yes)")
    parser.add_argument("--quickstart-changes", type=int, default=5,
                        help="restart-level changes measured on the quickstart (default 5)")
    parser.add_argument("--plan", action=argparse.BooleanOptionalAction, default=True,
                        help="time Planner.plan with many services and keys (default: yes)")
    parser.add_argument("--plan-services", type=int, default=200)
    parser.add_argument("--plan-keys", type=int, default=5000)
    parser.add_argument("--plan-sections", type=int, default=200,
                        help="config.ini sections the plan benchmark's keys are spread over (default 200)")
    parser.add_argument("--plan-repeats", type=int, default=30, help="timed one-key changes (default 30)")
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python",
                        help="interpreter of the floor")
    parser.add_argument("--apphub", type=Path, default=ROOT / ".venv" / "bin" / "apphub")
    parser.add_argument("--freeze-src", action=argparse.BooleanOptionalAction, default=True,
                        help="copy src/apphub at the start and run every apphub of the run from that copy, so that "
                             "edits of the working tree meanwhile do not mix versions (default: yes)")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (data, targets, server logs)")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON document to this file")
    parser.add_argument("--floor-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_worker is not None:
        return args
    args.services = [int(part) for part in args.services.split(",") if part.strip()]
    args.debounce = [int(part) for part in args.debounce.split(",") if part.strip()]
    args.series = [part.strip() for part in args.series.split(",") if part.strip()]
    args.one_debounce = (list(args.debounce) if args.one_debounce.strip() == "all"
                         else [int(part) for part in args.one_debounce.split(",") if part.strip()])
    if not set(args.series) <= {"all", "one"}:
        parser.error("--series takes all and/or one")
    if min([*args.services, args.changes, args.plan_services, args.plan_keys, args.plan_repeats]) < 1:
        parser.error("counts must be positive")
    if args.plan_keys < 3 * args.plan_services + 1 or args.plan_sections < 1:
        parser.error("--plan-keys must be at least 3 per service plus one; --plan-sections at least 1")
    return args


# -- inotify, raw (ctypes): the observer of the target folders, and the floor's watcher ------------

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of NUL-padded name


class Inotify:
    """One inotify instance; `read` returns the paths of the events that arrived and when they were read."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            error = ctypes.get_errno()
            raise OSError(error, f"inotify_init1: {os.strerror(error)}")
        self.fd: int = fd
        self._folders: dict[int, str] = {}
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self.overflows = 0

    def watch(self, folder: str | Path, mask: int) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(str(folder)), mask)
        if wd < 0:
            error = ctypes.get_errno()
            raise OSError(error, f"inotify_add_watch {folder}: {os.strerror(error)}")
        self._folders[wd] = str(folder)

    def read(self, timeout_s: float | None) -> tuple[list[str], int]:
        """Wait up to `timeout_s` (None: forever) for events; their paths, and perf_counter_ns when read."""
        wait_ms = None if timeout_s is None else max(0, int(timeout_s * 1000 + 0.999))
        if not self._poll.poll(wait_ms):
            return [], time.perf_counter_ns()
        try:
            data = os.read(self.fd, 1 << 17)
        except BlockingIOError:
            return [], time.perf_counter_ns()
        stamp = time.perf_counter_ns()
        paths = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            name = data[offset:offset + length].rstrip(b"\0")
            offset += length
            if mask & IN_Q_OVERFLOW:
                self.overflows += 1
                continue
            folder = self._folders.get(wd)
            if folder is not None and name:
                paths.append(os.path.join(folder, os.fsdecode(name)))
        return paths, stamp

    def close(self) -> None:
        os.close(self.fd)


# -- the floor: a minimal inotify-driven loop, in its own process ------------------------------------


def floor_worker(job_file: Path) -> int:
    """Watch the data folder; on each save of config.ini, read the [bench] lines, and rewrite the
    files whose keys changed, from templates holding apphub's bytes with the values cut out."""
    job = json.loads(job_file.read_text())
    config = job["config"]
    files = job["files"]
    durable = bool(job["fsync"])
    by_key: dict[str, list[int]] = {}
    for number, spec in enumerate(files):
        for key in spec["keys"].values():
            by_key.setdefault(key, []).append(number)

    def values() -> dict[str, str]:
        found: dict[str, str] = {}
        inside = False
        with open(config, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("["):
                    inside = line.strip() == f"[{job['section']}]"
                elif inside and "=" in line:
                    key, _, value = line.partition("=")
                    found[key.strip()] = value.strip()
        return found

    def write(spec: dict[str, Any], current: dict[str, str]) -> None:
        text: str = spec["template"]
        for marker, key in spec["keys"].items():
            text = text.replace(marker, json.dumps(current[key])[1:-1])
        path: str = spec["path"]
        folder, name = os.path.split(path)
        temporary = os.path.join(folder, f".{name}.floor-tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode())
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, path)
        if durable:
            directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    inotify = Inotify()
    inotify.watch(os.path.dirname(config), IN_MOVED_TO | IN_CLOSE_WRITE)
    previous = values()
    print("ready", flush=True)
    while True:
        paths, _ = inotify.read(None)
        if config not in paths:
            continue
        try:
            current = values()
        except OSError:
            continue
        changed = [key for key, value in current.items() if previous.get(key) != value]
        for number in sorted({number for key in changed for number in by_key.get(key, [])}):
            write(files[number], current)
        previous = current


# -- a case: one data folder, N services ------------------------------------------------------------


@dataclass
class Case:
    folder: Path
    data: Path
    services: int
    debounce_ms: int
    targets: list[Path]
    names: list[str]
    lines: list[str] = field(default_factory=list)
    line_of: dict[str, int] = field(default_factory=dict)
    trailing_newline: bool = True
    admin_key: str = ""
    config_mode: int = 0o600

    @property
    def config(self) -> Path:
        return self.data / "config.ini"

    def own_key(self, index: int) -> str:
        return f"s{index:03d}"

    def set_value(self, key: str, value: str) -> bytes:
        """config.ini with one [bench] line changed, as an editor would write it."""
        self.lines[self.line_of[key]] = f"{key} = {value}"
        return ("\n".join(self.lines) + ("\n" if self.trailing_newline else "")).encode()

    def read_lines(self) -> None:
        text = self.config.read_text(encoding="utf-8")
        self.trailing_newline = text.endswith("\n")
        self.lines = text.splitlines()
        inside = False
        for number, line in enumerate(self.lines):
            if line.startswith("["):
                inside = line.strip() == f"[{SECTION}]"
            elif inside and "=" in line:
                self.line_of[line.partition("=")[0].strip()] = number
        self.config_mode = self.config.stat().st_mode & 0o7777


def target_body(name: str, port: int) -> str:
    """A service's JSON file before apphub merges its three keys: other keys it keeps."""
    return json.dumps({
        "name": name,
        "listen": {"host": "127.0.0.1", "port": port},
        "settings": {"shared": "", "own": "", "region": "", "log_level": "info", "workers": 4},
        "features": ["metrics", "audit"],
    }, indent=2) + "\n"


def prepare_case(args: argparse.Namespace, folder: Path, services: int, debounce_ms: int) -> Case:
    """Data folder, schema, system.ini [sync], the [bench] section of config.ini, manifest, target files."""
    from apphub.audit.log import Actor
    from apphub.core import Core
    from apphub.paths import DataDir

    data = folder / "data"
    srv = folder / "srv"
    subprocess.run([str(args.apphub), "--data-dir", str(data), "init"], check=True, capture_output=True)
    (data / "schema.d" / "bench.yaml").write_text(SCHEMA_YAML)
    names = [f"svc{index:03d}" for index in range(services)]
    if args.layout == "per-service":
        targets = [srv / name / "app.json" for name in names]
    else:
        targets = [srv / f"{name}.json" for name in names]
    for index, (name, target) in enumerate(zip(names, targets, strict=True)):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(target_body(name, 8000 + index))
    manifest = ["services:"]
    for index, (name, target) in enumerate(zip(names, targets, strict=True)):
        manifest += [
            f"  {name}:",
            "    files:",
            f"      - path: {target}",
            "        format: json",
            "        mode: merge",
            "        map:",
            f'          settings.shared: "${{{SECTION}.{SHARED_KEY}}}"',
            f'          settings.own: "${{{SECTION}.s{index:03d}}}"',
            f'          settings.region: "${{{SECTION}.region}}"',
            "    reload: {strategy: none}",
        ]
    (data / "services.yaml").write_text("\n".join(manifest) + "\n")
    core = Core(DataDir(data))
    try:
        actor = Actor("benchmark", "cli")
        core.system.update({"sync": {"roots": str(srv), "debounce_ms": str(debounce_ms),
                                     "drift_interval_s": str(args.drift_interval)}}, actor)
        bench = {SHARED_KEY: "init", "region": "eu-west"}
        bench.update({f"s{index:03d}": f"own-{index:03d}-0" for index in range(services)})
        core.config.update({SECTION: bench}, actor)
    finally:
        core.close()
    case = Case(folder, data, services, debounce_ms, targets, names)
    case.read_lines()
    case.admin_key = (data / ".apphub" / "admin.key").read_text().strip()
    return case


def editor_save(config: Path, data: bytes, mode: int) -> int:
    """Save config.ini as an editor does: a temporary file, written and flushed, renamed over it.
    Returns perf_counter_ns taken just before the rename."""
    temporary = config.with_name(".config.ini.bench-save")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
        # mtime = now, just before the rename (apphub's `detect` timing once started at the mtime)
        os.utime(fd)
    finally:
        os.close(fd)
    started = time.perf_counter_ns()
    os.rename(temporary, config)
    return started


# -- processes --------------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    log_file: Path
    port: int | None = None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")


def stop(process: Process) -> None:
    if process.process.poll() is None:
        process.process.send_signal(signal.SIGTERM)
        try:
            process.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.process.kill()
            process.process.wait()


@contextlib.contextmanager
def running(process: Process) -> Iterator[Process]:
    try:
        yield process
    finally:
        stop(process)


def cpu_clock(pid: int) -> float | None:
    """The CPU time (s, all threads) of another process, in ns resolution: its CPU-time clock
    (clock_getcpuclockid: ((~pid) << 3) | CPUCLOCK_SCHED)."""
    with contextlib.suppress(OSError):
        return time.clock_gettime(((~pid) << 3) | 2)
    return None


@dataclass
class CpuMark:
    """CPU counters at one moment: the machine's (/proc/stat), the measured server's (user and system
    ticks from /proc/PID/stat), and this process's own."""

    wall: float
    machine: list[int]
    server: tuple[int, int] | None
    own: float

    @classmethod
    def take(cls, pid: int) -> CpuMark:
        server = None
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            server = (int(fields[11]), int(fields[12]))
        return cls(time.monotonic(), api_settings.cpu_times(), server, time.process_time())

    def since(self, before: CpuMark, changes: int) -> dict[str, Any]:
        """Per change: the server's user and system CPU; over the series: how busy the machine was
        with everything else (other processes and kernel threads, e.g. the file system's journal)."""
        tick = os.sysconf("SC_CLK_TCK")
        found: dict[str, Any] = {}
        server_s = 0.0
        if self.server is not None and before.server is not None:
            user, system = ((self.server[n] - before.server[n]) / tick for n in (0, 1))
            server_s = user + system
            found["server_cpu_user_ms_per_change"] = round(user * 1000 / changes, 2)
            found["server_cpu_system_ms_per_change"] = round(system * 1000 / changes, 2)
        if len(self.machine) > 7 and len(before.machine) > 7:
            delta = [b - a for a, b in zip(before.machine, self.machine, strict=True)]
            total = sum(delta[:8])
            busy = total - delta[3] - delta[4]  # all but idle and iowait
            cpus = len(os.sched_getaffinity(0))
            wall = max(self.wall - before.wall, 1e-9)
            others = busy / tick - server_s - (self.own - before.own)
            found["machine_busy_pct"] = round(100 * busy / total, 1) if total else None
            found["others_cpu_pct_of_machine"] = round(100 * max(0.0, others) / (wall * cpus), 1)
            found["cpu_steal_pct"] = round(100 * delta[7] / total, 1) if total else None
        found["load_average_at_end"] = round(os.getloadavg()[0], 2)
        return found


def http_json(url: str, key: str, timeout: float = 10.0) -> Any:
    request = urllib.request.Request(url, headers={"x-api-key": key})  # noqa: S310 - loopback URL built here
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, process: Process | None = None,
             interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None:
            process.alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}"
                               + (f":\n{process.tail()}" if process is not None else ""))
        time.sleep(interval)


def holds(path: Path, token: bytes) -> bool:
    try:
        return token in path.read_bytes()
    except OSError:
        return False


# -- measuring ------------------------------------------------------------------------------------


@dataclass
class Observer:
    """inotify on every target folder, from the benchmark process: IN_MOVED_TO is the moment a file
    renamed into place is there with its new bytes (apphub and the floor both write by rename)."""

    targets: list[Path]
    inotify: Inotify = field(init=False)

    def __post_init__(self) -> None:
        self.inotify = Inotify()
        for folder in sorted({str(path.parent) for path in self.targets}):
            self.inotify.watch(folder, IN_MOVED_TO)
        self.index = {str(path): number for number, path in enumerate(self.targets)}

    def drain(self, writes: Counter[int]) -> None:
        while True:
            paths, _ = self.inotify.read(0)
            if not paths:
                return
            self._count(paths, writes)

    def _count(self, paths: list[str], writes: Counter[int]) -> list[int]:
        found = []
        for path in paths:
            number = self.index.get(path)
            if number is not None:
                writes[number] += 1
                found.append(number)
        return found

    def await_files(self, expected: list[int], token: bytes, started: int, timeout: float,
                    writes: Counter[int]) -> int | None:
        """Wait until every expected file was renamed into place and holds `token`; the latency (ns)
        to the read of the event that completed the set, or None on timeout."""
        pending = set(expected)
        landed: set[int] = set()
        deadline = started + int(timeout * 1e9)
        while True:
            now = time.perf_counter_ns()
            if now >= deadline:
                return None
            paths, stamp = self.inotify.read((deadline - now) / 1e9)
            for number in self._count(paths, writes):
                if number in pending:
                    pending.discard(number)
                    landed.add(number)
            if pending:
                continue
            wrong = {number for number in landed if not holds(self.targets[number], token)}
            if not wrong:
                return stamp - started
            pending |= wrong  # an earlier write landed late; wait for the right one
            landed -= wrong

    def close(self) -> None:
        self.inotify.close()


def wait_idle(pid: int, window_s: float, observer: Observer, writes: Counter[int], limit_s: float = 30.0) -> float:
    """Wait until process `pid` used under 1 ms of CPU over `window_s` (the rounds a change causes
    are over), counting target writes meanwhile. Returns the seconds waited."""
    began = time.monotonic()
    samples: list[tuple[float, float]] = []
    while True:
        now = time.monotonic()
        clock = cpu_clock(pid)
        if clock is None:
            return now - began
        samples.append((now, clock))
        while len(samples) > 1 and samples[1][0] <= now - window_s:
            samples.pop(0)
        if now - samples[0][0] >= window_s and clock - samples[0][1] < 0.001:
            return now - began
        if now - began > limit_s:
            log(f"  warning: process {pid} still busy after {limit_s:g} s")
            return now - began
        observer.drain(writes)
        time.sleep(0.005)


def summarise_ms(latencies_ns: list[int]) -> dict[str, float]:
    ordered = sorted(latencies_ns)

    def ms(ns: float) -> float:
        return round(ns / 1e6, 3)

    if not ordered:
        return {}
    return {
        "p50": ms(loadgen.percentile(ordered, 0.50)),
        "p95": ms(loadgen.percentile(ordered, 0.95)),
        "p99": ms(loadgen.percentile(ordered, 0.99)),
        "min": ms(ordered[0]),
        "max": ms(ordered[-1]),
        "mean": ms(sum(ordered) / len(ordered)),
    }


def stage_summary(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    stages = sorted({stage for sample in samples for stage in sample})
    found = {}
    for stage in stages:
        values = sorted(sample[stage] for sample in samples if stage in sample)
        found[stage] = {"p50": round(statistics.median(values), 3), "p99": round(values[max(0, -(-99 * len(values)
                                                                                                  // 100) - 1)], 3),
                        "mean": round(sum(values) / len(values), 3), "n": len(values)}
    return found


@dataclass
class Target:
    """What is being measured: apphub serve or the floor, with how to see its state."""

    process: Process
    debounce_ms: int
    status_url: str | None = None
    admin_key: str = ""


def run_series(args: argparse.Namespace, case: Case, target: Target, observer: Observer, series: str,
               tag: str) -> dict[str, Any]:
    """`--warmup` + `--changes` saves of config.ini, one at a time, each after the last was fully processed."""
    latencies: list[int] = []
    timeouts = 0
    other_writes = 0
    duplicate_writes = 0
    idle_waits: list[float] = []
    stages: list[dict[str, float]] = []
    syncs_before = syncs_after = None
    own_cpu_ns = 0
    window = (target.debounce_ms + args.idle_window_ms) / 1000
    if target.status_url is not None:
        syncs_before = http_json(target.status_url, target.admin_key)["engine"]["syncs"]
    pid = target.process.process.pid
    total = args.warmup + args.changes
    mark: CpuMark | None = None
    for seq in range(total):
        measured = seq >= args.warmup
        if seq == args.warmup:
            mark = CpuMark.take(pid)
        if series == "all":
            key, expected = SHARED_KEY, list(range(case.services))
            value = f"all-{tag}-{seq:05d}"
        else:
            index = seq % case.services
            key, expected = case.own_key(index), [index]
            value = f"one-{tag}-{seq:05d}"
        data = case.set_value(key, value)
        writes: Counter[int] = Counter()
        cpu_start = time.process_time_ns()
        started = editor_save(case.config, data, case.config_mode)
        latency = observer.await_files(expected, json.dumps(value).encode(), started, args.change_timeout, writes)
        own_cpu_ns += time.process_time_ns() - cpu_start if measured else 0
        if latency is None:
            target.process.alive()
            log(f"  change {seq} ({key}={value}) timed out after {args.change_timeout:g} s")
        idle_waits.append(wait_idle(pid, window, observer, writes))
        if not measured:
            continue
        if latency is None:
            timeouts += 1
        else:
            latencies.append(latency)
        wanted = set(expected)
        other_writes += sum(count for number, count in writes.items() if number not in wanted)
        duplicate_writes += sum(count - 1 for number, count in writes.items() if number in wanted and count > 1)
        if args.engine_timings and target.status_url is not None:
            status = http_json(target.status_url, target.admin_key)
            name = case.names[expected[0]]
            service = next((s for s in status["services"] if s["service"] == name), None)
            if service is not None and service.get("timings_ms"):
                stages.append(service["timings_ms"])
        if (seq - args.warmup + 1) % 50 == 0:
            so_far = summarise_ms(latencies)
            log(f"    {seq - args.warmup + 1}/{args.changes}: p50 {so_far.get('p50')} ms, p99 {so_far.get('p99')} ms")
    cpu = CpuMark.take(pid).since(mark, args.changes) if mark is not None else {}
    if target.status_url is not None:
        syncs_after = http_json(target.status_url, target.admin_key)["engine"]["syncs"]
    result: dict[str, Any] = {
        "changes": args.changes,
        "files_per_change": len(case.targets) if series == "all" else 1,
        "latency_ms": summarise_ms(latencies),
        "timeouts": timeouts,
        "other_services_files_written": other_writes,
        "repeated_writes_of_a_file": duplicate_writes,
        "idle_wait_ms_p50": round(statistics.median(idle_waits) * 1000, 1) if idle_waits else None,
        "observer_cpu_ms_per_change": round(own_cpu_ns / 1e6 / args.changes, 3),
    }
    result.update(cpu)
    if syncs_before is not None and syncs_after is not None:
        # rounds the engine ran per save, warm-up included: above 1.0, some saves caused a second round
        result["engine_rounds_per_change"] = round((syncs_after - syncs_before) / total, 2)
    if stages:
        result["engine_stage_ms"] = stage_summary(stages)
    return result


def log_latency(figures: dict[str, Any]) -> None:
    latency = figures["latency_ms"]
    log(f"    => p50 {latency.get('p50')} ms, p95 {latency.get('p95')} ms, p99 {latency.get('p99')} ms")


def start_apphub(args: argparse.Namespace, case: Case) -> Process:
    port = api_settings.free_port()
    log_file = case.folder / "apphub.log"
    with log_file.open("wb") as sink:
        process = subprocess.Popen(
            [str(args.apphub), "--data-dir", str(case.data), "serve", "--port", str(port), "--log-level",
             args.log_level], stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
    return Process("apphub serve", process, log_file, port)


def bench_apphub(args: argparse.Namespace, case: Case) -> dict[str, Any]:
    server = start_apphub(args, case)
    with running(server):
        status_url = f"http://127.0.0.1:{server.port}/api/v1/sync/status"

        def first_sync_done() -> bool:
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                status = http_json(status_url, case.admin_key, timeout=2)
                return bool(status["engine"]["syncs"]) and all(holds(t, b'"init"') for t in case.targets)
            return False

        wait_for(first_sync_done, 120, "apphub's first sync of every service", server, interval=0.1)
        target = Target(server, case.debounce_ms, status_url, case.admin_key)
        observer = Observer(case.targets)
        try:
            wait_idle(server.process.pid, (case.debounce_ms + args.idle_window_ms) / 1000, observer, Counter())
            result: dict[str, Any] = {}
            for series in args.series:
                if series == "one" and (case.debounce_ms not in args.one_debounce or case.services == 1):
                    continue
                log(f"  apphub, {case.services} service(s), debounce {case.debounce_ms} ms, series `{series}`: "
                    f"{args.warmup} warm-up + {args.changes} saves")
                result[series] = run_series(args, case, target, observer, series, f"a{case.debounce_ms}")
                log_latency(result[series])
        finally:
            observer.close()
        status = http_json(status_url, case.admin_key)
        failed = [s["service"] for s in status["services"] if s["state"] not in ("applied", "unknown")]
        result["services_not_applied_at_end"] = failed
        result["config_error_at_end"] = status["engine"]["config_error"]
    if server.process.returncode not in (0, -signal.SIGTERM, None):
        log(f"apphub exited with {server.process.returncode}:\n{server.tail()}")
    return result


def floor_templates(case: Case) -> list[dict[str, Any]]:
    """apphub's own bytes of each file with the two varying values cut out, so that the floor writes
    exactly what apphub writes."""
    values = {key: case.lines[number].partition("=")[2].strip() for key, number in case.line_of.items()}
    files = []
    for index, path in enumerate(case.targets):
        text = path.read_text()
        keys = {MARKERS["shared"]: SHARED_KEY, MARKERS["own"]: case.own_key(index)}
        for marker, key in keys.items():
            quoted = json.dumps(values[key])
            if text.count(quoted) != 1:
                raise RuntimeError(f"{path}: cannot cut {quoted} out of apphub's render:\n{text}")
            text = text.replace(quoted, json.dumps(marker))
        files.append({"path": str(path), "template": text, "keys": keys})
    return files


def bench_floor(args: argparse.Namespace, case: Case) -> dict[str, Any]:
    job = case.folder / "floor-job.json"
    job.write_text(json.dumps({"config": str(case.config), "section": SECTION, "fsync": args.floor_fsync,
                               "files": floor_templates(case)}))
    log_file = case.folder / "floor.log"
    with log_file.open("wb") as sink:
        process = subprocess.Popen([str(args.python), str(Path(__file__).resolve()), "--floor-worker", str(job)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=sink)
    floor = Process("floor", process, log_file)
    with running(floor):
        assert process.stdout is not None
        ready = process.stdout.readline()
        if ready.strip() != b"ready":
            floor.alive()
            raise RuntimeError(f"the floor did not start: {ready!r}\n{floor.tail()}")
        target = Target(floor, 0)
        observer = Observer(case.targets)
        try:
            result: dict[str, Any] = {}
            for series in args.series:
                if series == "one" and case.services == 1:
                    continue  # with one service, `one` is the same change as `all`
                log(f"  floor, {case.services} file(s), series `{series}`: "
                    f"{args.warmup} warm-up + {args.changes} saves")
                result[series] = run_series(args, case, target, observer, series, "f")
                log_latency(result[series])
        finally:
            observer.close()
    return result


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 2) if numerator and denominator else None


def bench_propagation(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for services in args.services:
        row: dict[str, Any] = {}
        last_case: Case | None = None
        for debounce in args.debounce:
            case_folder = folder / f"n{services}-d{debounce}"
            case_folder.mkdir()
            log(f"setting up {services} service(s), debounce {debounce} ms in {case_folder}")
            case = prepare_case(args, case_folder, services, debounce)
            row[f"apphub_debounce_{debounce}"] = bench_apphub(args, case)
            if last_case is not None and not args.keep:
                shutil.rmtree(last_case.folder, ignore_errors=True)
            last_case = case
        if args.floor and last_case is not None:
            last_case.read_lines()
            row["floor"] = bench_floor(args, last_case)
            for debounce in args.debounce:
                apphub = row[f"apphub_debounce_{debounce}"]
                for series in args.series:
                    if series not in apphub or series not in row["floor"]:
                        continue
                    ours, floor = apphub[series]["latency_ms"], row["floor"][series]["latency_ms"]
                    row.setdefault("ratio_to_floor", {})[f"debounce_{debounce}_{series}"] = {
                        "p50": ratio(ours.get("p50"), floor.get("p50")),
                        "p99": ratio(ours.get("p99"), floor.get("p99")),
                    }
        if last_case is not None and not args.keep:
            shutil.rmtree(last_case.folder, ignore_errors=True)
        results[str(services)] = row
    return results


# -- quickstart -----------------------------------------------------------------------------------


def quickstart_health(port: int) -> tuple[int, dict[str, Any]]:
    """hello-json's GET /health: (status, body); (0, {}) when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(ValueError):
            return exc.code, json.loads(exc.read())
        return exc.code, {}
    except (urllib.error.URLError, OSError, ValueError):
        return 0, {}


def stop_supervisord(conf: Path) -> None:
    """`supervisorctl shutdown` (what the quickstart's README says), then wait for supervisord to exit:
    it stops its programs first."""
    try:
        pid = int((conf.parent / "supervisord.pid").read_text().strip())
    except (OSError, ValueError):
        pid = None
    subprocess.run(["supervisorctl", "-c", str(conf), "shutdown"], capture_output=True, timeout=30, check=False)
    deadline = time.monotonic() + 20
    while pid is not None and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    if pid is not None:
        log(f"warning: supervisord (pid {pid}) still runs 20 s after `supervisorctl shutdown`")


def bench_quickstart(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """examples/quickstart as its README runs it (start.sh DATA, then apphub serve), and a
    restart-level key of hello-json (`greeting`) changed by saving config.ini like an editor."""
    example = ROOT / "examples" / "quickstart"
    if not (example / "start.sh").is_file():
        return {"skipped": "examples/quickstart missing"}
    data = folder / "d"
    json_port, ini_port = api_settings.free_port(), api_settings.free_port()
    environment = {**os.environ, "QUICKSTART_JSON_PORT": str(json_port), "QUICKSTART_INI_PORT": str(ini_port),
                   "APPHUB": str(args.apphub), "PYTHON": str(args.python)}
    log(f"quickstart: examples/quickstart/start.sh {data} (hello-json on {json_port}, hello-ini on {ini_port})")
    started = subprocess.run(["bash", str(example / "start.sh"), str(data)], env=environment, capture_output=True,
                             text=True, timeout=120, check=False)
    supervisor_conf = data / "supervisor" / "supervisord.conf"
    if started.returncode != 0:
        return {"skipped": f"examples/quickstart/start.sh failed ({started.returncode}): {started.stderr[-800:]}"}
    demo = Path(os.path.realpath(f"{data}-quickstart"))
    target = demo / "hello-json" / "config.json"
    key = (data / ".apphub" / "admin.key").read_text().strip()
    case = Case(folder, data, 1, 50, [target], ["hello-json"])
    server = start_apphub(args, case)
    try:
        with running(server):
            status_url = f"http://127.0.0.1:{server.port}/api/v1/sync/status"

            def applied(version: str | None) -> bool:
                with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                    status = http_json(status_url, key, timeout=2)
                    services = {s["service"]: s for s in status["services"]}
                    wanted = version or status["engine"]["config_version"]
                    return bool(wanted) and all(services.get(name, {}).get("applied_version") == wanted
                                                and services[name]["state"] == "applied"
                                                for name in ("hello-json", "hello-ini"))
                return False

            wait_for(lambda: applied(None) and quickstart_health(json_port)[0] == 200, 120,
                     "the quickstart's first sync and healthy services", server, interval=0.1)
            found = re.search(r"^debounce_ms\s*=\s*(\d+)", (data / "system.ini").read_text(), re.MULTILINE)
            debounce = int(found.group(1)) if found else None
            samples: list[dict[str, Any]] = []
            text = (data / "config.ini").read_text()
            line = re.compile(r"^greeting = .*$", re.MULTILINE)
            section = text.index("[hello_json]")
            observer = Observer([target])
            try:
                for number in range(args.quickstart_changes):
                    greeting = f"Hello from the benchmark {number} {secrets.token_hex(2)}"
                    before, after = text[:section], text[section:]
                    if not line.search(after):
                        raise RuntimeError("config.ini has no [hello_json] greeting line")
                    text = before + line.sub(f"greeting = {greeting}", after, count=1)
                    encoded = text.encode()
                    version = hashlib.sha256(encoded).hexdigest()[:32]
                    _, health = quickstart_health(json_port)
                    old_pid = int(health["pid"])
                    pidfd = os.pidfd_open(old_pid)
                    waiter = select.poll()
                    waiter.register(pidfd, select.POLLIN)
                    marks: dict[str, int] = {}
                    t0 = editor_save(data / "config.ini", encoded, (data / "config.ini").stat().st_mode & 0o7777)
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline and "gate_passed" not in marks:
                        now = time.perf_counter_ns()
                        if "file_written" not in marks:
                            paths, stamp = observer.inotify.read(0)
                            if str(target) in paths and holds(target, json.dumps(greeting).encode()):
                                marks["file_written"] = stamp - t0
                        if "old_process_ended" not in marks and waiter.poll(0):
                            marks["old_process_ended"] = time.perf_counter_ns() - t0
                        if "old_process_ended" in marks and "healthy" not in marks:
                            code, body = quickstart_health(json_port)
                            if code == 200 and body.get("settings", {}).get("greeting") == greeting:
                                marks["healthy"] = time.perf_counter_ns() - t0
                                marks["new_pid"] = int(body["pid"])
                        if "healthy" in marks and applied(version):
                            marks["gate_passed"] = time.perf_counter_ns() - t0
                        time.sleep(max(0.0, 0.005 - (time.perf_counter_ns() - now) / 1e9))
                    os.close(pidfd)
                    status = http_json(status_url, key)
                    service = next(s for s in status["services"] if s["service"] == "hello-json")
                    sample = {name: round(value / 1e6, 1) for name, value in marks.items() if name != "new_pid"}
                    sample["new_pid_differs"] = marks.get("new_pid", old_pid) != old_pid
                    sample["action"] = service.get("last_action")
                    sample["engine_timings_ms"] = service.get("timings_ms")
                    samples.append(sample)
                    log(f"  quickstart change {number + 1}/{args.quickstart_changes}: {sample}")
            finally:
                observer.close()
    finally:
        stop_supervisord(supervisor_conf)
    summary: dict[str, Any] = {}
    for mark in ("file_written", "old_process_ended", "healthy", "gate_passed"):
        values = sorted(sample[mark] for sample in samples if mark in sample)
        if values:
            summary[mark] = {"p50": round(statistics.median(values), 1), "max": values[-1], "n": len(values)}
    reload_ms = sorted(sample["engine_timings_ms"]["reload"] for sample in samples
                       if (sample.get("engine_timings_ms") or {}).get("reload") is not None)
    return {
        "service": "hello-json", "key": "[hello_json] greeting (apply: restart -> supervisor-restart)",
        "changes": len(samples), "system_ini_debounce_ms": debounce,
        "save_to_ms": summary,
        "engine_reload_call_ms_p50": round(statistics.median(reload_ms), 1) if reload_ms else None,
        "restarted_every_time": all(sample["new_pid_differs"] for sample in samples),
        "samples": samples,
    }


# -- plan time ------------------------------------------------------------------------------------


def bench_plan(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Planner.plan in-process, the engine's way: the services a one-key change affects (found with
    Planner.affected), versus all of them; and what the engine does around it for each version
    (parse config.ini, validate it, changed_keys)."""
    from apphub.core import Core
    from apphub.paths import DataDir
    from apphub.store.check import file_problems
    from apphub.store.snapshot import changed_keys
    from apphub.sync.manifest import load_manifest
    from apphub.sync.plan import Planner

    services, keys, sections = args.plan_services, args.plan_keys, min(args.plan_sections, args.plan_keys - 1)
    data, srv = folder / "data", folder / "srv"
    log(f"plan time: {services} services, {keys} keys in config.ini ({sections} section(s) of them)")
    subprocess.run([str(args.apphub), "--data-dir", str(data), "init"], check=True, capture_output=True)
    # [common] shared (every service reads it), then keys-1 keys spread over sections p000...: service i
    # reads three keys of section i % sections, at key offset 3 * (i // sections) in it.
    (data / "schema.d" / "plan.yaml").write_text(
        "# the plan-time benchmark's sections: any key\nconfig:\n  extra_sections: true\n")
    counts = [(keys - 1) // sections + (1 if number < (keys - 1) % sections else 0) for number in range(sections)]
    reads = [(f"p{index % sections:03d}", [f"k{3 * (index // sections) + offset:04d}" for offset in range(3)])
             for index in range(services)]
    if any(int(key[1:]) >= counts[int(section[1:])] for section, names in reads for key in names):
        raise SystemExit("--plan-keys is too small for three keys per service in --plan-sections sections")
    lines = (data / "config.ini").read_text().splitlines()
    lines += ["", "[common]", "shared = s0"]
    line_of: dict[tuple[str, str], int] = {}
    for number, count in enumerate(counts):
        lines += ["", f"[p{number:03d}]"]
        for key in range(count):
            line_of[(f"p{number:03d}", f"k{key:04d}")] = len(lines)
            lines.append(f"k{key:04d} = value-{number}-{key}")
    manifest = ["services:"]
    for index, (section, names) in enumerate(reads):
        name = f"svc{index:03d}"
        path = srv / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(target_body(name, 8000 + index))
        manifest += [f"  {name}:", "    files:", f"      - path: {path}", "        mode: merge", "        map:",
                     '          settings.shared: "${common.shared}"',
                     *(f'          settings.{key}: "${{{section}.{key}}}"' for key in names),
                     "    reload: {strategy: none}"]
    (data / "services.yaml").write_text("\n".join(manifest) + "\n")

    def save() -> None:  # by hand: IniStore.update of thousands of keys at once takes minutes (see README)
        temporary = data / ".config.ini.bench-save"
        temporary.write_text("\n".join(lines) + "\n")
        os.rename(temporary, data / "config.ini")

    save()
    victim = services // 2
    section, key = reads[victim][0], reads[victim][1][0]
    timings: dict[str, list[int]] = {name: [] for name in (
        "snapshot_parse", "validate", "changed_keys", "affected", "plan_affected", "plan_all")}
    problems: list[str] = []
    core = Core(DataDir(data))
    try:
        manifest_model = load_manifest(data / "services.yaml", [str(srv)], data)
        planner = Planner(manifest_model, data / manifest_model.templates, {})
        previous = core.config.snapshot()
        found = file_problems(previous.document, previous.schema, core.box, "config.ini", plaintext_secrets=False)
        if found:
            raise RuntimeError(f"the plan benchmark's config.ini does not validate: {found[:3]}")
        started = time.perf_counter_ns()
        first = planner.plan(previous)
        first_ms = (time.perf_counter_ns() - started) / 1e6
        for service in first.services.values():  # the files as an apply would leave them
            for file in service.files:
                Path(file.spec.path).write_bytes(file.after)
        for repeat in range(args.plan_repeats):
            lines[line_of[(section, key)]] = f"{key} = changed-{repeat}"
            save()

            def lap(name: str, began: int) -> int:
                timings[name].append(time.perf_counter_ns() - began)
                return time.perf_counter_ns()

            clock = time.perf_counter_ns()
            snapshot = core.config.snapshot()
            clock = lap("snapshot_parse", clock)
            found = file_problems(snapshot.document, snapshot.schema, core.box, "config.ini", plaintext_secrets=False)
            clock = lap("validate", clock)
            changed = changed_keys(previous, snapshot)
            clock = lap("changed_keys", clock)
            affected = planner.affected(changed)
            clock = lap("affected", clock)
            one = planner.plan(snapshot, previous=previous, services=affected, changed=changed)
            clock = lap("plan_affected", clock)
            everything = planner.plan(snapshot, previous=previous)
            lap("plan_all", clock)
            if found:
                problems.append(f"config.ini has problems: {found[:3]}")
            if changed != {(section, key)} or affected != [f"svc{victim:03d}"]:
                problems.append(f"repeat {repeat}: changed {changed}, affected {affected}")
            if [s.name for s in one.changed()] != [f"svc{victim:03d}"] or len(everything.changed()) != 1:
                problems.append(f"repeat {repeat}: the plans disagree on what changed")
            for service in one.changed():  # apply it, so that the next change starts from a synced disk
                for file in service.files:
                    Path(file.spec.path).write_bytes(file.after)
            previous = snapshot
    finally:
        core.close()
    summary = {name: summarise_ms(values) for name, values in timings.items()}
    return {
        "services": services,
        "keys_in_config_ini": sum(len(list(previous.document.items(s))) for s in previous.sections()),
        "benchmark_keys": keys,
        "benchmark_sections": sections + 1,
        "keys_read_per_service": 4,
        "config_ini_bytes": len(("\n".join(lines) + "\n").encode()),
        "repeats": args.plan_repeats,
        "change": f"[{section}] {key}, read by svc{victim:03d} only",
        "first_full_plan_ms": round(first_ms, 3),
        "ms": summary,
        "plan_all_over_plan_affected_p50": ratio(summary["plan_all"].get("p50"), summary["plan_affected"].get("p50")),
        "problems": problems[:5],
    }


# -- the run ----------------------------------------------------------------------------------------


def source_digest() -> str:
    """sha256 of src/apphub's Python files: the code each `apphub serve` of the run imported (the
    working tree, which the commit alone does not tell when it has changes)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "apphub").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def machine(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    found = api_settings.machine(args.python, folder)
    found["src_sha256_16"] = source_digest()
    found.pop("wrk", None)
    for name in EXTRA_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found["packages"][name] = importlib.metadata.version(name)
    return found


def freeze_source(args: argparse.Namespace, folder: Path) -> None:
    """Copy src/apphub into the temporary folder; `args.apphub` becomes a wrapper that runs the CLI
    from the copy, and this process imports the copy too."""
    source = folder / "src"
    shutil.copytree(ROOT / "src" / "apphub", source / "apphub", ignore=shutil.ignore_patterns("__pycache__"))
    wrapper = folder / "bin" / "apphub"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(source))} exec {shlex.quote(str(args.python))} -c "
                       "'import sys; from apphub.cli.main import main; sys.exit(main())' \"$@\"\n")
    wrapper.chmod(0o755)
    args.apphub = wrapper
    sys.path.insert(0, str(source))


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="apphub-propagation-", dir=args.tmp))
    started = time.monotonic()
    result: dict[str, Any] = {"benchmark": "apphub config propagation"}
    try:
        result["machine"] = machine(args, folder)
        if args.freeze_src:
            freeze_source(args, folder)
        result["settings"] = {
            "services": args.services, "changes_per_series": args.changes, "warmup_per_series": args.warmup,
            "debounce_ms": args.debounce, "series": args.series, "one_series_at_debounce_ms": args.one_debounce,
            "layout": args.layout, "floor_fsync": args.floor_fsync, "apphub_log_level": args.log_level,
            "drift_interval_s": args.drift_interval, "idle_window_ms": args.idle_window_ms,
            "apphub_command": f"apphub --data-dir TMP serve --port P --log-level {args.log_level}",
            "apphub_from": "a copy of src/apphub taken at the start" if args.freeze_src else "the working tree",
            "floor_command": "python benchmarks/propagation.py --floor-worker JOB",
        }
        result["propagation"] = bench_propagation(args, folder)
        if args.quickstart:
            result["quickstart"] = bench_quickstart(args, folder)
        if args.plan:
            plan_folder = folder / "plan"
            plan_folder.mkdir()
            result["plan"] = bench_plan(args, plan_folder)
    finally:
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["machine"]["src_changed_during_run"] = source_digest() != result["machine"]["src_sha256_16"]
    result["machine"]["load_average_at_end"] = [round(n, 2) for n in os.getloadavg()]
    result["summary"] = summarise(args, result)
    return result


def summarise(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    problems: list[str] = []
    warnings: list[str] = []
    if result["machine"].get("src_changed_during_run") and not args.freeze_src:
        warnings.append("src/apphub changed during the run: later cases ran newer code")
    table: dict[str, Any] = {}
    for services, row in result["propagation"].items():
        line: dict[str, Any] = {}
        for name, figures in row.items():
            if not name.startswith(("apphub_", "floor")):
                continue
            for series in ("all", "one"):
                if series not in figures:
                    continue
                busy = figures[series].get("others_cpu_pct_of_machine") or 0.0
                if busy > 10:
                    warnings.append(f"{services} services, {name}, {series}: other processes used {busy} % "
                                    "of the machine's CPU meanwhile")
                latency = figures[series]["latency_ms"]
                line[f"{name}_{series}"] = {"p50": latency.get("p50"), "p95": latency.get("p95"),
                                            "p99": latency.get("p99")}
                if figures[series]["timeouts"]:
                    problems.append(f"{services} services, {name}, {series}: {figures[series]['timeouts']} timeouts")
                others = figures[series]["other_services_files_written"]
                if series == "one" and others:
                    problems.append(f"{services} services, {name}, one: {others} writes to other services' files")
            if figures.get("services_not_applied_at_end"):
                problems.append(f"{services} services, {name}: not applied at the end: "
                                f"{figures['services_not_applied_at_end'][:5]}")
        if "ratio_to_floor" in row:
            line["ratio_to_floor"] = row["ratio_to_floor"]
        table[services] = line
    aim_row = result["propagation"].get(str(AIM_SERVICES), {}).get(f"apphub_debounce_{AIM_DEBOUNCE_MS}", {})
    aim_p99 = aim_row.get("all", {}).get("latency_ms", {}).get("p99")
    if result.get("plan", {}).get("problems"):
        problems.append("plan: " + "; ".join(result["plan"]["problems"]))
    return {
        "latency_ms": table,
        "aim": {"p99_ms_under": AIM_P99_MS, "services": AIM_SERVICES, "debounce_ms": AIM_DEBOUNCE_MS,
                "series": "all", "measured_p99_ms": aim_p99,
                "met": None if aim_p99 is None else aim_p99 < AIM_P99_MS},
        "plan_p50_ms": ({"affected": result["plan"]["ms"]["plan_affected"]["p50"],
                         "all": result["plan"]["ms"]["plan_all"]["p50"]} if "plan" in result else None),
        "quickstart": result.get("quickstart", {}).get("skipped") or "measured",
        "valid": not problems,
        "problems": problems,
        "warnings": warnings,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.floor_worker is not None:
        return floor_worker(args.floor_worker)
    result = run(args)
    return api_settings.report(result, args.output, log)


if __name__ == "__main__":
    sys.exit(main())
