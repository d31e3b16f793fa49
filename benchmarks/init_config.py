"""What init-config.sh adds to a container's start: one JSON document on stdout, progress on stderr.

    .venv/bin/python benchmarks/init_config.py [--runs 10] [--warmup 2] [--output FILE]

The same busybox container (Podman's API socket started here, tests/containers/conftest.py's
set-up; host network; the script, a key and a folder mounted) is started two ways, interleaved
(with, without, without, with, ...) after unmeasured warm-ups:

- `without`: its entrypoint is the original one, `sh -c 'echo > /out/started; ...'`;
- `with`: its entrypoint is `/apphub/init-config.sh` and then the same original one, against a
  running `apphub serve` whose manifest gives the service two files (one holding a secret of
  config.ini, mode 0600) placed by `container_path:` and two variables, and a dependency whose
  `tcp:` probe passes (a listener here), so the script makes its three requests (healthz,
  dependencies, config) and writes both files.

A sample is the time from the engine's create call to the marker file the original entrypoint
writes first (polled every 2 ms on the host): the container started and its original entrypoint
running. The aim: the p50 overhead (with minus without) under 300 ms. Each `with` run is checked
afterwards: the files and a variable reached the original entrypoint, the exit status is 0.
Everything started here (containers, the Podman service, apphub, the listener) is removed or
stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx

try:
    from benchmarks import api_settings, envvars
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import api_settings  # type: ignore[no-redef, import-not-found, unused-ignore]
    import envvars  # type: ignore[no-redef, import-not-found, unused-ignore]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPT = ROOT / "src" / "apphub" / "services" / "init-config.sh"
OVERHEAD_AIM_MS = 300.0
# The original entrypoint: the marker first (what is timed), then what the check reads.
ORIGINAL = ("echo started > /out/started; cat /etc/app/app.ini > /out/app.ini 2>/dev/null;"
            " printf '%s' \"$APP_USER\" > /out/env")


def log(message: str) -> None:
    print(f"[init-config] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="measured starts of each way (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured starts of each way first (default 2)")
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python")
    parser.add_argument("--apphub", type=Path, default=ROOT / ".venv" / "bin" / "apphub")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (data and logs)")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON document to this file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be positive and --warmup not negative")
    return args


class Listener:
    """A TCP port that accepts and closes connections: the dependency's `tcp:` probe passes."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port: int = self.socket.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="dep-listener").start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.socket.accept()
                connection.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()


def manifest(root: Path, dep_port: int) -> str:
    return f"""\
services:
  app:
    fetch: true
    files:
      - path: {root}/app/app.ini
        container_path: /etc/app/app.ini
        format: ini
        map:
          database.user: "${{gitea.user_name}}"
          database.password: "${{gitea.user_pwd}}"
      - path: {root}/app/site.json
        container_path: /srv/app/site.json
        format: json
        map:
          site.owner: "${{gitea.user_name}}"
    env:
      APP_USER: "${{gitea.user_name}}"
      APP_PASSWORD: "${{gitea.user_pwd}}"
    depends_on: [dep]
  dep:
    health: {{tcp: "127.0.0.1:{dep_port}", timeout: 2}}
"""


class Starts:
    """Starts the container one way and times it to its original entrypoint's marker."""

    def __init__(self, engine: Any, folder: Path, apphub_url: str, key_file: Path) -> None:
        self.engine, self.folder, self.apphub_url, self.key_file = engine, folder, apphub_url, key_file
        self.count = 0

    def start(self, way: str, timeout: float = 60.0) -> tuple[float, dict[str, Any]]:
        """(ms to the marker, what the run left: exit status, the files' check, the log's tail)."""
        self.count += 1
        name = f"apphub-bench-init-{way}-{self.count}-{secrets.token_hex(3)}"
        out = self.folder / "out" / name
        out.mkdir(parents=True)
        marker = out / "started"
        entrypoint = ["sh", "-c", ORIGINAL] if way == "without" else ["/apphub/init-config.sh", "sh", "-c", ORIGINAL]
        host = self.engine.create_host_config(network_mode="host", binds={
            str(SCRIPT): {"bind": "/apphub/init-config.sh", "mode": "ro"},
            str(self.key_file): {"bind": "/run/secrets/apphub_key", "mode": "ro"},
            str(out): {"bind": "/out", "mode": "rw"},
        })
        environment = {"APPHUB_URL": self.apphub_url, "APPHUB_SERVICE": "app",
                       "APPHUB_KEY_FILE": "/run/secrets/apphub_key"}
        began = time.perf_counter()
        created = self.engine.create_container(envvars.IMAGE, entrypoint=entrypoint, command=[], name=name,
                                               environment=environment, host_config=host)
        self.engine.start(created["Id"])
        deadline, polls = began + timeout, 0
        while not marker.exists():
            polls += 1
            if time.perf_counter() > deadline or (polls % 250 == 0 and not self.running(created["Id"])):
                break
            time.sleep(0.002)
        elapsed = (time.perf_counter() - began) * 1000 if marker.exists() else None
        try:
            status = self.engine.wait(created["Id"], timeout=timeout)["StatusCode"]
            tail = bytes(self.engine.logs(created["Id"])).decode(errors="replace").strip().splitlines()[-2:]
        finally:
            with contextlib.suppress(docker.errors.APIError):
                self.engine.remove_container(created["Id"], force=True)
        left = {"status": status, "log": tail,
                "files": (out / "app.ini").exists() and "password" in (out / "app.ini").read_text(),
                "env": (out / "env").exists() and bool((out / "env").read_text())}
        if elapsed is None:
            raise RuntimeError(f"{way}: the original entrypoint did not start within {timeout:g} s: {left}")
        return elapsed, left

    def running(self, container: str) -> bool:
        return bool(self.engine.inspect_container(container)["State"]["Running"])


