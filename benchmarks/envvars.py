"""The figures of issue 10 (environment variables): one JSON document on stdout, progress on stderr.

    .venv/bin/python benchmarks/envvars.py [--duration 10] [--changes 20] [--warmup 2] [--skip-containers]
        [--output FILE]

Both parts are ratios measured in the same run, against something measured in the same minutes,
because this machine is shared and its figures move by a third between runs.

1. `get`: `GET /api/v1/env` against `GET /api/v1/settings` of the same `apphub serve` (3 services
   taking an environment, each a `.env` file and a mapped `NAME_URL: ${gitea.base_url}`; 21
   variables put in env.ini through the API, 4 of them secret), at 1 and 32 keep-alive clients
   (benchmarks/loadgen.py), in interleaved slices (env, settings, settings, env, ...). The aim:
   env rps >= 0.9 x settings rps.
2. `change`: one env change to a running container, from the request to the new container
   healthy. Podman's API socket started here (tests/containers/conftest.py's set-up), a busybox
   container on the host network serving `$MESSAGE`. apphub: `PUT /api/v1/env/app/MESSAGE?wait=true`
   (answers once the health gate passed). The floor: the same change by hand through the same
   socket with docker's low-level APIClient (inspect, stop, remove, create, start, then polling
   the page until it serves the new value). Interleaved (apphub, floor, floor, apphub, ...) after
   warm-ups. The aim: apphub's p50 and p95 at most 1.2 x the floor's. Then one more change of each
   through a counting proxy of the socket: the engine calls each makes.
Everything started here (containers, the Podman service, apphub) is removed or stopped at the end.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.envvars.store import EnvValue
from apphub.paths import DataDir

try:
    from benchmarks import api_settings
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import api_settings  # type: ignore[no-redef, import-not-found, unused-ignore]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ACTOR = Actor("bench", "bench")
ENV_PATH = "/api/v1/env"
SETTINGS_PATH = "/api/v1/settings"
GET_RATIO_AIM = 0.9
CHANGE_RATIO_AIM = 1.2
SERVICES = ("web", "worker", "mailer")

# As tests/containers/conftest.py (copied: its helpers fail through pytest.fail, outside pytest too).
IMAGE = "localhost/apphub-test-busybox:1"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "sleep", "httpd", "env", "cat", "echo", "kill", "mkdir", "date", "tar")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""
# A shell as PID 1 ignores SIGTERM unless it traps it: without the trap every stop waits out the grace.
EXIT_ON_TERM = "trap 'exit 0' TERM"


def log(message: str) -> None:
    print(f"[envvars] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="GET: seconds measured per endpoint and concurrency (default 10)")
    parser.add_argument("--get-warmup", type=float, default=1.0, help="GET: seconds of warm-up before each slice")
    parser.add_argument("--slices", type=int, default=5, help="GET: loads per endpoint, interleaved (default 5)")
    parser.add_argument("--concurrency", default="1,32", help="GET: comma-separated client counts (default 1,32)")
    parser.add_argument("--changes", type=int, default=20, help="container: measured changes of each (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="container: unmeasured changes of each first (default 2)")
    parser.add_argument("--grace", type=int, default=5, help="container: seconds of SIGTERM before SIGKILL (both)")
    parser.add_argument("--interval", type=float, default=0.05, help="container: health poll interval (both)")
    parser.add_argument("--skip-containers", action="store_true", help="only the GET part (no Podman here)")
    parser.add_argument("--engine-calls", action=argparse.BooleanOptionalAction, default=True,
                        help="count the engine calls of one more change of each through a proxy (default: yes)")
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python",
                        help="interpreter of the load generator")
    parser.add_argument("--apphub", type=Path, default=ROOT / ".venv" / "bin" / "apphub")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (data and logs)")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON document to this file")
    args = parser.parse_args(argv)
    args.concurrency = [int(part) for part in args.concurrency.split(",") if part.strip()]
    if args.duration <= 0 or min(args.slices, args.changes) < 1 or args.warmup < 0 or args.interval <= 0:
        parser.error("durations and counts must be positive")
    return args


def summary_ms(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def at(fraction: float) -> float:  # nearest rank, as benchmarks/loadgen.py
        return round(ordered[min(len(ordered), max(1, -(-int(fraction * 1000) * len(ordered) // 1000))) - 1], 1)

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "mean": round(sum(ordered) / len(ordered), 1),
            "min": round(ordered[0], 1), "max": round(ordered[-1], 1)} if ordered else {"n": 0}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def start_apphub(args: argparse.Namespace, data: Path, folder: Path, name: str) -> api_settings.Server:
    port = api_settings.free_port()
    return api_settings.start_server(name, [str(args.apphub), "--data-dir", str(data), "serve", "--port", str(port),
                                            "--log-level", "warning"], port, folder, None)


def init_data(args: argparse.Namespace, data: Path, sync: dict[str, Any], manifest: str) -> DataDir:
    subprocess.run([str(args.apphub), "--data-dir", str(data), "init"], check=True, capture_output=True)
    made = DataDir(data)
    core = Core(made)
    try:
        core.system.update({"sync": sync}, ACTOR)
    finally:
        core.close()
    (data / "services.yaml").write_text(manifest)
    return made


# -- 1. GET /api/v1/env against GET /api/v1/settings -----------------------------------------------


GET_MANIFEST = "services:\n" + "".join(
    f"  {name}:\n    env_file: {{root}}/{name}/.env\n    env:\n      {name.upper()}_URL: \"${{{{gitea.base_url}}}}\"\n"
    for name in SERVICES)
GET_VARIABLES: dict[str, dict[str, Any]] = {
    "global": {"TZ": "Europe/Berlin", "LANG": "en_US.UTF-8", "LOG_LEVEL": "info", "SMTP_HOST": "smtp.example.com",
               "SMTP_PORT": "587", "SMTP_PASSWORD": {"value": "smtp-s3cr3t", "secret": True}},
    **{name: {f"{name.upper()}_WORKERS": "4", f"{name.upper()}_TIMEOUT": "30", f"{name.upper()}_FEATURE_X": "on",
              f"{name.upper()}_QUEUE": f"{name}-queue", f"{name.upper()}_TOKEN": {"value": f"{name}-t0ken",
                                                                                  "secret": True}}
       for name in SERVICES},
}


def bench_get(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    root = folder / "get-srv"
    root.mkdir()
    data = init_data(args, folder / "get-data", {"roots": [str(root)], "debounce_ms": 20, "drift_interval_s": 0},
                     GET_MANIFEST.format(root=root))
    key = data.admin_key.read_text().strip()
    headers = {"x-api-key": key}
    server = start_apphub(args, data.root, folder, "apphub-get")
    with api_settings.running([server]):
        api_settings.wait_ready(server, ENV_PATH, headers)
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as api:
            for scope, values in GET_VARIABLES.items():
                answer = api.put(f"{ENV_PATH}/{scope}", json=values, params={"wait": "true"})
                if answer.status_code != 200:
                    raise RuntimeError(f"PUT {ENV_PATH}/{scope} answered {answer.status_code}: {answer.text[:300]}")
            env_body, settings_body = api.get(ENV_PATH), api.get(SETTINGS_PATH)
        listed = env_body.json()["scopes"]
        result: dict[str, Any] = {
            "services": len(SERVICES), "variables_in_env_ini": sum(len(v) for v in GET_VARIABLES.values()),
            "secret_variables": sum(isinstance(v, dict) for vs in GET_VARIABLES.values() for v in vs.values()),
            "scopes_listed": sorted(listed), "variables_listed": sum(len(s["variables"]) for s in listed.values()),
            "body_bytes": {"env": len(env_body.content), "settings": len(settings_body.content)},
        }
        targets = {"env": ENV_PATH, "settings": SETTINGS_PATH}
        piece = args.duration / args.slices
        for concurrency in args.concurrency:
            slices: dict[str, list[dict[str, Any]]] = {"env": [], "settings": []}
            log(f"GET, {concurrency} client(s): {args.slices} x ({args.get_warmup:g} s warm-up + {piece:g} s) each")
            for number in range(args.slices):
                for name in ("env", "settings") if number % 2 == 0 else ("settings", "env"):
                    figures = api_settings.measured_load(args.python, {
                        "port": server.port, "method": "GET", "path": targets[name], "headers": headers,
                        "concurrency": concurrency, "warmup": args.get_warmup, "duration": piece, "raw": True,
                    }, None, server)
                    slices[name].append(figures)
                    log(f"  {number + 1}/{args.slices} {name:8} {figures['rps']:8.1f} rps, p50 "
                        f"{figures['latency_ms']['p50']} ms, p99 {figures['latency_ms']['p99']} ms, "
                        f"errors {figures['errors']}")
            pairs = [ratio(a["rps"], b["rps"]) for a, b in zip(slices["env"], slices["settings"], strict=True)]
            row: dict[str, Any] = {name: api_settings.pooled(slices[name], args.duration) for name in slices}
            row["ratio_rps_env_to_settings"] = ratio(row["env"]["rps"], row["settings"]["rps"])
            row["slices_ratio"] = pairs
            row["aim_met"] = (row["ratio_rps_env_to_settings"] or 0.0) >= GET_RATIO_AIM
            result[str(concurrency)] = row
            log(f"  => env/settings rps ratio {row['ratio_rps_env_to_settings']} (slices {pairs})")
    return result


# -- 2. the container: Podman, the floor, apphub ---------------------------------------------------


@dataclass
class Podman:
    """`podman system service` on a socket of ours, with our containers.conf."""

    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.folder / "podman.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def environment(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.folder / "containers.conf")}

    def start(self, wait: float = 20.0) -> None:
        (self.folder / "containers.conf").write_text(CONTAINERS_CONF)
        with (self.folder / "podman-service.log").open("ab") as sink:
            self.process = subprocess.Popen(["podman", "system", "service", "--time=0", self.url],
                                            env=self.environment, stdin=subprocess.DEVNULL, stdout=sink,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = (self.folder / "podman-service.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"podman system service did not answer on {self.url}: {tail}")
            time.sleep(0.05)

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        api = docker.APIClient(base_url=self.url, version="1.40", timeout=2)
        try:
            return bool(api.ping())
        except (docker.errors.DockerException, OSError):
            return False
        finally:
            api.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def cli(self, *words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *words], env=self.environment, capture_output=True, text=True,
                              timeout=120, check=False)

    def ensure_image(self) -> str:
        """The test image (/bin/busybox and its applet links), imported if missing."""
        if self.cli("image", "exists", IMAGE).returncode == 0:
            return "present"
        archive = self.folder / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            for name, mode in (("bin", 0o755), ("tmp", 0o1777), ("www", 0o755)):
                entry = tarfile.TarInfo(name)
                entry.type, entry.mode = tarfile.DIRTYPE, mode
                tar.addfile(entry)
            tar.add(BUSYBOX, arcname="bin/busybox")
            for applet in APPLETS:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
                tar.addfile(link)
        done = self.cli("import", str(archive), IMAGE)
        if done.returncode != 0:
            raise RuntimeError(f"podman import {IMAGE} failed ({done.returncode}): {done.stderr.strip()}")
        return "imported"


class CountingProxy:
    """A unix socket in front of the engine's that records each HTTP request passing through it:
    which call, when it was sent, and how long until the engine's answer began."""

    _REQUEST = re.compile(rb"(GET|HEAD|POST|PUT|DELETE) (/[^ ]*) HTTP/1\.[01]\r\n")
    _RESPONSE = re.compile(rb"HTTP/1\.[01] \d{3} ")

    def __init__(self, target: Path, path: Path, names: dict[str, str]) -> None:
        self.target, self.path, self._names = target, path, names
        self._calls: list[dict[str, Any]] = []
        self._since = time.perf_counter()
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def take(self) -> list[dict[str, Any]]:
        """The calls since the last take: call, sent at (ms after that take), ms to the answer's status line."""
        with self._lock:
            calls, since = self._calls, self._since
            self._calls, self._since = [], time.perf_counter()
        return [{"call": c["call"], "at_ms": round((c["sent"] - since) * 1000, 1),
                 "ms": None if c["answered"] is None else round((c["answered"] - c["sent"]) * 1000, 1)}
                for c in calls]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(str(self.target))
            pending: collections.deque[dict[str, Any]] = collections.deque()  # this connection's requests
            threading.Thread(target=self._pump, args=(client, upstream, pending, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, pending, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, pending: collections.deque[dict[str, Any]],
              requests: bool) -> None:
        tail = b""
        try:
            while chunk := source.recv(65536):
                now = time.perf_counter()
                window = tail + chunk  # a request or status line may straddle two reads
                for found in (self._REQUEST if requests else self._RESPONSE).finditer(window):
                    if found.end() <= len(tail):
                        continue
                    if requests:
                        pending.append(self._record(found.group(1).decode(), found.group(2).decode(), now))
                    elif pending:
                        pending.popleft()["answered"] = now
                tail = window[-512:]
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def _record(self, method: str, path: str, sent: float) -> dict[str, Any]:
        path = re.sub(r"^/v\d+\.\d+(\.\d+)?/", "/", path.split("?", 1)[0])
        path = re.sub(r"[0-9a-f]{64}", "{id}", path)
        for name, shown in self._names.items():
            path = path.replace(name, shown)
        call = {"call": f"{method} {path}", "sent": sent, "answered": None}
        with self._lock:
            self._calls.append(call)
        return call


def service_script(port: int) -> str:
    return (f"{EXIT_ON_TERM}; mkdir -p /www; echo \"$MESSAGE\" > /www/index.html;"
            f" httpd -f -p 127.0.0.1:{port} -h /www & wait")


def page(http: httpx.Client, url: str) -> str | None:
    try:
        answer = http.get(url, timeout=2.0)
    except httpx.HTTPError:
        return None
    return answer.text.strip() if answer.status_code == 200 else None


def floor_change(api: Any, name: str, value: str, url: str, grace: int, interval: float, http: httpx.Client,
                 timeout: float = 30.0) -> dict[str, float]:
    """The change by hand, as a careful operator does it: a graceful stop (SIGTERM, `grace` s) rather
    than a forced removal (SIGKILL, no shutdown), then the same container again with the new value,
    then the page polled until it serves it. Stage times in ms; raises if the page never does."""
    marks = [("start", time.perf_counter())]
    attrs = api.inspect_container(name)
    marks.append(("inspect", time.perf_counter()))
    api.stop(name, timeout=grace)
    marks.append(("stop", time.perf_counter()))
    api.remove_container(name)
    marks.append(("remove", time.perf_counter()))
    config = attrs["Config"]
    # Podman adds HOSTNAME (the engine's, with host networking): the engine sets it again (apphub drops it too).
    env = [entry for entry in config.get("Env") or [] if not entry.startswith(("MESSAGE=", "HOSTNAME="))]
    created = api.create_container(config["Image"], command=config["Cmd"], name=name, labels=config.get("Labels"),
                                   environment=[*env, f"MESSAGE={value}"],
                                   host_config=api.create_host_config(network_mode="host"))
    marks.append(("create", time.perf_counter()))
    api.start(created["Id"])
    marks.append(("start_call", time.perf_counter()))
    deadline = time.perf_counter() + timeout
    while page(http, url) != value:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"floor: {url} did not serve the new value within {timeout:g} s")
        time.sleep(interval)
    marks.append(("healthy", time.perf_counter()))
    stages = {stage: round((marks[i][1] - marks[i - 1][1]) * 1000, 3) for i, (stage, _) in enumerate(marks) if i}
    stages["total"] = round((marks[-1][1] - marks[0][1]) * 1000, 3)
    return stages


