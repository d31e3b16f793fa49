"""What the history costs and how fast it answers (issue 9): one JSON document on stdout.

    .venv/bin/python benchmarks/history.py [--quick] [--versions 10000] [--commits 100000]

1. `put`: PUT of one key over HTTP, `apphub serve`-like servers (uvicorn, one worker, the sync
   thread on) in subprocesses: history on (as shipped) against history off (the same code with the
   history thread not started and no version bytes kept with the audit event), interleaved slices
   (on, off, off, on, ...), sequential requests; p50/p99 of each and the ratios (aim: at most 1.2).
2. `reads`: with `--versions` versions in the history (made through a Core, committed by its
   recorder): a page (first, and deep through a cursor), a filter by a key changed in few versions
   and by one changed in all, p50/p99 in-process (History) and over HTTP (aims: page < 20 ms p99,
   filter < 100 ms); the diff of two versions of a 5,000-key config.ini (aim < 50 ms).
3. `rollback`: the quickstart (examples/quickstart/start.sh: real supervisord), a change of a
   reload-level key made by a PUT `?wait=true` and the same change made by a rollback `?wait=true`,
   alternated: request to every affected service healthy; the ratio (aim: at most 1.1).
4. `compact`: `--commits` versions committed through the recorder (git gc --auto every 1,000 commits):
   the repository's size on disk, loose objects, bytes and time per commit.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from apphub.audit.log import Actor
from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.history.index import HistoryQuery
from apphub.paths import DataDir

ROOT = Path(__file__).resolve().parents[1]
ACTOR = Actor("bench", "api")
BIG_SCHEMA = """\
config:
  sections:
    big:
      description: the benchmark's 5,000 keys
      extra_keys: true
      keys: {}