def requests_ms(url: str, key: str, rounds: int = 20) -> dict[str, dict[str, float]]:
    """The three requests the script makes, from the host (keep-alive off, as wget): p50 and max."""
    paths = {"healthz": "/healthz", "dependencies": "/api/v1/services/app/dependencies?format=text",
             "config": "/api/v1/services/app/config?format=tar"}
    found: dict[str, list[float]] = {name: [] for name in paths}
    # One client (making one costs httpx ~20 ms of TLS set-up), a new connection per request.
    with httpx.Client(base_url=url, headers={"x-api-key": key, "connection": "close"}, timeout=10) as client:
        for _ in range(rounds):
            for name, path in paths.items():
                began = time.perf_counter()
                answer = client.get(path)
                found[name].append((time.perf_counter() - began) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"GET {path} answered {answer.status_code}: {answer.text[:200]}")
    return {name: {key: value for key, value in envvars.summary_ms(samples).items() if key in ("p50", "max")}
            for name, samples in found.items()}


def bench(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    podman = envvars.Podman(folder)
    podman.start()
    listener = Listener()
    servers: list[api_settings.Server] = []
    engine = docker.APIClient(base_url=podman.url, version="auto", timeout=60)
    try:
        image = podman.ensure_image()
        root = folder / "srv"
        (root / "app").mkdir(parents=True)
        data = envvars.init_data(args, folder / "data", {"roots": [str(root)], "drift_interval_s": 0},
                                 manifest(root, listener.port))
        made = subprocess.run([str(args.apphub), "--data-dir", str(data.root), "services", "key", "app"],
                              capture_output=True, text=True, check=True)
        key = made.stdout.strip().splitlines()[-1]
        key_file = folder / "app.key"
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
        server = envvars.start_apphub(args, data.root, folder, "apphub")
        servers.append(server)
        api_settings.wait_ready(server, "/healthz", {})
        starts = Starts(engine, folder, server.url, key_file)
        samples: dict[str, list[float]] = {"with": [], "without": []}
        problems: list[str] = []
        total = args.warmup + args.runs
        log(f"{args.warmup} warm-up + {args.runs} measured starts of each way, interleaved")
        for number in range(total):
            for way in ("with", "without") if number % 2 == 0 else ("without", "with"):
                elapsed, left = starts.start(way)
                if left["status"] != 0 or (way == "with" and not (left["files"] and left["env"])):
                    problems.append(f"{way} start {number}: {left}")
                if number >= args.warmup:
                    samples[way].append(elapsed)
                log(f"  {number + 1}/{total} {way:7} {elapsed:7.1f} ms" + (" (warm-up)" if number < args.warmup
                                                                           else ""))
        without, with_ = envvars.summary_ms(samples["without"]), envvars.summary_ms(samples["with"])
        overhead = round(with_["p50"] - without["p50"], 1)
        return {
            "without_ms": without, "with_ms": with_, "overhead_ms_p50": overhead,
            "ratio_p50": envvars.ratio(with_["p50"], without["p50"]),
            "aim": f"overhead < {OVERHEAD_AIM_MS:g} ms", "aim_met": overhead < OVERHEAD_AIM_MS,
            "samples_ms": {way: [round(value, 1) for value in found] for way, found in samples.items()},
            "requests_from_the_host_ms": requests_ms(server.url, key),
            "http_client_in_the_container": "busybox wget (Debian's busybox-static: no -T, the script's watchdog)",
            "image": envvars.IMAGE, "image_was": image,
            "podman_version": (podman.cli("--version").stdout or "").strip(),
            "problems": problems,
        }
    finally:
        for server in servers:
            api_settings.stop(server)
        listener.close()
        engine.close()
        podman.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="apphub-bench-init-", dir=args.tmp))
    result: dict[str, Any] = {"benchmark": "init-config.sh: a container's start with and without it"}
    problems: list[str] = []
    try:
        result["machine"] = api_settings.machine(args.python, folder)
        result["settings"] = {"runs": args.runs, "warmup": args.warmup}
        try:
            result.update(bench(args, folder))
            problems += result["problems"]
        except (RuntimeError, docker.errors.DockerException, httpx.HTTPError, OSError,
                subprocess.CalledProcessError) as exc:
            problems.append(f"not measured: {exc}")
    finally:
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    result["elapsed_s"] = round(time.monotonic() - began, 1)
    result["summary"] = {"valid": not problems, "problems": problems, "aim_met": result.get("aim_met")}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM as an exception, so that the clean-up in the finally blocks runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    return api_settings.report(result, args.output, log)


if __name__ == "__main__":
    sys.exit(main())
