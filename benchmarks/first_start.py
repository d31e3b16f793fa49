"""First start: from `apphub serve` on a fresh data folder to every product initialised and healthy.

    .venv/bin/python benchmarks/first_start.py [--runs 10] [--warmup 1] [--poll-ms 10] [--output FILE]

One JSON document on stdout, progress on stderr. The issue: "From `apphub serve` started on a fresh
data folder to every stand-in service initialised and healthy: p50 and max over 10 runs; the product
plan says under 15 s, we aim under 3 s (the stand-ins answer at once, so the figure is apphub's own
cost)."

Each run has four fresh stand-ins of its own (tests/standins: Nginx Proxy Manager, Gitea, Portainer,
Cockpit; real HTTP servers on 127.0.0.1 in this process) and a fresh data folder: `apphub init`, then
config.ini pointed at the stand-ins and system.ini `[services] enabled` = the four products,
`cockpit_host = 127.0.0.1` (through Core, as the CLI would). Gitea's first admin is made the way
Gitea's CLI in its container would make it (`add_admin` with the fresh config.ini's password). Then:

1. `first`: the timer starts, `apphub --data-dir D serve --port P` is launched, and the benchmark polls
   every `--poll-ms`: `GET /healthz` until it answers 200 (`serve_to_healthz_ms`, the floor: the
   process is up and serving, the same start), then `GET /api/v1/init/status` until the four products
   have a run of this start in state `done`, then `GET /api/v1/services/{name}/health` of the four (in
   parallel) until each says `healthy`; the timer stops (`serve_to_initialised_ms`). The server is
   stopped with SIGTERM and waited for.
2. `restart`: the same start again on the same folder and stand-ins: everything is initialised, so the
   runs come back `done` with every step `unchanged` (checked).

`init_cost_ms_p50` is apphub's p50 less the floor's, and `ratio_to_aim_p50` apphub's p50 over the 3 s
aim. The status's own timings (when each product's run began after the launch, each run's and each
step's duration) show where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import apphub
from apphub.audit.log import Actor
from apphub.core import Core
from apphub.paths import DataDir

try:
    from benchmarks import api_settings
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import api_settings  # type: ignore[no-redef, import-not-found, unused-ignore]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # the stand-ins live in tests/standins
    sys.path.insert(0, str(ROOT))

from tests.standins.cockpit import CockpitStandIn  # noqa: E402
from tests.standins.gitea import GiteaStandIn  # noqa: E402
from tests.standins.npm import NpmStandIn  # noqa: E402
from tests.standins.portainer import PortainerStandIn  # noqa: E402

ACTOR = Actor("bench", "cli")
PRODUCTS = ("nginx_proxy_manager", "gitea", "portainer", "cockpit")
AIM_MS = 3000.0
PLAN_MS = 15000.0
GITEA_ADMIN = ("websoft9", "admin@mydomain.com")  # config.ini [gitea] user_name and user_email, as shipped


def log(message: str) -> None:
    print(f"[first-start] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="measured runs, each a first start and a restart "
                                                              "(default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs first (default 1)")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="pause between two polls (default 10)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a start may take before it fails")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="apphub serve's (default info, as shipped)")
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python")
    parser.add_argument("--apphub", type=Path, default=ROOT / ".venv" / "bin" / "apphub")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (data and logs)")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON document to this file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.poll_ms <= 0 or args.timeout <= 0:
        parser.error("--runs must be positive, --warmup not negative, --poll-ms and --timeout positive")
    return args


def summary_ms(samples_ms: list[float]) -> dict[str, Any]:
    ordered = sorted(samples_ms)
    if not ordered:
        return {"runs": 0}

    def at(fraction: float) -> float:  # nearest rank, as benchmarks/loadgen.py
        return round(ordered[min(len(ordered), max(1, -(-int(fraction * 1000) * len(ordered) // 1000))) - 1], 1)

    return {"p50": at(0.5), "max": round(ordered[-1], 1), "min": round(ordered[0], 1),
            "mean": round(sum(ordered) / len(ordered), 1), "runs": len(ordered)}


class StartFailed(RuntimeError):
    pass


# -- one run's stand-ins and data folder -------------------------------------------------------------


@dataclass
class Stage:
    npm: NpmStandIn
    gitea: GiteaStandIn
    portainer: PortainerStandIn
    cockpit: CockpitStandIn

    @classmethod
    def start(cls) -> Stage:
        return cls(NpmStandIn(), GiteaStandIn(), PortainerStandIn(), CockpitStandIn())

    def stop(self) -> None:
        for standin in (self.npm, self.gitea, self.portainer, self.cockpit):
            standin.stop()

    def violations(self) -> list[str]:
        found = [*self.npm.violations, *self.gitea.violations, *self.portainer.violations, *self.cockpit.violations]
        # The history is pushed to the repository Gitea's initialiser made: git's smart HTTP, which the
        # stand-in does not serve (as in tests/services/test_services_api.py).
        return [v for v in found if ".git/info/refs" not in v]

    def requests(self) -> dict[str, int]:
        return {name: len(standin.requests) for name, standin in
                zip(PRODUCTS, (self.npm, self.gitea, self.portainer, self.cockpit), strict=True)}


def prepare(args: argparse.Namespace, data: Path, stage: Stage) -> str:
    """A fresh data folder pointed at the stand-ins, Gitea's admin made; the admin key."""
    subprocess.run([str(args.apphub), "--data-dir", str(data), "init"], check=True, capture_output=True)
    made = DataDir(data)
    core = Core(made)
    try:
        core.config.update({
            "nginx_proxy_manager": {"base_url": f"{stage.npm.url}/api"},
            "gitea": {"base_url": f"{stage.gitea.url}/api/v1"},
            "portainer": {"base_url": f"{stage.portainer.url}/api"},
            "cockpit": {"port": int(stage.cockpit.url.rsplit(":", 1)[1])},
        }, ACTOR)
        core.system.update({"services": {"enabled": ",".join(PRODUCTS), "cockpit_host": "127.0.0.1"}}, ACTOR)
        secret = core.config.snapshot().secret("gitea", "user_pwd")
        if secret is None:
            raise StartFailed("the fresh config.ini has no [gitea] user_pwd")
        password = secret.reveal()
    finally:
        core.close()
    # What `gitea admin user create` in Gitea's container does; apphub's step then finds the admin.
    stage.gitea.add_admin(GITEA_ADMIN[0], password, GITEA_ADMIN[1])
    return made.admin_key.read_text().strip()


