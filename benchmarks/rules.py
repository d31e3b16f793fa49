"""What the rules cost a write, and how fast substitution and overlays resolve (issue 12): one JSON
document on stdout, progress on stderr.

    .venv/bin/python benchmarks/rules.py [--quick] [--puts 400] [--slices 40] [--runs 30] [--output FILE]

1. `put`: PUT of one key over HTTP against two `apphub serve` of the same tree in subprocesses, each
   on a data folder of its own: one with every rule on (as shipped), one with system.ini
   `[rules] enabled = false` (set with `apphub setsysconfig`, as an operator would). The PUTs are
   sequential, on one keep-alive connection per server, in interleaved slices (on, off, off, on,
   ...) so that the noise of a shared machine falls on both alike; every PUT sends a new value, so
   that each one validates, is judged and writes. Three cases, each with its own figures:
     plain     PUT /api/v1/settings/gitea {"user_email": a new address}: the aim, p50 at most
               1.3 x the same PUT with only the schema's checks;
     port      PUT /api/v1/settings/cockpit {"port": a port free now}: the port rule asks the host
               (psutil) and the container engine who holds it (a scan kept 1 s);
     password  PUT /api/v1/settings/gitea {"user_pwd": a fresh random password}: zxcvbn runs.
   With Podman installed, its API service is started on a socket of ours and both folders' system.ini
   `[sync] docker_url` point at it, so that the port rule asks a real engine. `port_scan` times that
   scan in-process, uncached (what the PUT that pays it pays); `judge` times config.ini's rule hook
   in-process on a version with one new value, per case: the rules' own time, without HTTP or disk.
2. `resolve`, in-process: a data folder whose schema.d declares 100 sections x 50 keys, config.ini
   holding them (20 % of the values refer to other keys, chains of depth 1-3, two read the
   environment) and an overlay config.prod.ini over 10 % of them. Timed per run, each way in turn:
     cold         `resolver_for(base, environ, overlay).effective()`: every key, the overlay a layer
                  over config.ini, with the cache of parsed values emptied first (the aim: under 20 ms);
     warm         the same with that cache kept (as the product runs: most values outlive a write);
     merged       `merged(base, overlay)` (the services' snapshot), then `effective()` of it;
     one_by_one   merged, then `Resolver.resolve` key by key (the way of a single lookup);
     values       the sync engine's `Values.get` of every key (typed, as a render reads);
     floor        reading every key's stored value (`document.get`).
   Every resolved value is checked against an independent resolution of the same text. Last, the
   rule hook of a one-key write (plain, password) on that config.ini: what every write of it pays.
3. `machine`: as api_settings.py, plus the versions of zxcvbn and psutil.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import http.client
import importlib.metadata
import json
import os
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from benchmarks import api_settings, envvars, loadgen
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import api_settings  # type: ignore[no-redef, import-not-found, unused-ignore]
    import envvars  # type: ignore[no-redef, import-not-found, unused-ignore]
    import loadgen  # type: ignore[no-redef, import-not-found, unused-ignore]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PUT_RATIO_AIM = 1.3  # rules on / rules off, p50 of the plain PUT
RESOLVE_AIM_MS = 20.0
READY_PATH = "/api/v1/settings"
# Ports the port case may set: below Linux's ephemeral range, so that no client socket is given one.
PORT_RANGE = (20000, 32000)
ENV_SET = "APPHUB_BENCH_REGION"  # set in the resolver's environment
ENV_UNSET = "APPHUB_BENCH_UNSET"  # never set: its ${env:...:-default} gives the default


def log(message: str) -> None:
    print(f"[rules] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a short run: 60 PUTs per case and server in 8 slices, 8 resolve runs")
    parser.add_argument("--puts", type=int, default=None, help="measured PUTs per case and server (default 400)")
    parser.add_argument("--slices", type=int, default=None,
                        help="the measured PUTs of a case are split into this many loads per server, "
                             "interleaved (default 40: short slices, so that a burst of noise falls on both)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured PUTs per case and server first")
    parser.add_argument("--slice-warmup", type=int, default=1, help="unmeasured PUTs before each slice")
    parser.add_argument("--cases", default="plain,port,password", help="PUT cases to run (default all three)")
    parser.add_argument("--engine", action=argparse.BooleanOptionalAction, default=True,
                        help="start Podman's API service for the port rule to ask, if podman is installed "
                             "(default: yes)")
    parser.add_argument("--judges", type=int, default=200,
                        help="in-process judges of config.ini's rule hook per case (default 200)")
    parser.add_argument("--judge-warmup", type=int, default=10, help="unmeasured judges per case first")
    parser.add_argument("--big-judges", type=int, default=30,
                        help="judges of the rule hook per case on the 5,000-key config.ini (default 30)")
    parser.add_argument("--scans", type=int, default=30, help="uncached port scans timed in-process (default 30)")
    parser.add_argument("--runs", type=int, default=None, help="measured resolve runs (default 30)")
    parser.add_argument("--resolve-warmup", type=int, default=3, help="unmeasured resolve runs first")
    parser.add_argument("--sections", type=int, default=100, help="resolve: sections of the schema (default 100)")
    parser.add_argument("--keys-per-section", type=int, default=50, help="resolve: keys per section (default 50)")
    parser.add_argument("--reference-share", type=float, default=0.2,
                        help="resolve: share of the values holding ${section.key} references (default 0.2)")
    parser.add_argument("--overlay-share", type=float, default=0.1,
                        help="resolve: share of the keys the overlay overrides (default 0.1)")
    parser.add_argument("--seed", type=int, default=12, help="resolve: seed of the configuration's layout")
    parser.add_argument("--skip-puts", action="store_true", help="only the in-process resolve part")
    parser.add_argument("--skip-resolve", action="store_true", help="only the PUT part")
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python")
    parser.add_argument("--apphub", type=Path, default=ROOT / ".venv" / "bin" / "apphub")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (data and server logs)")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON document to this file")
    args = parser.parse_args(argv)
    args.puts = args.puts or (60 if args.quick else 400)
    args.slices = args.slices or (8 if args.quick else 40)
    args.runs = args.runs or (8 if args.quick else 30)
    if args.quick:
        args.warmup, args.scans, args.judges = min(args.warmup, 10), min(args.scans, 10), min(args.judges, 40)
        args.big_judges = min(args.big_judges, 8)
    args.cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}: choose from {', '.join(CASES)}")
    if min(args.puts, args.slices, args.runs, args.sections, args.keys_per_section, args.scans, args.judges,
           args.big_judges) < 1 \
            or args.puts < args.slices or min(args.warmup, args.slice_warmup, args.resolve_warmup,
                                              args.judge_warmup) < 0:
        parser.error("counts must be positive, and --puts at least --slices")
    if not (0 < args.reference_share < 1 and 0 <= args.overlay_share <= 1):
        parser.error("--reference-share must be in (0, 1), --overlay-share in [0, 1]")
    return args


def ms(ns: float) -> float:
    return round(ns / 1e6, 3)


def summary_ms(samples_ns: list[int]) -> dict[str, float]:
    """p50/p90/p99/min/max/mean in ms (nearest rank, as loadgen.py)."""
    ordered = sorted(samples_ns)
    return {"n": len(ordered), "p50": ms(loadgen.percentile(ordered, 0.5)), "p90": ms(loadgen.percentile(ordered, 0.9)),
            "p99": ms(loadgen.percentile(ordered, 0.99)), "min": ms(ordered[0]), "max": ms(ordered[-1]),
            "mean": ms(sum(ordered) / len(ordered))}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


# -- 1. PUT with the rules on and off ---------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    section: str
    key: str
    about: str


CASES = {
    "plain": Case("gitea", "user_email", "a new e-mail address each time; no rule but the cheap ones has work"),
    "port": Case("cockpit", "port", "a port free now each time; the port rule asks the host and the engine"),
    "password": Case("gitea", "user_pwd", "a fresh random password each time; zxcvbn judges it"),
}


def port_is_free(port: int) -> bool:
    """No TCP or UDP socket of this host's namespace is bound to `port` (what the port rule would see)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("0.0.0.0", port))  # a probe, closed at once
            except OSError:
                return False
    return True


