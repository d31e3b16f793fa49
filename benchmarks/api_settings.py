"""Benchmark of the settings API: GET against a bare FastAPI floor, and PUT latency.

    .venv/bin/python benchmarks/api_settings.py [--duration 10] [--warmup 2] [--put-requests 500]
        [--baseline REF]

Prints one JSON document on stdout (progress goes to stderr). In one run it:
  1. initialises a temporary data folder and starts `apphub --data-dir TMP serve` as a subprocess;
  2. starts benchmarks/bare_app.py, a bare FastAPI route returning the very JSON apphub answered;
  3. loads `GET /api/v1/settings` of both at each concurrency (default 1 and 32 keep-alive clients)
     with benchmarks/loadgen.py, a separate process, and reports apphub's rps as a ratio of the bare
     route's (the aim: >= 0.8);
  4. times `PUT /api/v1/settings/{section}` of one key, a new value each time so that every PUT
     validates, writes (fsync) and records an audit event, sequentially and with 4 writers
     (the aim: p99 < 20 ms), and checks that the audit log holds one event per acknowledged PUT;
  5. with --baseline REF, also starts apphub as it was at git REF (its src/ exported to the temp
     folder, on a data folder of its own) and times the same PUTs against both in interleaved
     slices, reporting this tree's p50/p99 as a ratio to the baseline's, same run;
  6. records the machine: CPUs, Python, package versions, the temp folder's file system, the commit.
If `wrk` is installed, its figures for the same GETs are added as a cross-check of the client.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from benchmarks import loadgen
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import loadgen  # type: ignore[no-redef, import-not-found, unused-ignore]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GET_PATH = "/api/v1/settings"
GET_RATIO_AIM = 0.8
PUT_P99_AIM_MS = 20.0
PACKAGES = ("fastapi", "starlette", "uvicorn", "pydantic", "httptools", "uvloop", "configupdater", "cryptography")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds measured per server and GET concurrency (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each GET slice")
    parser.add_argument("--concurrency", default="1,32", help="comma-separated GET client counts (default 1,32)")
    parser.add_argument("--slices", type=int, default=5,
                        help="the measured time is split into this many loads per server, interleaved (default 5)")
    parser.add_argument("--put-requests", type=int, default=500,
                        help="measured PUTs per mode, sequential and concurrent (default 500)")
    parser.add_argument("--put-warmup", type=int, default=20, help="unmeasured PUTs before each PUT mode")
    parser.add_argument("--put-writers", type=int, default=4, help="concurrent writers of the second PUT mode")
    parser.add_argument("--put-section", default="gitea")
    parser.add_argument("--put-key", default="user_email")
    parser.add_argument("--put-value", default="bench-{tag}-{seq}@example.com",
                        help="value template; {seq} is unique per request, {tag} per run and mode")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=False,
                        help="pin the servers to CPU 0 and the load generator to the other CPUs")
    parser.add_argument("--wrk", action=argparse.BooleanOptionalAction, default=True,
                        help="also run wrk on the GETs when it is installed (default: yes)")
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python",
                        help="interpreter of the bare server and the load generator")
    parser.add_argument("--apphub", type=Path, default=ROOT / ".venv" / "bin" / "apphub")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary data folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (data and server logs)")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON document to this file")
    parser.add_argument("--baseline", default=None, metavar="REF",
                        help="also time the PUTs of apphub at this git commit, interleaved, and give ratios")
    parser.add_argument("--baseline-slices", type=int, default=10,
                        help="interleaved PUT loads per server in the baseline comparison (default 10)")
    args = parser.parse_args(argv)
    args.concurrency = [int(part) for part in args.concurrency.split(",") if part.strip()]
    if args.duration <= 0 or args.warmup < 0 or min(args.put_requests, args.put_writers, args.slices) < 1:
        parser.error("durations and counts must be positive")
    return args


# -- processes -------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_sets(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """CPUs of the servers and of the load generator (None: let the scheduler choose)."""
    available = sorted(os.sched_getaffinity(0))
    if not pin or len(available) < 2:
        return None, None
    return {available[0]}, set(available[1:])


def spawn(command: list[str], cpus: set[int] | None, **kwargs: Any) -> subprocess.Popen[bytes]:
    def pin() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    return subprocess.Popen(command, preexec_fn=pin, **kwargs)


def start_server(name: str, command: list[str], port: int, folder: Path, cpus: set[int] | None,
                 env: dict[str, str] | None = None) -> Server:
    log_file = folder / f"{name}.log"
    with log_file.open("wb") as sink:
        process = spawn(command, cpus, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, env=env)
    return Server(name, process, port, log_file)


# apphub's console script, for an interpreter whose PYTHONPATH holds another tree's src/
APPHUB_MAIN = "import sys; from apphub.cli.main import main; sys.exit(main())"


def export_baseline(ref: str, folder: Path) -> tuple[str, dict[str, str]]:
    """src/ of apphub at git `ref`, exported under `folder`; its commit and the environment that runs it."""
    commit = command_output(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT)
    if commit is None:
        raise SystemExit(f"--baseline {ref}: not a commit of this repository")
    tree = folder / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return commit, {**os.environ, "PYTHONPATH": str(tree / "src")}


def wait_ready(server: Server, path: str, headers: dict[str, str], timeout: float = 30.0) -> None:
    """Poll `path` until it answers 200; fail with the server's log if it dies or never does."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            status, _ = http_get(server.url + path, headers, timeout=2.0)
            if status == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not answer {path} within {timeout:g} s:\n{server.log_tail()}")
        time.sleep(0.05)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[list[Server]]:
    try:
        yield servers
    finally:
        for server in servers:
            stop(server)