def apphub_change(api: httpx.Client, value: str, url: str, http: httpx.Client) -> tuple[dict[str, Any], str | None]:
    """One PUT ?wait=true; (figures, problem or None)."""
    started = time.perf_counter()
    answer = api.put(f"{ENV_PATH}/app/MESSAGE", params={"wait": "true"}, json={"value": value})
    total = round((time.perf_counter() - started) * 1000, 3)
    if answer.status_code != 200:
        return {"total": total}, f"PUT answered {answer.status_code}: {answer.text[:300]}"
    sync = answer.json().get("sync") or {}
    outcome = (sync.get("services") or [{}])[0]
    timings = dict(outcome.get("timings_ms") or {})
    figures = {"total": total, "result": outcome.get("result"), "action": outcome.get("action"),
               "timings_ms": timings}
    if not sync.get("done") or outcome.get("result") != "applied":
        return figures, f"the change was not applied: {json.dumps(sync)[:400]}"
    served = page(http, url)
    if served != value:
        return figures, f"after the answer the page served {served!r}, not the new value"
    return figures, None


def container_env(api: Any, name: str) -> dict[str, str]:
    with contextlib.suppress(docker.errors.NotFound):
        return dict(entry.split("=", 1) for entry in api.inspect_container(name)["Config"]["Env"] or [] if "=" in entry)
    return {}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def app_settled(api: httpx.Client, engine: Any, name: str, value: str) -> bool:
    answer = api.get("/api/v1/sync/status")
    states = {s["service"]: s for s in answer.json().get("services", [])} if answer.status_code == 200 else {}
    aside = engine.containers(all=True, filters={"name": f"{name}-apphub-"})
    return states.get("app", {}).get("state") == "applied" and container_env(engine, name).get("MESSAGE") == value \
        and not aside