# -- one start ---------------------------------------------------------------------------------------


def parse_time(text: str | None) -> float | None:
    return None if not text else dt.datetime.fromisoformat(text).timestamp()


def stop_server(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    began = time.monotonic()
    killed = False
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            killed = True
    return {"stop_ms": round((time.monotonic() - began) * 1000, 1), "exit_code": process.returncode,
            "killed": killed}


def measure_start(args: argparse.Namespace, data: Path, folder: Path, label: str, key: str,
                  previous: dict[str, str | None]) -> dict[str, Any]:
    """Launch `apphub serve`, time it to /healthz, to the four runs done, to the four healthy; stop it.

    `previous`: each product's run's started_at before this start (a run of this start differs)."""
    port = api_settings.free_port()
    log_file = folder / f"{label}.log"
    command = [str(args.apphub), "--data-dir", str(data), "serve", "--port", str(port), "--log-level", args.log_level]
    poll = args.poll_ms / 1000
    polls = {"healthz": 0, "init_status": 0, "health": 0}
    with log_file.open("wb") as sink:
        wall_launch = time.time()
        launched = time.monotonic()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
    deadline = launched + args.timeout

    def since_launch() -> float:
        return (time.monotonic() - launched) * 1000

    def wait(what: str, kind: str, condition: Callable[[], bool]) -> float:
        while True:
            if process.poll() is not None:
                raise StartFailed(f"{label}: apphub exited with {process.returncode} while waiting for {what}:\n"
                                  + tail(log_file))
            polls[kind] += 1
            with contextlib.suppress(httpx.TransportError):
                if condition():
                    return since_launch()
            if time.monotonic() > deadline:
                raise StartFailed(f"{label}: no {what} within {args.timeout:g} s:\n" + tail(log_file))
            time.sleep(poll)

    runs: dict[str, dict[str, Any]] = {}
    checks: dict[str, dict[str, Any]] = {}

    def runs_done() -> bool:
        found = {run["service"]: run for run in http.get("/api/v1/init/status").json()["services"]}
        fresh = {name: run for name, run in found.items()
                 if name in PRODUCTS and run.get("started_at") != previous.get(name)}
        ended_badly = {name: run["state"] for name, run in fresh.items() if run["state"] in ("failed", "manual")}
        if ended_badly:
            details = {name: [f"{s['name']}: {s['state']} {s.get('last_error') or s.get('detail') or ''}".strip()
                              for s in fresh[name]["steps"] if s["state"] not in ("done", "unchanged")]
                       for name in ended_badly}
            raise StartFailed(f"{label}: initialisation ended {ended_badly}: {details}")
        if len(fresh) == len(PRODUCTS) and all(run["state"] == "done" for run in fresh.values()):
            runs.update(fresh)
            return True
        return False

    def all_healthy(pool: ThreadPoolExecutor) -> bool:
        pending = [name for name in PRODUCTS if checks.get(name, {}).get("health") != "healthy"]
        for name, found in zip(pending, pool.map(lambda n: http.get(f"/api/v1/services/{n}/health").json(),
                                                 pending), strict=True):
            checks[name] = found
        return all(checks[name].get("health") == "healthy" for name in PRODUCTS)

    result: dict[str, Any] = {"label": label, "port": port, "load_average_at_launch": round(os.getloadavg()[0], 2)}
    cpu: dict[str, float | None] = {}

    def cpu_ms() -> float | None:  # the server's user + system CPU time so far, all its threads
        seconds = api_settings.process_cpu_seconds(process.pid)
        return None if seconds is None else round(seconds * 1000, 1)

    def children_cpu_ms() -> float:  # its child processes' (the history process, multiprocessing's tracker)
        found = [api_settings.process_cpu_seconds(child) for child in children(process.pid)]
        return round(sum(seconds for seconds in found if seconds is not None) * 1000, 1)

    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": key}, timeout=10.0) as http, \
                ThreadPoolExecutor(max_workers=len(PRODUCTS), thread_name_prefix="bench-health") as pool:
            result["serve_to_healthz_ms"] = round(wait("200 from /healthz", "healthz",
                                                       lambda: http.get("/healthz").status_code == 200), 1)
            cpu["at_healthz"] = cpu_ms()
            result["serve_to_runs_done_ms"] = round(wait("four runs done", "init_status", runs_done), 1)
            cpu["at_runs_done"] = cpu_ms()
            result["serve_to_initialised_ms"] = round(wait("four products healthy", "health",
                                                           lambda: all_healthy(pool)), 1)
            cpu["at_initialised"] = cpu_ms()
            cpu["children_at_initialised"] = children_cpu_ms()
    finally:
        result.update(stop_server(process))
    result["polls"] = polls
    result["server_cpu_ms"] = cpu
    result["runs"] = {name: timings_of(run, wall_launch) for name, run in runs.items()}
    result["health_checks_ms"] = {name: check.get("duration_ms") for name, check in checks.items()}
    result["first_run_started_ms"] = min(run["started_after_launch_ms"] for run in result["runs"].values())
    result["last_run_finished_ms"] = max(run["finished_after_launch_ms"] for run in result["runs"].values())
    result["step_states"] = sorted({step["state"] for run in runs.values() for step in run["steps"]})
    return result


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


def timings_of(run: dict[str, Any], wall_launch: float) -> dict[str, Any]:
    """One product's run as the status tells it, its times from the launch of `apphub serve`."""
    def after_launch(text: str | None) -> float | None:
        at = parse_time(text)
        return None if at is None else round((at - wall_launch) * 1000, 1)

    return {
        "state": run["state"], "trigger": run["trigger"], "changed": run["changed"], "attempt": run["attempt"],
        "started_at": run["started_at"],
        "started_after_launch_ms": after_launch(run["started_at"]),
        "finished_after_launch_ms": after_launch(run["finished_at"]),
        "duration_ms": run["duration_ms"],
        "steps": {step["name"]: {"state": step["state"], "attempts": step["attempts"], "ms": step["duration_ms"]}
                  for step in run["steps"]},
    }


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- the run -----------------------------------------------------------------------------------------


def one_run(args: argparse.Namespace, folder: Path, number: int) -> dict[str, Any]:
    """A first start and a restart on a fresh data folder and fresh stand-ins."""
    place = folder / f"run-{number:02d}"
    place.mkdir()
    stage = Stage.start()
    try:
        data = place / "data"
        key = prepare(args, data, stage)
        first = measure_start(args, data, place, "first", key, {})
        previous = {name: run["started_at"] for name, run in first["runs"].items()}
        restart = measure_start(args, data, place, "restart", key, previous)
        return {"first": first, "restart": restart, "violations": stage.violations(),
                "standin_requests": stage.requests()}
    finally:
        stage.stop()
        if not args.keep:
            shutil.rmtree(place, ignore_errors=True)


def aggregate(samples: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    starts = [sample[kind] for sample in samples]
    figures: dict[str, Any] = {name: summary_ms([start[name] for start in starts])
               for name in ("serve_to_healthz_ms", "serve_to_runs_done_ms", "serve_to_initialised_ms")}
    figures["init_cost_ms"] = summary_ms([start["serve_to_initialised_ms"] - start["serve_to_healthz_ms"]
                                          for start in starts])

    def p50(values: list[float | None]) -> float | None:
        found = [value for value in values if value is not None]
        return summary_ms(found).get("p50") if found else None

    figures["server_cpu_ms"] = {phase: summary_ms([start["server_cpu_ms"][phase] for start in starts
                                                   if start["server_cpu_ms"].get(phase) is not None])
                                for phase in ("at_healthz", "at_runs_done", "at_initialised",
                                              "children_at_initialised")}
    figures["breakdown_p50_ms"] = {
        "launch_to_first_run_started": p50([start["first_run_started_ms"] for start in starts]),
        "launch_to_healthz": figures["serve_to_healthz_ms"]["p50"],
        "launch_to_last_run_finished": p50([start["last_run_finished_ms"] for start in starts]),
        "launch_to_runs_done_seen": figures["serve_to_runs_done_ms"]["p50"],
        "runs_done_seen_to_healthy": p50([start["serve_to_initialised_ms"] - start["serve_to_runs_done_ms"]
                                          for start in starts]),
        "stop": p50([start["stop_ms"] for start in starts]),
    }
    figures["products_p50_ms"] = {
        name: {
            "run_started_after_launch": p50([start["runs"][name]["started_after_launch_ms"] for start in starts]),
            "run": p50([start["runs"][name]["duration_ms"] for start in starts]),
            "steps": {step: p50([start["runs"][name]["steps"][step]["ms"] for start in starts])
                      for step in starts[0]["runs"][name]["steps"]},
            "health_check": p50([start["health_checks_ms"].get(name) for start in starts]),
        } for name in PRODUCTS}
    figures["step_states"] = sorted({state for start in starts for state in start["step_states"]})
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="apphub-bench-first-start-", dir=args.tmp))
    result: dict[str, Any] = {"benchmark": "apphub first start: serve to every product initialised and healthy"}
    problems: list[str] = []
    samples: list[dict[str, Any]] = []
    try:
        result["machine"] = api_settings.machine(args.python, folder)
        result["settings"] = {
            "runs": args.runs, "warmup_runs": args.warmup, "poll_ms": args.poll_ms, "timeout_s": args.timeout,
            "products": list(PRODUCTS),
            "apphub_command": f"apphub --data-dir TMP serve --port P --log-level {args.log_level}",
            # where apphub was imported from: this tree's src/, or another one's put first by PYTHONPATH
            "apphub_source": str(Path(apphub.__file__).resolve().parent),
            "pythonpath": os.environ.get("PYTHONPATH"),
        }
        total = args.warmup + args.runs
        for number in range(total):
            warmup = number < args.warmup
            try:
                sample = one_run(args, folder, number)
            except (StartFailed, httpx.HTTPError, subprocess.CalledProcessError, OSError, KeyError, ValueError) as exc:
                problems.append(f"run {number}{' (warm-up)' if warmup else ''}: {exc}")
                log(f"run {number + 1}/{total} FAILED: {exc}")
                continue
            sample["warmup"] = warmup
            samples.append(sample)
            first, restart = sample["first"], sample["restart"]
            log(f"run {number + 1}/{total}{' (warm-up)' if warmup else ''}: first start "
                f"{first['serve_to_initialised_ms']:.0f} ms (healthz {first['serve_to_healthz_ms']:.0f}), "
                f"restart {restart['serve_to_initialised_ms']:.0f} ms (healthz {restart['serve_to_healthz_ms']:.0f})")
            if sample["violations"]:
                problems.append(f"run {number}: requests the stand-ins' specs do not allow: {sample['violations'][:5]}")
            if restart["step_states"] != ["unchanged"]:
                problems.append(f"run {number}: the restart's steps were {restart['step_states']}, not all unchanged")
            if "done" not in first["step_states"]:
                problems.append(f"run {number}: the first start changed nothing ({first['step_states']})")
            for kind in ("first", "restart"):
                # uvicorn raises the SIGTERM it caught again once it has shut down: -15 is a clean stop.
                if sample[kind]["killed"] or sample[kind]["exit_code"] not in (0, -signal.SIGTERM):
                    problems.append(f"run {number} {kind}: apphub exited with {sample[kind]['exit_code']} "
                                    f"after SIGTERM{' (killed after 15 s)' if sample[kind]['killed'] else ''}")
    finally:
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    measured = [sample for sample in samples if not sample["warmup"]]
    if len(measured) < args.runs:
        problems.append(f"{args.runs - len(measured)} of {args.runs} measured runs failed")
    if measured:
        result["first_start"] = aggregate(measured, "first")
        result["restart"] = aggregate(measured, "restart")
    result["samples"] = samples
    result["elapsed_s"] = round(time.monotonic() - began, 1)
    result["summary"] = summarise(result, problems)
    return result