"""


def log(message: str) -> None:
    print(f"[history] {message}", file=sys.stderr, flush=True)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 3), "mean": round(statistics.fmean(ordered), 3),
            "n": len(ordered)}


def timed(action: Callable[[], object], repeats: int) -> dict[str, float]:
    samples = []
    for _ in range(repeats):
        began = time.perf_counter_ns()
        action()
        samples.append((time.perf_counter_ns() - began) / 1e6)
    return percentiles(samples)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- 1. PUT with the history on and off --------------------------------------------------------------


def serve(mode: str, root: Path, port: int) -> None:
    """The server of one arm (run in a subprocess of this script)."""
    import uvicorn

    from apphub.api import app as app_module

    if mode == "off":
        import apphub.store.versionlog as versionlog
        from apphub.history.push import Pusher
        from apphub.history.worker import HistoryWorker

        versionlog.recordable = lambda snapshot: None  # type: ignore[assignment]  # no bytes kept for history

        def no_history(core: Core) -> tuple[HistoryWorker, Pusher]:
            worker = HistoryWorker(core.history)
            pusher = Pusher(core.history, lambda: None)
            return worker, pusher  # never started: stop() of a thread never started returns at once

        app_module.start_history = no_history  # type: ignore[assignment]
    app = app_module.create_app(DataDir(root))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_server(mode: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", mode, str(root), str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {mode} server did not start")
        time.sleep(0.05)


def bench_put(folder: Path, slices: int, per_slice: int) -> dict[str, Any]:
    arms: dict[str, tuple[subprocess.Popen[bytes], str, str]] = {}
    for mode in ("on", "off"):
        data = DataDir(folder / f"put-{mode}")
        initialise(data)
        process, url = start_server(mode, data.root)
        arms[mode] = (process, url, data.admin_key.read_text().strip())
    samples: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for number in range(slices):
            for mode in ("on", "off") if number % 2 == 0 else ("off", "on"):
                _, url, key = arms[mode]
                with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
                    for warm in range(5):
                        client.put("/api/v1/settings/gitea", json={"user_email": f"w{number}-{warm}@example.com"})
                    for request in range(per_slice):
                        began = time.perf_counter_ns()
                        answer = client.put("/api/v1/settings/gitea",
                                            json={"user_email": f"s{number}-{request}@example.com"})
                        samples[mode].append((time.perf_counter_ns() - began) / 1e6)
                        assert answer.status_code == 200, answer.text
            log(f"put: slice {number + 1}/{slices}")
        on_url, on_key = arms["on"][1], arms["on"][2]
        with httpx.Client(base_url=on_url, headers={"x-api-key": on_key}, timeout=60) as client:
            status = client.get("/api/v1/history/status").json()
            commits = client.get("/api/v1/settings/history", params={"limit": 1}).json()
    finally:
        for process, _, _ in arms.values():
            process.terminate()
            process.wait(30)
    on, off = percentiles(samples["on"]), percentiles(samples["off"])
    return {"history_on_ms": on, "history_off_ms": off,
            "ratio_p50": round(on["p50"] / off["p50"], 3), "ratio_p99": round(on["p99"] / off["p99"], 3),
            "aim_ratio": 1.2, "commits_after": status["commits"], "waiting_after": status["waiting"],
            "newest_commit_is_last_put": bool(commits["entries"])}


# -- 2. reads with many versions ---------------------------------------------------------------------


def make_versions(core: Core, count: int) -> dict[str, float]:
    began = time.perf_counter()
    record_ms = 0.0
    for number in range(count):
        changes: dict[str, dict[str, object]] = {"gitea": {"user_email": f"v{number}@example.com"}}
        if number % 100 == 0:
            changes["portainer"] = {"user_name": f"admin{number}"}
        core.config.update(changes, ACTOR)
        if number % 500 == 499:
            started = time.perf_counter()
            core.history.record()
            record_ms += (time.perf_counter() - started) * 1000
            log(f"reads: {number + 1} versions")
    started = time.perf_counter()
    core.history.record()
    record_ms += (time.perf_counter() - started) * 1000
    return {"versions": count, "seconds": round(time.perf_counter() - began, 1),
            "commit_ms_per_version": round(record_ms / count, 3)}


def bench_reads(folder: Path, versions: int, repeats: int) -> dict[str, Any]:
    data = DataDir(folder / "reads")
    initialise(data)
    core = Core(data)
    try:
        core.history.start()
        made = make_versions(core, versions)
        history = core.history
        first, cursor = history.page(HistoryQuery(limit=50))
        deep_cursor = history.index.count() // 2
        assert cursor is not None
        figures: dict[str, Any] = {"made": made, "commits": history.index.count()}
        figures["page_first_ms"] = timed(lambda: history.page(HistoryQuery(limit=50)), repeats)
        figures["page_deep_ms"] = timed(lambda: history.page(HistoryQuery(limit=50, before=deep_cursor)), repeats)
        figures["filter_key_few_ms"] = timed(
            lambda: history.page(HistoryQuery(section="portainer", key="user_name", limit=50)), repeats)
        figures["filter_key_all_ms"] = timed(
            lambda: history.page(HistoryQuery(section="gitea", key="user_email", limit=50)), repeats)
        figures["filter_key_few_found"] = len(history.page(HistoryQuery(section="portainer", key="user_name",
                                                                        limit=500))[0])
        oldest, newest = first[-1].commit, first[0].commit
        figures["diff_small_file_ms"] = timed(lambda: history.diff(oldest, newest), repeats)
        figures["http"] = bench_reads_http(data, deep_cursor, repeats)
    finally:
        core.close()
    figures["diff_5000_keys"] = bench_big_diff(folder, repeats)
    figures["aims"] = {"page_p99_ms": 20, "filter_p99_ms": 100, "diff_5000_keys_p99_ms": 50}
    return figures


def bench_reads_http(data: DataDir, deep_cursor: int, repeats: int) -> dict[str, Any]:
    process, url = start_server("on", data.root)
    key = data.admin_key.read_text().strip()
    try:
        with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
            def get(path: str, **params: object) -> None:
                answer = client.get(path, params=params)
                assert answer.status_code == 200, answer.text

            return {
                "page_first_ms": timed(lambda: get("/api/v1/settings/history", limit=50), repeats),
                "page_deep_ms": timed(lambda: get("/api/v1/settings/history", limit=50, cursor=deep_cursor), repeats),
                "filter_key_few_ms": timed(lambda: get("/api/v1/settings/history", section="portainer",
                                                       key="user_name"), repeats),
            }
    finally:
        process.terminate()
        process.wait(30)


def bench_big_diff(folder: Path, repeats: int) -> dict[str, Any]:
    data = DataDir(folder / "big")
    initialise(data)
    (data.schema_dir / "big.yaml").write_text(BIG_SCHEMA)
    original = data.config_ini.read_text()

    def big(changed: int) -> str:  # written as a file: adding 5,000 keys through the store is slow (configupdater)
        return original + "\n[big]\n" + "".join(
            f"key{n:04d} = {'changed' if changed and n % changed == 0 else 'value'} {n}\n" for n in range(5000))

    data.config_ini.write_text(big(0))
    core = Core(data)
    try:
        core.history.start()  # commits it (recovered)
        data.config_ini.write_text(big(100))
        core.config.account_for_outside_change(None)  # what the sync thread does with a hand edit
        core.history.record()
        entries, _ = core.history.page(HistoryQuery(limit=2, file="config.ini"))
        newest, older = entries[0].commit, entries[1].commit
        found = core.history.diff(older, newest)
        figures = timed(lambda: core.history.diff(older, newest), repeats)
        return {"keys": 5000, "changed_keys": len(found.changes), "unified_lines": found.unified.count("\n"),
                "bytes": len(data.config_ini.read_bytes()), "ms": figures}
    finally:
        core.close()


# -- 3. rollback against a PUT, end to end -------------------------------------------------------------


def bench_rollback(folder: Path, pairs: int) -> dict[str, Any]:
    data = DataDir(folder / "quickstart")
    environment = {**os.environ, "QUICKSTART_JSON_PORT": str(free_port()), "QUICKSTART_INI_PORT": str(free_port()),
                   "XDG_DATA_HOME": str(folder / "xdg")}
    environment.pop("APPHUB_DATA", None)
    started = subprocess.run(["bash", str(ROOT / "examples" / "quickstart" / "start.sh"), str(data.root)],
                             capture_output=True, text=True, env=environment, timeout=120, check=False)
    if started.returncode != 0:
        return {"skipped": f"the quickstart did not start: {started.stderr[-300:]}"}
    process, url = start_server("on", data.root)
    key = data.admin_key.read_text().strip()
    samples: dict[str, list[float]] = {"put": [], "rollback": []}
    try:
        with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=60) as client:
            def put(title: str) -> tuple[str, float]:
                began = time.perf_counter_ns()
                answer = client.put("/api/v1/settings/hello_ini", params={"wait": "true"}, json={"title": title})
                took = (time.perf_counter_ns() - began) / 1e6
                if answer.status_code != 200 or not answer.json()["sync"]["ok"]:
                    raise RuntimeError(f"the PUT failed: {answer.text}")
                return str(answer.json()["version"]), took

            def rollback(version: str) -> float:
                began = time.perf_counter_ns()
                answer = client.post("/api/v1/settings/rollback", params={"wait": "true"}, json={"version": version})
                took = (time.perf_counter_ns() - began) / 1e6
                if answer.status_code != 200 or not answer.json()["sync"]["ok"]:
                    raise RuntimeError(f"the rollback failed: {answer.text}")
                assert answer.json()["version"] == version
                return took

            put("warm-up")
            for number in range(pairs):
                target, _ = put(f"Title A{number}")  # the version both arms bring about
                put(f"Title B{number}")
                if number % 2 == 0:
                    samples["rollback"].append(rollback(target))
                    put(f"Title B{number}")
                    samples["put"].append(put(f"Title A{number}")[1])
                else:
                    samples["put"].append(put(f"Title A{number}")[1])
                    put(f"Title B{number}")
                    samples["rollback"].append(rollback(target))
                log(f"rollback: pair {number + 1}/{pairs}")
    finally:
        process.terminate()
        process.wait(30)
        subprocess.run(["supervisorctl", "-c", str(data.root / "supervisor" / "supervisord.conf"), "shutdown"],
                       capture_output=True, timeout=30, check=False)
    put_ms, rollback_ms = percentiles(samples["put"]), percentiles(samples["rollback"])
    return {"change": "hello_ini.title (reload: SIGHUP, then the health gate)", "put_ms": put_ms,
            "rollback_ms": rollback_ms, "ratio_p50": round(rollback_ms["p50"] / put_ms["p50"], 3),
            "ratio_mean": round(rollback_ms["mean"] / put_ms["mean"], 3), "aim_ratio": 1.1}


# -- 4. the repository over many commits ----------------------------------------------------------------


def bench_compact(folder: Path, commits: int) -> dict[str, Any]:
    data = DataDir(folder / "compact")
    initialise(data)
    core = Core(data)
    try:
        core.history.start()
        began = time.perf_counter()
        made = make_versions(core, commits)
        repository = data.state_dir / "history"
        counted = subprocess.run(["git", "--git-dir", str(repository), "count-objects", "-v"], capture_output=True,
                                 text=True, check=True).stdout
        objects = dict(line.split(": ") for line in counted.splitlines())
        size = sum(path.stat().st_size for path in repository.rglob("*") if path.is_file())
        return {"commits": core.history.index.count(), "made": made, "seconds": round(time.perf_counter() - began, 1),
                "repository_bytes": size, "bytes_per_commit": round(size / max(commits, 1), 1),
                "loose_objects": int(objects["count"]), "packs": int(objects["packs"]),
                "config_ini_bytes": len(data.config_ini.read_bytes())}
    finally:
        core.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test in seconds")
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--puts", type=int, default=200, help="PUTs per slice and arm (default 200)")
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--commits", type=int, default=100_000)
    parser.add_argument("--only", default="put,reads,rollback,compact")
    parser.add_argument("--tmp", type=Path, default=None)
    parser.add_argument("--serve", nargs=3, metavar=("MODE", "DATA", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], Path(args.serve[1]), int(args.serve[2]))
        return 0
    if args.quick:
        args.slices, args.puts, args.versions, args.repeats, args.pairs, args.commits = 2, 30, 600, 20, 2, 1500
    folder = Path(tempfile.mkdtemp(prefix="apphub-history-bench-", dir=args.tmp))
    only = set(args.only.split(","))
    result: dict[str, Any] = {"git_commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                                           capture_output=True, text=True).stdout.strip(),
                              "quick": args.quick}
    try:
        if "put" in only:
            result["put"] = bench_put(folder, args.slices, args.puts)
        if "reads" in only:
            result["reads"] = bench_reads(folder, args.versions, args.repeats)
        if "rollback" in only:
            result["rollback"] = bench_rollback(folder, args.pairs)
        if "compact" in only:
            result["compact"] = bench_compact(folder, args.commits)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