@dataclass
class ContainerBench:
    args: argparse.Namespace
    folder: Path
    podman: Podman
    name: str = field(default_factory=lambda: f"apphub-bench-env-{secrets.token_hex(3)}")
    port: int = field(default_factory=api_settings.free_port)
    servers: list[api_settings.Server] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/index.html"

    def manifest(self) -> str:
        return (f"services:\n  app:\n    inject: {{container: {self.name}, grace: {self.args.grace}, timeout: 30}}\n"
                f"    health: {{container: {self.name}, http: \"{self.url}\", timeout: 20, "
                f"interval: {self.args.interval}}}\n")

    def run(self) -> dict[str, Any]:
        args = self.args
        image = self.podman.ensure_image()
        engine = docker.APIClient(base_url=self.podman.url, version="auto", timeout=60)
        http = httpx.Client()
        try:
            engine.start(engine.create_container(
                IMAGE, command=["sh", "-c", service_script(self.port)], name=self.name,
                environment={"MESSAGE": "v0"}, host_config=engine.create_host_config(network_mode="host"))["Id"])
            wait_for(lambda: page(http, self.url) == "v0", f"{self.name} serving its page", 20)
            root = self.folder / "change-srv"
            root.mkdir()
            data = init_data(args, self.folder / "change-data",
                             {"roots": [str(root)], "docker_url": self.podman.url, "debounce_ms": 20,
                              "drift_interval_s": 0}, self.manifest())
            core = Core(data)
            try:  # env.ini as the container runs: apphub's first sync recreates nothing
                core.envvars.set("app", {"MESSAGE": EnvValue("v0")}, ACTOR)
            finally:
                core.close()
            key = data.admin_key.read_text().strip()
            result: dict[str, Any] = {
                "image": IMAGE, "image_was": image, "container": self.name, "url": self.url,
                "manifest": self.manifest(), "engine_api_version": engine.api_version,
                "podman_version": (self.podman.cli("--version").stdout or "").strip(),
            }
            result.update(self.measure(data, key, engine, http))
            if args.engine_calls:
                result["engine_calls"] = self.count_calls(data, key, http)
            leftovers = [n for c in engine.containers(all=True, filters={"name": self.name}) for n in c["Names"]]
            result["containers_at_end"] = sorted(n.lstrip("/") for n in leftovers)
            return result
        finally:
            for server in self.servers:
                api_settings.stop(server)
            for suffix in ("", "-apphub-old", "-apphub-discard"):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    engine.remove_container(self.name + suffix, force=True)
            engine.close()
            http.close()

    def serve(self, data: DataDir, key: str, value: str, engine: Any, label: str) -> tuple[api_settings.Server,
                                                                                          httpx.Client]:
        server = start_apphub(self.args, data.root, self.folder, label)
        self.servers.append(server)
        api_settings.wait_ready(server, ENV_PATH, {"x-api-key": key})
        api = httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=90)
        wait_for(lambda: app_settled(api, engine, self.name, value), "apphub's first sync of app", 60)
        return server, api

    def measure(self, data: DataDir, key: str, engine: Any, http: httpx.Client) -> dict[str, Any]:
        args = self.args
        _, api = self.serve(data, key, "v0", engine, "apphub-change")
        samples: dict[str, list[dict[str, Any]]] = {"apphub": [], "floor": []}
        problems: list[str] = []
        total = args.warmup + args.changes
        log(f"container change: {args.warmup} warm-up + {args.changes} measured changes of each, interleaved")
        try:
            for number in range(total):
                for arm in ("apphub", "floor") if number % 2 == 0 else ("floor", "apphub"):
                    value = f"{arm}-{number}-{secrets.token_hex(4)}"
                    if arm == "apphub":
                        figures, problem = apphub_change(api, value, self.url, http)
                    else:
                        try:
                            figures, problem = floor_change(engine, self.name, value, self.url, args.grace,
                                                            args.interval, http), None
                        except (RuntimeError, docker.errors.APIError) as exc:
                            figures, problem = {}, str(exc)
                    figures["warmup"] = number < args.warmup
                    samples[arm].append(figures)
                    if problem is not None:
                        problems.append(f"{arm} change {number}: {problem}")
                        log(f"  {arm}: {problem}")
                    else:
                        log(f"  {number + 1}/{total} {arm:6} {figures['total']:8.1f} ms"
                            + (" (warm-up)" if figures["warmup"] else ""))
        finally:
            api.close()
        measured = {arm: [s for s in found if not s["warmup"]] for arm, found in samples.items()}
        result: dict[str, Any] = {arm: {"latency_ms": summary_ms([s["total"] for s in found if "total" in s])}
                                  for arm, found in measured.items()}
        for percentile in ("p50", "p95"):
            result[f"ratio_{percentile}"] = ratio(result["apphub"]["latency_ms"].get(percentile),
                                                  result["floor"]["latency_ms"].get(percentile))
        result["ratio_mean"] = ratio(result["apphub"]["latency_ms"].get("mean"),
                                     result["floor"]["latency_ms"].get("mean"))
        result["aim_met"] = all((result[f"ratio_{p}"] or 99) <= CHANGE_RATIO_AIM for p in ("p50", "p95"))
        breakdown: dict[str, list[float]] = {"reload": [], "healthy": [], "outside_reload_and_gate": []}
        for sample in measured["apphub"]:
            timings = sample.get("timings_ms") or {}
            if "reload" in timings and "healthy" in timings:
                breakdown["reload"].append(timings["reload"])
                breakdown["healthy"].append(timings["healthy"])
                breakdown["outside_reload_and_gate"].append(sample["total"] - timings["reload"] - timings["healthy"])
        result["apphub"]["stages_ms"] = {stage: summary_ms(values) for stage, values in breakdown.items()}
        floor_stages = ("inspect", "stop", "remove", "create", "start_call", "healthy")
        result["floor"]["stages_ms"] = {stage: summary_ms([s[stage] for s in measured["floor"] if stage in s])
                                        for stage in floor_stages}
        result["samples"] = samples
        result["problems"] = problems
        return result

    def count_calls(self, data: DataDir, key: str, http: httpx.Client) -> dict[str, Any]:
        """One more change of each, unmeasured, through a counting proxy of the engine's socket:
        apphub restarted on the proxy's socket for it."""
        for server in self.servers:
            api_settings.stop(server)
        proxy = CountingProxy(self.podman.socket, self.folder / "proxy.sock",
                              {f"{self.name}-apphub-old": "{name}-apphub-old", self.name: "{name}"})
        engine = docker.APIClient(base_url=self.podman.url, version="auto", timeout=60)
        counted = docker.APIClient(base_url=proxy.url, version=engine.api_version, timeout=60)
        try:
            current = container_env(engine, self.name).get("MESSAGE", "")
            core = Core(data)
            try:
                core.system.update({"sync": {"docker_url": proxy.url}}, ACTOR)
                core.envvars.set("app", {"MESSAGE": EnvValue(current)}, ACTOR)  # nothing to recreate at start
            finally:
                core.close()
            log("engine calls: one more change of each through a counting proxy")
            _, api = self.serve(data, key, current, engine, "apphub-counted")
            try:
                proxy.take()
                _, problem = apphub_change(api, f"counted-apphub-{secrets.token_hex(4)}", self.url, http)
                apphub_calls = proxy.take()
                floor_change(counted, self.name, f"counted-floor-{secrets.token_hex(4)}", self.url, self.args.grace,
                             self.args.interval, http)
                floor_calls = proxy.take()
            finally:
                api.close()
        finally:
            counted.close()
            engine.close()
            proxy.close()
        if problem is not None:
            raise RuntimeError(f"the counted apphub change: {problem}")

        def tally(calls: list[dict[str, Any]]) -> dict[str, Any]:
            counts = collections.Counter(call["call"] for call in calls)
            return {"total": len(calls), "engine_ms": round(sum(call["ms"] or 0.0 for call in calls), 1),
                    "by_call": dict(counts.most_common()), "calls": calls}

        return {"apphub": tally(apphub_calls), "floor": tally(floor_calls),
                "note": "one more change of each, not among the measured ones (the proxy adds a hop to every call); "
                        "`calls` in order: sent at_ms after the change began, ms until the engine's answer began; "
                        "apphub's include its health gate's container probe (an inspect per round) and the removal "
                        "of the old container after the gate"}