@dataclass
class Target:
    """One `apphub serve`, its admin key, a keep-alive connection and the last value of each key."""

    name: str
    server: api_settings.Server
    key: str
    connection: http.client.HTTPConnection = field(init=False)
    last: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)

    def put(self, section: str, body: bytes) -> tuple[int, int, bytes]:
        """One PUT: (status, latency in ns from the request's first byte sent to the response's last
        byte read, body)."""
        headers = {"x-api-key": self.key, "content-type": "application/json"}
        started = time.perf_counter_ns()
        self.connection.request("PUT", f"/api/v1/settings/{section}", body, headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, time.perf_counter_ns() - started, data


class FreshValues:
    """A new value for a case's key, unlike the last one (`last`: the key's last values, by case);
    made before the PUT is timed."""

    def __init__(self, reserved_ports: set[int]) -> None:
        self.reserved_ports = reserved_ports
        self.tag = secrets.token_hex(3)
        self.sequence = 0
        self.rng = random.SystemRandom()

    def new(self, case: str, last: dict[str, str]) -> str:
        self.sequence += 1
        if case == "plain":
            value = f"rules-{self.tag}-{self.sequence}@example.com"
        elif case == "password":
            value = secrets.token_urlsafe(18)  # 24 characters of 64 symbols: zxcvbn's 4 of 4
        else:
            while True:
                port = self.rng.randrange(*PORT_RANGE)
                if port not in self.reserved_ports and str(port) != last.get(case) and port_is_free(port):
                    value = str(port)
                    break
        last[case] = value
        return value


@dataclass
class Tally:
    latencies: list[int] = field(default_factory=list)
    slice_p50_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    cpu_puts: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    warnings: int = 0
    warning_samples: list[str] = field(default_factory=list)


def put_load(target: Target, case: str, values: FreshValues, count: int, tally: Tally | None) -> None:
    """`count` PUTs of `case` on `target`, measured into `tally` (None: a warm-up, errors still raise)."""
    spec = CASES[case]
    latencies = []
    cpu_before = api_settings.process_cpu_seconds(target.server.process.pid)
    for _ in range(count):
        value: Any = values.new(case, target.last)
        body = json.dumps({spec.key: int(value) if case == "port" else value}).encode()
        status, latency, data = target.put(spec.section, body)
        answer: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            answer = json.loads(data)
        problem = None
        if status != 200:
            problem = f"{target.name} {case}: {status} {data[:300]!r}"
        elif not answer.get("changed"):
            problem = f"{target.name} {case}: the PUT changed nothing: {data[:300]!r}"
        if tally is None:
            if problem is not None:
                raise RuntimeError(f"warm-up failed: {problem}")
            continue
        latencies.append(latency)
        if problem is not None:
            tally.errors += 1
            if len(tally.error_samples) < 5:
                tally.error_samples.append(problem)
        found = answer.get("warnings") or []
        if found:
            tally.warnings += 1
            if len(tally.warning_samples) < 5:
                tally.warning_samples.append(f"{target.name} {case}: {json.dumps(found)[:300]}")
    cpu_after = api_settings.process_cpu_seconds(target.server.process.pid)
    if tally is not None:
        tally.latencies += latencies
        tally.slice_p50_ms.append(ms(loadgen.percentile(sorted(latencies), 0.5)))
        if cpu_before is not None and cpu_after is not None:
            tally.cpu_s += cpu_after - cpu_before
            tally.cpu_puts += count


def steal_pct(before: list[int], after: list[int]) -> float | None:
    if len(before) < 8 or len(after) < 8:
        return None
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta[:8])
    return round(100 * delta[7] / total, 1) if total else 0.0