def summarise(result: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    first, restart = result.get("first_start"), result.get("restart")
    if first is not None and restart is not None:
        def short(figure: dict[str, Any]) -> dict[str, Any]:
            return {key: figure.get(key) for key in ("p50", "max", "runs")}

        p50, worst = first["serve_to_initialised_ms"]["p50"], first["serve_to_initialised_ms"]["max"]
        loads = [sample[kind]["load_average_at_launch"] for sample in result["samples"] if not sample["warmup"]
                 for kind in ("first", "restart")]
        summary.update({
            "serve_to_initialised_ms": short(first["serve_to_initialised_ms"]),
            "serve_to_healthz_ms": short(first["serve_to_healthz_ms"]),
            "init_cost_ms_p50": round(p50 - first["serve_to_healthz_ms"]["p50"], 1),
            "aim_ms": AIM_MS,
            "ratio_to_aim_p50": round(p50 / AIM_MS, 3),
            "ratio_to_aim_max": round(worst / AIM_MS, 3),
            "aim_met": worst < AIM_MS,
            "plan_ms": PLAN_MS,
            "within_plan": worst < PLAN_MS,
            "restart_to_initialised_ms": short(restart["serve_to_initialised_ms"]),
            "restart_to_healthz_ms": short(restart["serve_to_healthz_ms"]),
            "restart_init_cost_ms_p50": round(restart["serve_to_initialised_ms"]["p50"]
                                              - restart["serve_to_healthz_ms"]["p50"], 1),
            "restart_ratio_to_aim_p50": round(restart["serve_to_initialised_ms"]["p50"] / AIM_MS, 3),
            "restart_steps_all_unchanged": restart["step_states"] == ["unchanged"],
            "server_cpu_ms_p50": {kind: {phase: figures["server_cpu_ms"][phase].get("p50")
                                         for phase in ("at_healthz", "at_initialised", "children_at_initialised")}
                                  for kind, figures in (("first", first), ("restart", restart))},
            "load_average_at_launch": {"min": min(loads), "max": max(loads)},
        })
    summary.update({"valid": not problems, "problems": problems, "elapsed_s": result["elapsed_s"]})
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM as an exception, so that the clean-up in the finally blocks runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    return api_settings.report(result, args.output, log)


if __name__ == "__main__":
    sys.exit(main())