def http_get(url: str, headers: dict[str, str], timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback URL built here
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def run_load(python: Path, job: dict[str, Any], cpus: set[int] | None) -> dict[str, Any]:
    """Run one job in benchmarks/loadgen.py, a process of its own, and return its figures."""
    process = spawn([str(python), str(HERE / "loadgen.py")], cpus, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(json.dumps(job).encode())
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed ({process.returncode}):\n{err.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(out)
    return result


# -- wrk (optional cross-check) --------------------------------------------------------------------

_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, headers: dict[str, str], concurrency: int, duration: float,
            cpus: set[int] | None) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    assert wrk is not None
    command = [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    process = spawn([*command, url], cpus, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_bytes, _ = process.communicate()
    out = out_bytes.decode(errors="replace")

    def latency(label: str) -> float | None:
        found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        return round(float(found.group(1)) * _WRK_UNITS[found.group(2)], 3) if found else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "concurrency": concurrency,
        "rps": float(rps.group(1)) if rps else None,
        "latency_ms": {"p50": latency("50"), "p90": latency("90"), "p99": latency("99")},
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else None,
    }


# -- the machine -----------------------------------------------------------------------------------


def command_output(command: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def machine(python: Path, folder: Path) -> dict[str, Any]:
    versions_script = (
        "import importlib.metadata as m, json, platform\n"
        f"names = {list(PACKAGES)!r}\n"
        "def v(n):\n"
        "    try: return m.version(n)\n"
        "    except m.PackageNotFoundError: return None\n"
        "print(json.dumps({'python': platform.python_version(), 'implementation': platform.python_implementation(),"
        " 'packages': {n: v(n) for n in names}}))"
    )
    interpreter = json.loads(command_output([str(python), "-c", versions_script]) or "{}")
    df = command_output(["df", "-T", str(folder)])
    df_row = df.splitlines()[-1].split() if df else []
    commit = command_output(["git", "rev-parse", "HEAD"], cwd=ROOT)
    dirty = command_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT)
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "load_average_at_start": [round(n, 2) for n in os.getloadavg()],
        "os": f"{platform.system()} {platform.release()}",
        "python": interpreter.get("python"),
        "python_implementation": interpreter.get("implementation"),
        "packages": interpreter.get("packages", {}),
        "temp_folder": str(folder),
        "temp_filesystem": {"device": df_row[0], "type": df_row[1]} if len(df_row) > 1 else None,
        "df_T": df,
        "git_commit": commit,
        "git_tracked_changes": None if dirty is None else bool(dirty),
        "wrk": wrk_version(),
    }


def wrk_version() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return (done.stdout or done.stderr).splitlines()[0].strip() if (done.stdout or done.stderr) else wrk


def audit_events(database: Path, actor: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as connection:
        row = connection.execute(
            "SELECT count(*) FROM audit_events WHERE actor = ? AND action = 'settings.update'", (actor,)
        ).fetchone()
    return int(row[0])


# -- the benchmark ---------------------------------------------------------------------------------


def cpu_times() -> list[int]:
    """The machine's aggregate CPU counters (jiffies) from /proc/stat; [] where there is none."""
    with contextlib.suppress(OSError, ValueError):
        return [int(n) for n in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return []


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, all its threads, from /proc/PID/stat."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def measured_load(python: Path, job: dict[str, Any], cpus: set[int] | None, server: Server) -> dict[str, Any]:
    """One load, with the server's CPU time per request and the share of CPU time the hypervisor
    took away meanwhile (steal), which is what makes figures of a shared VM move between runs."""
    before, server_before = cpu_times(), process_cpu_seconds(server.process.pid)
    result = run_load(python, job, cpus)
    after, server_after = cpu_times(), process_cpu_seconds(server.process.pid)
    answered = sum(result["statuses_all"].values())  # warm-up included, like the CPU time
    if server_before is not None and server_after is not None and answered:
        result["server_cpu_s"] = round(server_after - server_before, 3)
        result["server_cpu_us_per_request"] = round((server_after - server_before) / answered * 1e6, 1)
    if len(before) > 7 and len(after) > 7:
        delta = [b - a for a, b in zip(before, after, strict=True)]
        total = sum(delta[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
        result["cpu_steal_pct"] = round(100 * delta[7] / total, 1) if total else 0.0
    return result


def pooled(slices: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The figures of several loads of one target taken as one: rps over the measured time,
    percentiles over every latency, errors and CPU time summed."""
    latencies = [ns for figures in slices for ns in figures.pop("latencies_ns")]
    answered = sum(sum(figures["statuses_all"].values()) for figures in slices)
    cpu = [float(figures["server_cpu_s"]) for figures in slices if "server_cpu_s" in figures]
    steal = [float(figures["cpu_steal_pct"]) for figures in slices if "cpu_steal_pct" in figures]
    statuses: dict[str, int] = {}
    for figures in slices:
        for status, count in figures["statuses_all"].items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "concurrency": slices[0]["concurrency"],
        "requests": len(latencies),
        "seconds": round(seconds, 3),
        "rps": round(len(latencies) / seconds, 1),
        "latency_ms": loadgen.latency_summary(latencies),
        "errors": sum(figures["errors"] for figures in slices),
        "error_samples": [sample for figures in slices for sample in figures["error_samples"]][:5],
        "statuses_all": statuses,
        "server_cpu_us_per_request": (round(sum(cpu) / answered * 1e6, 1)
                                      if answered and len(cpu) == len(slices) else None),
        "cpu_steal_pct_mean": round(sum(steal) / len(steal), 1) if len(steal) == len(slices) else None,
        "slices_rps": [figures["rps"] for figures in slices],
        "client_cpu_pct_max": max(float(figures.get("client_cpu_pct", 0.0)) for figures in slices),
        "client_loop": slices[0].get("client_loop"),
    }


def bench_get(args: argparse.Namespace, apphub: Server, bare: Server, key: str,
              client_cpus: set[int] | None) -> dict[str, Any]:
    """At each concurrency, `slices` loads of each server, interleaved (A B, B A, A B...) so that
    the drift of a shared machine falls on both alike; each load has its own warm-up."""
    results: dict[str, Any] = {}
    targets = {"apphub": (apphub, {"x-api-key": key}), "bare": (bare, {})}
    piece = args.duration / args.slices
    for concurrency in args.concurrency:
        slices: dict[str, list[dict[str, Any]]] = {"apphub": [], "bare": []}
        log(f"GET {GET_PATH}, {concurrency} client(s): {args.slices} x ({args.warmup:g} s warm-up + {piece:g} s) "
            "on each server")
        for number in range(args.slices):
            for name in ("apphub", "bare") if number % 2 == 0 else ("bare", "apphub"):
                server, headers = targets[name]
                figures = measured_load(args.python, {
                    "port": server.port, "method": "GET", "path": GET_PATH, "headers": headers,
                    "concurrency": concurrency, "warmup": args.warmup, "duration": piece, "raw": True,
                }, client_cpus, server)
                slices[name].append(figures)
                log(f"  {number + 1}/{args.slices} {name:6} {figures['rps']:8.1f} rps, "
                    f"p50 {figures['latency_ms']['p50']} ms, p99 {figures['latency_ms']['p99']} ms, "
                    f"errors {figures['errors']}, server CPU {figures.get('server_cpu_us_per_request')} us/request, "
                    f"steal {figures.get('cpu_steal_pct')} %")
        pairs = [round(a["rps"] / b["rps"], 3) if b["rps"] else 0.0
                 for a, b in zip(slices["apphub"], slices["bare"], strict=True)]
        row: dict[str, Any] = {name: pooled(slices[name], args.duration) for name in ("apphub", "bare")}
        ratio = row["apphub"]["rps"] / row["bare"]["rps"] if row["bare"]["rps"] else 0.0
        row["ratio_rps_apphub_to_bare"] = round(ratio, 3)
        row["slices_ratio"] = pairs
        cpu_apphub, cpu_bare = row["apphub"]["server_cpu_us_per_request"], row["bare"]["server_cpu_us_per_request"]
        if cpu_apphub and cpu_bare:
            row["ratio_cpu_per_request_bare_to_apphub"] = round(cpu_bare / cpu_apphub, 3)
        row["aim_met"] = ratio >= GET_RATIO_AIM
        results[str(concurrency)] = row
        log(f"  => apphub/bare rps ratio {row['ratio_rps_apphub_to_bare']} (slices {pairs})")
    return results


def bench_wrk(args: argparse.Namespace, apphub: Server, bare: Server, key: str,
              client_cpus: set[int] | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for concurrency in args.concurrency:
        row: dict[str, Any] = {}
        for server, headers in ((apphub, {"x-api-key": key}), (bare, {})):
            log(f"wrk GET {GET_PATH} on {server.name}: {concurrency} connection(s), {args.duration:g} s")
            row[server.name] = run_wrk(server.url + GET_PATH, headers, concurrency, args.duration, client_cpus)
        if row["apphub"]["rps"] and row["bare"]["rps"]:
            row["ratio_rps_apphub_to_bare"] = round(row["apphub"]["rps"] / row["bare"]["rps"], 3)
        results[str(concurrency)] = row
    return results


def disk_floor(folder: Path, size: int, count: int) -> dict[str, Any]:
    """What the disk alone costs a durable replace, the way apphub writes (temporary file, write,
    fsync, rename over the file, fsync of the folder): the floor under any PUT on this machine now."""
    target = folder / "floor.ini"
    target.write_bytes(b"x" * size)
    latencies = []
    for number in range(count):
        started = time.perf_counter_ns()
        temporary = folder / f".floor.ini.{number}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, str(number).encode().ljust(size, b"x"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        latencies.append(time.perf_counter_ns() - started)
    target.unlink()
    return {"writes": count, "bytes": size, "latency_ms": loadgen.latency_summary(latencies)}


def bench_put(args: argparse.Namespace, apphub: Server, key: str, data: Path,
              client_cpus: set[int] | None) -> dict[str, Any]:
    path = f"/api/v1/settings/{args.put_section}"
    results: dict[str, Any] = {"path": path, "key": args.put_key}
    size = len((data / "config.ini").read_bytes())
    log(f"disk floor: {args.put_requests} durable replaces of a {size}-byte file")
    results["disk_floor_before"] = disk_floor(data.parent, size, args.put_requests)
    for mode, writers in (("sequential", 1), (f"writers_{args.put_writers}", args.put_writers)):
        value = args.put_value.replace("{tag}", f"{mode[0]}{secrets.token_hex(3)}")
        log(f"PUT {path} ({args.put_key}) {mode}: {args.put_warmup} warm-up + {args.put_requests} measured")
        results[mode] = measured_load(args.python, {
            "port": apphub.port, "method": "PUT", "path": path,
            "headers": {"x-api-key": key, "content-type": "application/json"},
            # json.dumps of the template keeps {seq} intact; the load generator fills it in.
            "body": json.dumps({args.put_key: value}),
            "concurrency": writers, "warmup_requests": args.put_warmup, "requests": args.put_requests,
            "body_must_not_contain": '"changed": []',
        }, client_cpus, apphub)
        figures = results[mode]
        log(f"  p50 {figures['latency_ms']['p50']} ms, p99 {figures['latency_ms']['p99']} ms, "
            f"max {figures['latency_ms']['max']} ms, errors {figures['errors']}")
    log("disk floor again")
    results["disk_floor_after"] = disk_floor(data.parent, size, args.put_requests)
    p99s = [results[mode]["latency_ms"]["p99"] for mode in ("sequential", f"writers_{args.put_writers}")]
    results["aim_p99_ms"] = PUT_P99_AIM_MS
    results["aim_met_sequential"] = p99s[0] < PUT_P99_AIM_MS
    results[f"aim_met_writers_{args.put_writers}"] = p99s[1] < PUT_P99_AIM_MS
    return results


def bench_put_against_baseline(args: argparse.Namespace, servers: dict[str, tuple[Server, str]],
                               client_cpus: set[int] | None) -> dict[str, Any]:
    """The sequential PUT of bench_put on this tree and on the baseline, in `baseline_slices`
    interleaved loads each (A B, B A, ...), pooled; this tree's p50 and p99 as ratios to the baseline's."""
    path = f"/api/v1/settings/{args.put_section}"
    per_slice = max(1, args.put_requests // args.baseline_slices)
    slices: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    log(f"PUT {path}: this tree vs the baseline, {args.baseline_slices} x {per_slice} PUTs each, interleaved")
    for number in range(args.baseline_slices):
        for name in ("current", "baseline") if number % 2 == 0 else ("baseline", "current"):
            server, key = servers[name]
            value = args.put_value.replace("{tag}", f"b{number}{name[0]}{secrets.token_hex(3)}")
            figures = measured_load(args.python, {
                "port": server.port, "method": "PUT", "path": path,
                "headers": {"x-api-key": key, "content-type": "application/json"},
                "body": json.dumps({args.put_key: value}),
                "concurrency": 1, "warmup_requests": 5, "requests": per_slice, "raw": True,
                "body_must_not_contain": '"changed": []',
            }, client_cpus, server)
            slices[name].append(figures)
            log(f"  {number + 1}/{args.baseline_slices} {name:8} p50 {figures['latency_ms']['p50']} ms, "
                f"p99 {figures['latency_ms']['p99']} ms, errors {figures['errors']}")
    result: dict[str, Any] = {}
    for name, loads in slices.items():
        latencies = [ns for figures in loads for ns in figures.pop("latencies_ns")]
        result[name] = {"requests": len(latencies), "latency_ms": loadgen.latency_summary(latencies),
                        "errors": sum(figures["errors"] for figures in loads),
                        "slices_p50_ms": [figures["latency_ms"]["p50"] for figures in loads]}
    for percentile in ("p50", "p99"):
        current, baseline = (result[name]["latency_ms"][percentile] for name in ("current", "baseline"))
        result[f"ratio_{percentile}_current_to_baseline"] = round(current / baseline, 3) if baseline else None
    return result


def start_baseline(args: argparse.Namespace, folder: Path, cpus: set[int] | None) -> tuple[Server, str, str]:
    """apphub at --baseline, serving a data folder it initialised itself; (server, admin key, commit)."""
    commit, env = export_baseline(args.baseline, folder)
    command = [str(args.python), "-c", APPHUB_MAIN, "--data-dir", str(folder / "baseline-data")]
    subprocess.run([*command, "init"], check=True, capture_output=True, env=env)
    key = (folder / "baseline-data" / ".apphub" / "admin.key").read_text().strip()
    port = free_port()
    server = start_server("baseline", [*command, "serve", "--port", str(port), "--log-level", "warning"], port,
                          folder, cpus, env)
    return server, key, commit


def run(args: argparse.Namespace) -> dict[str, Any]:
    server_cpus, client_cpus = cpu_sets(args.pin)
    folder = Path(tempfile.mkdtemp(prefix="apphub-bench-", dir=args.tmp))
    data = folder / "data"
    try:
        log(f"initialising {data}")
        subprocess.run([str(args.apphub), "--data-dir", str(data), "init"], check=True, capture_output=True)
        key = (data / ".apphub" / "admin.key").read_text().strip()
        auth = {"x-api-key": key}

        apphub_port, bare_port = free_port(), free_port()
        apphub = start_server("apphub", [str(args.apphub), "--data-dir", str(data), "serve", "--port",
                                         str(apphub_port), "--log-level", "warning"], apphub_port, folder, server_cpus)
        with running([apphub]) as servers:
            wait_ready(apphub, GET_PATH, auth)
            status, body = http_get(apphub.url + GET_PATH, auth)
            if status != 200:
                raise RuntimeError(f"apphub answered {status} to GET {GET_PATH}: {body[:300]!r}")
            body_file = folder / "settings.json"
            body_file.write_bytes(body)
            bare = start_server("bare", [str(args.python), str(HERE / "bare_app.py"), "--port", str(bare_port),
                                         "--body", str(body_file), "--log-level", "warning"],
                                bare_port, folder, server_cpus)
            servers.append(bare)
            wait_ready(bare, GET_PATH, {})
            bare_status, bare_body = http_get(bare.url + GET_PATH, {})
            same_body = bare_status == 200 and json.loads(bare_body) == json.loads(body)

            result: dict[str, Any] = {
                "benchmark": "apphub settings API",
                "machine": machine(args.python, folder),
                "settings": {
                    "duration_s": args.duration, "warmup_s": args.warmup, "concurrency": args.concurrency,
                    "slices": args.slices,
                    "put_requests": args.put_requests, "put_warmup": args.put_warmup,
                    "put_writers": args.put_writers, "pinned": args.pin,
                    "server_cpus": sorted(server_cpus) if server_cpus else None,
                    "client_cpus": sorted(client_cpus) if client_cpus else None,
                    "apphub_command": "apphub --data-dir TMP serve --port P --log-level warning",
                    "bare_command": "python benchmarks/bare_app.py --port P --body TMP/settings.json",
                    "body_bytes": len(body), "bare_body_equal": same_body,
                },
            }
            result["get"] = bench_get(args, apphub, bare, key, client_cpus)
            if args.wrk and shutil.which("wrk"):
                result["get_wrk_cross_check"] = bench_wrk(args, apphub, bare, key, client_cpus)
            if args.baseline is not None:  # first: both data folders as new, their audit logs empty
                baseline, baseline_key, commit = start_baseline(args, folder, server_cpus)
                servers.append(baseline)
                wait_ready(baseline, GET_PATH, {"x-api-key": baseline_key})
                result["put_vs_baseline"] = {"baseline_ref": args.baseline, "baseline_commit": commit,
                                             **bench_put_against_baseline(args, {"current": (apphub, key),
                                                                                 "baseline": (baseline, baseline_key)},
                                                                          client_cpus)}
            before = audit_events(data / ".apphub" / "apphub.db", "admin")
            result["put"] = put = bench_put(args, apphub, key, data, client_cpus)
            acknowledged = sum(put[mode]["statuses_all"].get("200", 0)
                               for mode in ("sequential", f"writers_{args.put_writers}"))
            recorded = audit_events(data / ".apphub" / "apphub.db", "admin") - before
            put["audit"] = {"acknowledged_puts": acknowledged, "audit_events": recorded,
                            "match": acknowledged == recorded}
        for server in (apphub, bare):
            # uvicorn re-raises the SIGTERM it handled, so -15 is a clean stop.
            if server.process.returncode not in (0, -signal.SIGTERM, None):
                log(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
    finally:
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    writers = f"writers_{args.put_writers}"
    loads = [row[name] for row in result["get"].values() for name in ("apphub", "bare")]
    loads += [put["sequential"], put[writers]]
    versus = result.get("put_vs_baseline")
    if versus is not None:
        loads += [versus["current"], versus["baseline"]]
    errors = sum(load["errors"] for load in loads)
    problems = []
    if errors:
        problems.append(f"{errors} request(s) failed; see error_samples")
    wrk_failures = [f"{name} at {c}: {row[name]['non_2xx']} non-2xx, socket errors {row[name]['socket_errors']}"
                    for c, row in result.get("get_wrk_cross_check", {}).items() for name in ("apphub", "bare")
                    if row[name]["non_2xx"] or row[name]["socket_errors"]]
    if wrk_failures:
        problems.append("wrk saw failures: " + "; ".join(wrk_failures))
    if not same_body:
        problems.append("the bare route's body differs from apphub's")
    if not put["audit"]["match"]:
        problems.append("the audit log does not hold one event per acknowledged PUT")
    warnings = []
    steal = [load.get("cpu_steal_pct_mean", load.get("cpu_steal_pct")) or 0.0 for load in loads]
    if max(steal) > 5:
        warnings.append(f"the hypervisor took up to {max(steal)} % of the CPU time (steal): figures are noisy")
    busy_client = max(load.get("client_cpu_pct_max", load.get("client_cpu_pct")) or 0.0 for load in loads)
    if busy_client > 90:
        warnings.append(f"the load generator was {busy_client} % busy: it may have set the pace")
    result["summary"] = {
        "get_rps": {c: {"apphub": row["apphub"]["rps"], "bare": row["bare"]["rps"]}
                    for c, row in result["get"].items()},
        "get_p99_ms": {c: {"apphub": row["apphub"]["latency_ms"]["p99"], "bare": row["bare"]["latency_ms"]["p99"]}
                       for c, row in result["get"].items()},
        "get_ratio": {c: row["ratio_rps_apphub_to_bare"] for c, row in result["get"].items()},
        "get_cpu_ratio": {c: row.get("ratio_cpu_per_request_bare_to_apphub") for c, row in result["get"].items()},
        "get_aim_met": all(row["aim_met"] for row in result["get"].values()),
        "put_p50_ms": {mode: put[mode]["latency_ms"]["p50"] for mode in ("sequential", writers)},
        "put_p99_ms": {mode: put[mode]["latency_ms"]["p99"] for mode in ("sequential", writers)},
        "disk_floor_p99_ms": [put[when]["latency_ms"]["p99"] for when in ("disk_floor_before", "disk_floor_after")],
        "put_aim_met_sequential": put["aim_met_sequential"],
        f"put_aim_met_{writers}": put[f"aim_met_{writers}"],
        "put_vs_baseline": None if versus is None else {
            "baseline_commit": versus["baseline_commit"],
            "p50_ms": {name: versus[name]["latency_ms"]["p50"] for name in ("current", "baseline")},
            "p99_ms": {name: versus[name]["latency_ms"]["p99"] for name in ("current", "baseline")},
            "ratio_p50": versus["ratio_p50_current_to_baseline"],
            "ratio_p99": versus["ratio_p99_current_to_baseline"],
        },
        "errors": errors,
        "valid": not problems,
        "problems": problems,
        "warnings": warnings,
    }
    return result


def report(result: dict[str, Any], output: Path | None, log: Callable[[str], None]) -> int:
    """Every benchmark's end: the JSON on stdout (and in `output`), exit 1 when the run is not valid."""
    document = json.dumps(result, indent=2)
    print(document)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(document + "\n")
    if not result["summary"]["valid"]:
        log("INVALID RUN: " + "; ".join(result["summary"]["problems"]))
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    return report(result, args.output, log)


if __name__ == "__main__":
    sys.exit(main())