def bench_case(args: argparse.Namespace, case: str, targets: dict[str, Target], values: FreshValues) -> dict[str, Any]:
    spec = CASES[case]
    per_slice = [args.puts // args.slices + (1 if n < args.puts % args.slices else 0) for n in range(args.slices)]
    log(f"PUT [{spec.section}] {spec.key} ({case}): {args.warmup} warm-up + {args.slices} slices of "
        f"~{per_slice[0]} on each server, interleaved")
    for target in targets.values():
        put_load(target, case, values, args.warmup, None)
    tallies = {name: Tally() for name in targets}
    machine_before = api_settings.cpu_times()
    for number, count in enumerate(per_slice):
        for name in ("on", "off") if number % 2 == 0 else ("off", "on"):
            put_load(targets[name], case, values, args.slice_warmup, None)
            put_load(targets[name], case, values, count, tallies[name])
        log(f"  {number + 1}/{args.slices} on p50 {tallies['on'].slice_p50_ms[-1]} ms, "
            f"off p50 {tallies['off'].slice_p50_ms[-1]} ms")
    result: dict[str, Any] = {"section": spec.section, "key": spec.key, "value": spec.about,
                              "puts_per_server": args.puts, "slices": args.slices}
    for name, tally in tallies.items():
        result[name] = {
            "latency_ms": summary_ms(tally.latencies),
            "slices_p50_ms": tally.slice_p50_ms,
            "server_cpu_us_per_put": round(tally.cpu_s / tally.cpu_puts * 1e6, 1) if tally.cpu_puts else None,
            "errors": tally.errors, "error_samples": tally.error_samples,
            "puts_with_warnings": tally.warnings, "warning_samples": tally.warning_samples,
        }
    on, off = result["on"], result["off"]
    result["ratio_p50_on_to_off"] = ratio(on["latency_ms"]["p50"], off["latency_ms"]["p50"])
    result["ratio_p99_on_to_off"] = ratio(on["latency_ms"]["p99"], off["latency_ms"]["p99"])
    result["ratio_mean_on_to_off"] = ratio(on["latency_ms"]["mean"], off["latency_ms"]["mean"])
    result["overhead_p50_ms"] = round(on["latency_ms"]["p50"] - off["latency_ms"]["p50"], 3)
    result["ratio_server_cpu_on_to_off"] = ratio(on["server_cpu_us_per_put"], off["server_cpu_us_per_put"])
    result["slices_ratio_p50"] = [ratio(a, b) for a, b in zip(on["slices_p50_ms"], off["slices_p50_ms"], strict=True)]
    result["median_of_slices_ratio_p50"] = round(statistics.median(r for r in result["slices_ratio_p50"] if r), 3)
    result["cpu_steal_pct"] = steal_pct(machine_before, api_settings.cpu_times())
    log(f"  => p50 on {on['latency_ms']['p50']} / off {off['latency_ms']['p50']} ms "
        f"(ratio {result['ratio_p50_on_to_off']}), p99 {on['latency_ms']['p99']} / {off['latency_ms']['p99']} ms")
    return result


def rules_switch_check(targets: dict[str, Target]) -> dict[str, Any]:
    """That the switch is what differs: a well-known password is refused with the rules on, taken off."""
    found: dict[str, Any] = {}
    for name, target in targets.items():
        status, _, data = target.put("gitea", json.dumps({"user_pwd": "changeme"}).encode())
        rules = []
        with contextlib.suppress(ValueError, AttributeError):
            rules = [error.get("rule") for error in json.loads(data).get("errors", [])]
        found[name] = {"status": status, "rules": rules}
    found["as_expected"] = (found["on"]["status"] == 422 and "placeholder_password" in found["on"]["rules"]
                            and found["off"]["status"] == 200)
    return found


def apphub(args: argparse.Namespace, data: Path, *words: str) -> None:
    subprocess.run([str(args.apphub), "--data-dir", str(data), *words], check=True, capture_output=True)


def bench_port_scan(args: argparse.Namespace, engine_url: str | None) -> dict[str, Any]:
    """What the port rule's scan costs when it is not cached: psutil alone, and with the engine."""
    from apphub.reload.docker import ContainerEngine
    from apphub.rules.holders import HostPorts

    result: dict[str, Any] = {}
    sources: list[tuple[str, str | None]] = [("host_only", None)]
    if engine_url is not None:
        sources.append(("host_and_engine", engine_url))
    for name, url in sources:
        ports = HostPorts(ContainerEngine(url, 1.0) if url else None, ttl=0.0)
        started = time.perf_counter_ns()
        first = ports.scan()  # an engine's first call asks its API version: once per engine
        first_ns = time.perf_counter_ns() - started
        samples = []
        for _ in range(args.scans):
            started = time.perf_counter_ns()
            scan = ports.scan()
            samples.append(time.perf_counter_ns() - started)
        result[name] = {"first_ms": ms(first_ns), "scan_ms": summary_ms(samples), "ports_held": len(scan.by_port),
                        "unreachable": list(first.unreachable) + list(scan.unreachable)}
    return result


def bench_judge(args: argparse.Namespace, folder: Path, engine_url: str | None) -> dict[str, Any]:
    """The rules alone, in-process: config.ini's rule hook (what IniStore calls with the version it
    would write) on a version with one new value, per case; no HTTP, no disk. Of the port case only
    the first judge of each second scans the host and the engine (holders.SCAN_TTL_S), as in a server."""
    from apphub.core import Core
    from apphub.paths import DataDir

    data = folder / "data-judge"
    apphub(args, data, "init")
    if engine_url is not None:
        apphub(args, data, "setsysconfig", "--section", "sync", "--key", "docker_url", "--value", engine_url)
    result: dict[str, Any] = {"judges_per_case": args.judges}
    values = FreshValues({9000, 9090})
    last: dict[str, str] = {}
    core = Core(DataDir(data))
    try:
        hook = core.config.rules
        if hook is None:
            raise RuntimeError("config.ini's store has no rule hook")
        for case in args.cases:
            result[case] = judged(core, case, functools.partial(values.new, case, last), args.judge_warmup,
                                  args.judges)
            log(f"judge {case}: p50 {result[case]['judge_ms']['p50']} ms, p99 {result[case]['judge_ms']['p99']} ms")
    finally:
        core.close()
    return result


def judged(core: Any, case: str, new_value: Callable[[], str], warmup: int, count: int) -> dict[str, Any]:
    """config.ini's rule hook of `core` (an apphub.core.Core), timed on `count` versions of config.ini
    as it is, each with a new value of `case`'s key (after `warmup` unmeasured ones)."""
    from apphub.store.inidoc import SetValue
    from apphub.store.snapshot import Snapshot

    spec = CASES[case]
    hook = core.config.rules
    if hook is None:
        raise RuntimeError("config.ini's store has no rule hook")
    current = core.config.snapshot()
    samples, findings = [], []
    for number in range(warmup + count):
        value = new_value()
        stored = core.box.encrypt(value) if case == "password" else value
        document = current.document.with_edits([SetValue(spec.section, spec.key, stored)])
        written = Snapshot(current.name, document.text.encode("utf-8"), document, current.schema, current.box)
        started = time.perf_counter_ns()
        found = hook(written, frozenset({(spec.section, spec.key)}))
        elapsed = time.perf_counter_ns() - started
        if number >= warmup:
            samples.append(elapsed)
            findings += [str(finding) for finding in found]
    return {"judge_ms": summary_ms(samples), "findings": len(findings), "finding_samples": findings[:3]}


@contextlib.contextmanager
def engine_service(args: argparse.Namespace, folder: Path) -> Iterator[tuple[str | None, str | None]]:
    """Podman's API service on a socket of ours: (its URL, or None with why there is none)."""
    if not args.engine:
        yield None, "--no-engine"
        return
    if shutil.which("podman") is None:
        yield None, "podman is not installed"
        return
    podman = envvars.Podman(folder / "podman")
    podman.folder.mkdir()
    try:
        podman.start()
    except RuntimeError as exc:
        podman.stop()
        yield None, f"podman system service did not start: {exc}"
        return
    try:
        yield podman.url, None
    finally:
        podman.stop()


def bench_puts(args: argparse.Namespace, folder: Path, result: dict[str, Any]) -> None:
    with engine_service(args, folder) as (engine_url, no_engine):
        result["engine"] = {"url": engine_url, "why_none": no_engine}
        if engine_url is not None:
            version = envvars.Podman(folder / "podman").cli("--version").stdout.strip()
            result["engine"]["podman"] = version or None
        targets: dict[str, Target] = {}
        servers: list[api_settings.Server] = []
        for name in ("on", "off"):
            data = folder / f"data-{name}"
            log(f"initialising {data}")
            apphub(args, data, "init")
            if name == "off":
                apphub(args, data, "setsysconfig", "--section", "rules", "--key", "enabled", "--value", "false")
            if engine_url is not None:
                apphub(args, data, "setsysconfig", "--section", "sync", "--key", "docker_url", "--value", engine_url)
            port = api_settings.free_port()
            servers.append(api_settings.start_server(
                f"apphub-{name}", [str(args.apphub), "--data-dir", str(data), "serve", "--port", str(port),
                                   "--log-level", "warning"], port, folder, None))
            targets[name] = Target(name, servers[-1], (data / ".apphub" / "admin.key").read_text().strip())
        with api_settings.running(servers):
            for target in targets.values():
                api_settings.wait_ready(target.server, READY_PATH, {"x-api-key": target.key})
            values = FreshValues({9000, 9090, *(server.port for server in servers)})
            cases = {}
            for case in args.cases:
                cases[case] = bench_case(args, case, targets, values)
            result["put"] = cases
            result["rules_switch_check"] = rules_switch_check(targets)
            for target in targets.values():
                target.connection.close()
        result["port_scan"] = bench_port_scan(args, engine_url)
        result["judge"] = bench_judge(args, folder, engine_url)


# -- 2. substitution and overlays of a 5,000-key configuration -------------------------------------

Key = tuple[str, str]


@dataclass
class Layout:
    keys: list[Key]  # the benchmark's keys, in file order
    base: dict[Key, str]
    overlay: dict[Key, str]
    depth: dict[Key, int]  # 0: a plain value; n: n references deep


def layout(args: argparse.Namespace) -> Layout:
    """The configuration: plain values, and a share of values referring to plain ones (depth 1), to
    depth-1 ones (depth 2) or to depth-2 ones (depth 3); two of depth 1 read the environment too.
    The overlay overrides a share of every kind (`ov-` before the same text: a reference stays one)."""
    rng = random.Random(args.seed)
    keys = [(f"r{s:03d}", f"k{k:02d}") for s in range(args.sections) for k in range(args.keys_per_section)]
    shuffled = keys[:]
    rng.shuffle(shuffled)
    referring = shuffled[:max(3, round(len(keys) * args.reference_share))]
    plain = shuffled[len(referring):]
    third = len(referring) // 3
    levels = [referring[:len(referring) - 2 * third], referring[len(referring) - 2 * third:len(referring) - third],
              referring[len(referring) - third:]]
    base = {key: f"v-{key[0]}-{key[1]}" for key in plain}
    depth = dict.fromkeys(plain, 0)

    def ref(key: Key) -> str:
        return "${" + f"{key[0]}.{key[1]}" + "}"

    for key in levels[0]:
        base[key] = f"http://{ref(rng.choice(plain))}:{ref(rng.choice(plain))}/d1"
        depth[key] = 1
    base[levels[0][0]] += "?region=${env:" + ENV_SET + "}"
    base[levels[0][1]] += "&zone=${env:" + ENV_UNSET + ":-zone-a}"
    for level in (1, 2):
        for key in levels[level]:
            base[key] = f"{ref(rng.choice(levels[level - 1]))}/d{level + 1}-{ref(rng.choice(plain))}"
            depth[key] = level + 1
    overridden = rng.sample(keys, round(len(keys) * args.overlay_share))
    overlay = {key: "ov-" + base[key] for key in sorted(overridden, key=keys.index)}
    return Layout(keys, base, overlay, depth)


def expected_values(values: dict[Key, str], environ: dict[str, str]) -> dict[Key, str]:
    """Each value with its references filled in, worked out here without apphub (a cross-check)."""
    found: dict[Key, str] = {}
    pattern = re.compile(r"\$\{([^}]*)\}")

    def value(key: Key) -> str:
        if key not in found:
            def fill(match: re.Match[str]) -> str:
                inner = match.group(1)
                if inner.startswith("env:"):
                    name, _, default = inner[len("env:"):].partition(":-")
                    return environ.get(name) or default
                section, _, name = inner.partition(".")
                return value((section, name))

            found[key] = pattern.sub(fill, values[key])
        return found[key]

    for key in values:
        value(key)
    return found


def ini_text(sections: dict[str, list[tuple[str, str]]]) -> str:
    lines = []
    for section, items in sections.items():
        lines += ["", f"[{section}]", *(f"{key} = {value}" for key, value in items)]
    return "\n".join(lines) + "\n"


def by_section(keys: Sequence[Key], values: dict[Key, str]) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for key in keys:
        found.setdefault(key[0], []).append((key[1], values[key]))
    return found


def bench_resolve(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from apphub.core import Core
    from apphub.environments.overlays import HEADER, file_name, merged
    from apphub.paths import DataDir
    from apphub.store import substitution
    from apphub.store.check import file_problems
    from apphub.store.substitution import Resolution, resolver_for
    from apphub.sync.values import Values, text_of

    plan = layout(args)
    data = folder / "data-resolve"
    log(f"resolve: {len(plan.keys)} keys in {args.sections} sections, {sum(1 for d in plan.depth.values() if d)} "
        f"with references, {len(plan.overlay)} overridden by config.prod.ini")
    apphub(args, data, "init")
    schema = ["# the rules benchmark's keys", "config:", "  sections:"]
    for section, items in by_section(plan.keys, plan.base).items():
        schema += [f"    {section}:", "      description: the rules benchmark", "      keys:"]
        schema += [f"        {key}: {{type: string, apply: hot}}" for key, _ in items]
    (data / "schema.d" / "rules-bench.yaml").write_text("\n".join(schema) + "\n")
    # By hand, as propagation.py: IniStore.update of thousands of keys in one call re-parses once per key.
    with (data / "config.ini").open("a") as config:
        config.write(ini_text(by_section(plan.keys, plan.base)))
    (data / file_name("prod")).write_bytes(HEADER + ini_text(by_section(list(plan.overlay), plan.overlay)).encode())
    environ = {name: value for name, value in os.environ.items() if name != ENV_UNSET}
    environ[ENV_SET] = "eu-west"
    problems: list[str] = []
    core = Core(DataDir(data))
    try:
        base = core.config.snapshot()
        overlay = core.environments.store("prod").snapshot()
        for snapshot in (base, overlay):
            found = file_problems(snapshot.document, snapshot.schema, core.box, snapshot.name, plaintext_secrets=False)
            if found:
                problems.append(f"{snapshot.name} does not validate: {[str(f) for f in found[:3]]}")
        view = merged(base, overlay)
        every = [(section, key) for section in view.sections() for key, _ in view.document.items(section)]
        expected = expected_values({**plan.base, **plan.overlay}, environ)

        def floor() -> object:
            document = view.document
            return [document.get(section, key) for section, key in every]

        def effective(cold: bool) -> dict[Key, str]:
            # The way the product resolves an environment (environments diff, ...): the overlay as a
            # layer over config.ini, every key at once. Cold: no value's text parsed before.
            if cold:
                substitution._parsed.cache_clear()
            found = resolver_for(base, environ, overlay).effective()
            return {key: result.value for key, result in found.items() if isinstance(result, Resolution)}

        def merge_then_effective() -> tuple[int, int, dict[Key, str]]:
            # The services' snapshot: the overlay merged into config.ini's text, then resolved.
            started = time.perf_counter_ns()
            snapshot = merged(base, overlay)
            mid = time.perf_counter_ns()
            found = resolver_for(snapshot, environ).effective()
            out = {key: result.value for key, result in found.items() if isinstance(result, Resolution)}
            return mid - started, time.perf_counter_ns() - mid, out

        def one_by_one() -> dict[Key, str]:  # every key through Resolver.resolve, as a single lookup goes
            resolver = resolver_for(merged(base, overlay), environ)
            return {key: resolver.resolve(*key).value for key in every}

        def sync_values() -> dict[Key, str]:
            values = Values(merged(base, overlay), environ)
            return {key: text_of(values.get(*key)) for key in every}

        def wrong(out: dict[Key, str], what: str) -> None:
            bad = [key for key in plan.keys if out.get(key) != expected[key]]
            if bad:
                problems.append(f"{what}: {len(bad)} value(s) differ from the cross-check, e.g. [{bad[0][0]}] "
                                f"{bad[0][1]} = {out.get(bad[0])!r}, expected {expected[bad[0]]!r}")

        wrong(effective(cold=True), "effective, cold")
        wrong(effective(cold=False), "effective, warm")
        wrong(merge_then_effective()[2], "merged + effective")
        wrong(one_by_one(), "merged + resolve one by one")
        wrong(sync_values(), "sync Values")
        actions: dict[str, Callable[[], object]] = {
            "floor": floor, "cold": functools.partial(effective, True), "warm": functools.partial(effective, False),
            "one_by_one": one_by_one, "values": sync_values}
        ways = ("floor", "cold", "warm", "merge", "merged_effective", "one_by_one", "values")
        samples: dict[str, list[int]] = {name: [] for name in ways}
        log(f"resolve: {args.resolve_warmup} warm-up + {args.runs} runs of every way, {len(every)} keys each")
        for number in range(args.resolve_warmup + args.runs):
            order = ["floor", "cold", "warm", "merged", "one_by_one", "values"]
            order = order[number % len(order):] + order[:number % len(order)]  # each way first as often as the others
            run: dict[str, int] = {}
            for way in order:
                if way == "merged":
                    run["merge"], resolved, _ = merge_then_effective()
                    run["merged_effective"] = run["merge"] + resolved
                else:
                    started = time.perf_counter_ns()
                    actions[way]()
                    run[way] = time.perf_counter_ns() - started
            if number >= args.resolve_warmup:
                for name, value in run.items():
                    samples[name].append(value)
        # What every write of this config.ini pays: the rules read every key of the file, whatever it touches.
        values = FreshValues(set())
        last: dict[str, str] = {}
        big_judges = {case: judged(core, case, functools.partial(values.new, case, last), args.judge_warmup,
                                   args.big_judges)
                      for case in ("plain", "password")}
        for case, figures in big_judges.items():
            log(f"  judge {case} on this config.ini: p50 {figures['judge_ms']['p50']} ms")
            if figures["findings"]:
                problems.append(f"judge {case} on the big config.ini: the rules found {figures['finding_samples']}")
    finally:
        core.close()
    figures = {name: summary_ms(values) for name, values in samples.items()}
    cold, floor_p50 = figures["cold"]["p50"], figures["floor"]["p50"]
    log(f"  => every key, overlay and references resolved: p50 {cold} ms cold, {figures['warm']['p50']} ms warm; "
        f"merged first {figures['merged_effective']['p50']} ms (merge {figures['merge']['p50']}); one by one "
        f"{figures['one_by_one']['p50']} ms; floor {floor_p50} ms, Values {figures['values']['p50']} ms")
    depths = [plan.depth[key] for key in plan.keys]
    return {
        "keys_resolved": len(every),
        "benchmark_keys": len(plan.keys),
        "sections": args.sections,
        "keys_with_references": {f"depth_{d}": depths.count(d) for d in (1, 2, 3)},
        "keys_reading_the_environment": 2,
        "overlay_keys": len(plan.overlay),
        "overlay_keys_with_references": sum(1 for key in plan.overlay if plan.depth[key]),
        "config_ini_bytes": len(base.raw),
        "overlay_bytes": len(overlay.raw),
        "runs": args.runs,
        "ms": figures,
        "aim_ms": RESOLVE_AIM_MS,
        "aim_met_p50": cold < RESOLVE_AIM_MS,
        "aim_met_max": figures["cold"]["max"] < RESOLVE_AIM_MS,
        "merged_aim_met_p50": figures["merged_effective"]["p50"] < RESOLVE_AIM_MS,
        "ratio_p50_cold_to_floor": ratio(cold, floor_p50),
        "ratio_p50_values_to_floor": ratio(figures["values"]["p50"], floor_p50),
        "judge_on_this_config_ini": big_judges,
        "gc_enabled": gc.isenabled(),
        "problems": problems,
    }


# -- the run ---------------------------------------------------------------------------------------


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="apphub-rules-bench-", dir=args.tmp))
    started = time.monotonic()
    result: dict[str, Any] = {"benchmark": "apphub rules, substitution and overlays (issue 12)"}
    try:
        result["machine"] = api_settings.machine(args.python, folder)
        result["machine"]["packages"].update(package_versions(["zxcvbn", "psutil"]))
        src = api_settings.command_output(["git", "status", "--porcelain", "--", "src"], cwd=ROOT)
        result["machine"]["git_src_changes"] = None if src is None else bool(src)  # what the servers import
        result["settings"] = {
            "quick": args.quick, "puts_per_case_and_server": args.puts, "slices": args.slices,
            "warmup": args.warmup, "slice_warmup": args.slice_warmup, "cases": args.cases,
            "resolve_runs": args.runs, "resolve_warmup": args.resolve_warmup,
            "serve_command": "apphub --data-dir TMP/data-{on,off} serve --port P --log-level warning",
            "rules_off_by": "apphub --data-dir TMP/data-off setsysconfig --section rules --key enabled --value false",
            "client": "http.client in this process, one keep-alive connection per server, sequential PUTs",
        }
        if not args.skip_puts:
            bench_puts(args, folder, result)
        if not args.skip_resolve:
            result["resolve"] = bench_resolve(args, folder)
    finally:
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["machine"]["load_average_at_end"] = [round(n, 2) for n in os.getloadavg()]
    result["summary"] = summarise(result)
    return result


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    problems: list[str] = []
    warnings: list[str] = []
    summary: dict[str, Any] = {}
    for case, figures in result.get("put", {}).items():
        summary[f"put_{case}"] = {
            "p50_ms": {name: figures[name]["latency_ms"]["p50"] for name in ("on", "off")},
            "p99_ms": {name: figures[name]["latency_ms"]["p99"] for name in ("on", "off")},
            "ratio_p50": figures["ratio_p50_on_to_off"], "ratio_p99": figures["ratio_p99_on_to_off"],
            "median_of_slices_ratio_p50": figures["median_of_slices_ratio_p50"],
            "overhead_p50_ms": figures["overhead_p50_ms"],
            "ratio_server_cpu": figures["ratio_server_cpu_on_to_off"],
            "judge_in_process_p50_ms": result.get("judge", {}).get(case, {}).get("judge_ms", {}).get("p50"),
        }
        for name in ("on", "off"):
            if figures[name]["errors"]:
                problems.append(f"{case}, rules {name}: {figures[name]['errors']} PUT(s) failed: "
                                f"{figures[name]['error_samples'][:2]}")
            if figures[name]["puts_with_warnings"]:
                warnings.append(f"{case}, rules {name}: {figures[name]['puts_with_warnings']} PUT(s) answered with "
                                f"warnings: {figures[name]['warning_samples'][:2]}")
        if (figures.get("cpu_steal_pct") or 0) > 5:
            warnings.append(f"{case}: the hypervisor took {figures['cpu_steal_pct']} % of the CPU time (steal)")
    if "plain" in result.get("put", {}):
        plain = summary["put_plain"]
        summary["put_aim"] = {"case": "plain", "ratio_p50_max": PUT_RATIO_AIM, "ratio_p50": plain["ratio_p50"],
                              "met": plain["ratio_p50"] is not None and plain["ratio_p50"] <= PUT_RATIO_AIM}
    check = result.get("rules_switch_check")
    if check is not None and not check["as_expected"]:
        problems.append(f"the rules switch did not behave: on {check['on']}, off {check['off']}")
    if "engine" in result and result["engine"]["url"] is None:
        warnings.append(f"no container engine for the port rule to ask ({result['engine']['why_none']})")
    for case, figures in result.get("judge", {}).items():
        if isinstance(figures, dict) and figures["findings"]:
            problems.append(f"judge {case}: the rules found {figures['finding_samples']}")
    if "port_scan" in result:
        summary["port_scan_p50_ms"] = {name: figures["scan_ms"]["p50"] for name, figures in result["port_scan"].items()}
    resolve = result.get("resolve")
    if resolve is not None:
        summary["resolve"] = {
            "keys": resolve["keys_resolved"], "cold_p50_ms": resolve["ms"]["cold"]["p50"],
            "cold_min_ms": resolve["ms"]["cold"]["min"], "cold_max_ms": resolve["ms"]["cold"]["max"],
            "warm_p50_ms": resolve["ms"]["warm"]["p50"], "merged_then_resolved_p50_ms":
                resolve["ms"]["merged_effective"]["p50"], "merge_p50_ms": resolve["ms"]["merge"]["p50"],
            "one_by_one_p50_ms": resolve["ms"]["one_by_one"]["p50"], "values_p50_ms": resolve["ms"]["values"]["p50"],
            "floor_p50_ms": resolve["ms"]["floor"]["p50"],
            "ratio_p50_cold_to_floor": resolve["ratio_p50_cold_to_floor"],
            "aim_ms": RESOLVE_AIM_MS, "aim_met_p50": resolve["aim_met_p50"], "aim_met_max": resolve["aim_met_max"],
            "merged_aim_met_p50": resolve["merged_aim_met_p50"],
            "judge_one_key_p50_ms": {case: figures["judge_ms"]["p50"]
                                     for case, figures in resolve["judge_on_this_config_ini"].items()},
        }
        problems += resolve["problems"]
    summary.update({"valid": not problems, "problems": problems, "warnings": warnings})
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return api_settings.report(run(args), args.output, log)


if __name__ == "__main__":
    sys.exit(main())