def bench_change(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if not BUSYBOX.is_file():
        missing.append(str(BUSYBOX))
    if missing:
        raise RuntimeError(f"{', '.join(missing)} missing (apt-get install podman runc busybox-static), "
                           "or pass --skip-containers")
    podman = Podman(folder / "podman")
    podman.folder.mkdir()
    try:
        log(f"starting podman system service on {podman.url}")
        podman.start()
        return ContainerBench(args, folder, podman).run()
    finally:
        podman.stop()


# -- the run ---------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="apphub-bench-env-", dir=args.tmp))
    result: dict[str, Any] = {"benchmark": "apphub environment variables (issue 10)"}
    problems: list[str] = []
    try:
        result["machine"] = api_settings.machine(args.python, folder)
        result["settings"] = {
            "duration_s": args.duration, "get_warmup_s": args.get_warmup, "slices": args.slices,
            "concurrency": args.concurrency, "changes": args.changes, "warmup_changes": args.warmup,
            "grace_s": args.grace, "health_interval_s": args.interval, "skip_containers": args.skip_containers,
            "apphub_command": "apphub --data-dir TMP serve --port P --log-level warning",
        }
        result["get"] = bench_get(args, folder)
        if args.skip_containers:
            result["change"] = {"skipped": "--skip-containers: the container change was not measured"}
        else:
            try:
                result["change"] = bench_change(args, folder)
            except (RuntimeError, docker.errors.DockerException, httpx.HTTPError, OSError) as exc:
                result["change"] = {"failed": str(exc)}
                problems.append(f"the container change could not be measured: {exc}")
    finally:
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    result["elapsed_s"] = round(time.monotonic() - began, 1)
    result["summary"] = summarise(result, problems)
    return result


def summarise(result: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    get = {c: row for c, row in result["get"].items() if c.isdigit()}
    errors = sum(row[name]["errors"] for row in get.values() for name in ("env", "settings"))
    if errors:
        problems.append(f"{errors} GET request(s) failed; see get.*.error_samples")
    non_200 = {f"{c} {name}": s for c, row in get.items() for name in ("env", "settings")
               for s in row[name]["statuses_all"] if s != "200"}
    if non_200:
        problems.append(f"GET answers other than 200: {sorted(non_200)}")
    change = result.get("change", {})
    problems += change.get("problems", [])
    summary: dict[str, Any] = {
        "get_rps": {c: {"env": row["env"]["rps"], "settings": row["settings"]["rps"]} for c, row in get.items()},
        "get_p99_ms": {c: {"env": row["env"]["latency_ms"]["p99"], "settings": row["settings"]["latency_ms"]["p99"]}
                       for c, row in get.items()},
        "ratio_rps_env_to_settings": {c: row["ratio_rps_env_to_settings"] for c, row in get.items()},
        "get_aim": f"ratio >= {GET_RATIO_AIM}",
        "get_aim_met": all(row["aim_met"] for row in get.values()),
    }
    if "apphub" in change:
        summary["change"] = {
            "apphub_ms": {k: change["apphub"]["latency_ms"].get(k) for k in ("p50", "p95", "mean")},
            "floor_ms": {k: change["floor"]["latency_ms"].get(k) for k in ("p50", "p95", "mean")},
            "ratio_p50": change["ratio_p50"], "ratio_p95": change["ratio_p95"],
            "aim": f"ratios <= {CHANGE_RATIO_AIM}", "aim_met": change["aim_met"],
            "apphub_stages_p50_ms": {k: v.get("p50") for k, v in change["apphub"]["stages_ms"].items()},
            "floor_stages_p50_ms": {k: v.get("p50") for k, v in change["floor"]["stages_ms"].items()},
            "engine_calls": {arm: change["engine_calls"][arm]["total"] for arm in ("apphub", "floor")}
            if "engine_calls" in change else None,
        }
        if change.get("containers_at_end") != [change["container"]]:
            problems.append(f"containers left at the end of the changes: {change.get('containers_at_end')}")
    else:
        summary["change"] = change.get("skipped") or change.get("failed")
    summary.update({"containers_measured": "apphub" in change, "errors": errors, "valid": not problems,
                    "problems": problems, "elapsed_s": result["elapsed_s"]})
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM as an exception, so that the clean-up in the finally blocks runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    return api_settings.report(result, args.output, log)


if __name__ == "__main__":
    sys.exit(main())
