"""Benchmark of the rules (issue 12): what they add to a write, and resolving substitution and overlays.

    .venv/bin/python benchmarks/rules.py [--puts 300] [--quick]

Prints one JSON document on stdout (progress on stderr). In one run it:
  1. starts two `apphub serve` on two fresh data folders, one with every rule on (the default), one
     with `system.ini [rules] enabled = false` (only the schema's type checks), and times PUTs of
     one key against both in interleaved slices (noise hits both alike): a plain key (the aim: at
     most 1.3x p50), a port key (the port rule asks the host and the engine) and a password key
     (zxcvbn), each a new value every time;
  2. in-process, resolves a 5,000-key config.ini (20 % of values with `${...}` references, chains of
     depth 2-3, a few `${env:...:-default}`) under an overlay setting 10 % of the keys: the merge and
     every key resolved (the aim: under 20 ms), against reading every key's stored text (the floor).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
APPHUB = Path(sys.executable).parent / "apphub"
PUT_RATIO_AIM = 1.3
RESOLVE_AIM_MS = 20.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextmanager
def server(folder: Path, rules: bool) -> Iterator[httpx.Client]:
    data = folder / ("rules-on" if rules else "rules-off")
    environment = {**os.environ, "APPHUB_DATA": str(data)}
    subprocess.run([str(APPHUB), "init"], env=environment, check=True, capture_output=True)
    if not rules:
        subprocess.run([str(APPHUB), "setsysconfig", "--section", "rules", "--key", "enabled", "--value", "false"],
                       env=environment, check=True, capture_output=True)
    port = free_port()
    process = subprocess.Popen([str(APPHUB), "serve", "--port", str(port), "--log-level", "warning"],
                               env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    key = (data / ".apphub" / "admin.key").read_text().strip()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": key}, timeout=30)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("apphub did not start within 30 s")
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(10)


def plain(number: int) -> tuple[str, dict[str, Any]]:
    return "/api/v1/settings/gitea", {"user_email": f"ops{number}@example.org"}


def port_key(number: int) -> tuple[str, dict[str, Any]]:
    return "/api/v1/settings/cockpit", {"port": 20000 + number % 20000}


def password(number: int) -> tuple[str, dict[str, Any]]:
    return "/api/v1/settings/gitea", {"user_pwd": f"{secrets.token_urlsafe(12)}-Qz{number}"}


def time_puts(clients: dict[str, httpx.Client], make: Callable[[int], tuple[str, dict[str, Any]]],
              puts: int, warmup: int, slice_size: int = 20) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in clients}
    number = 0
    for _ in range(warmup):
        for client in clients.values():
            path, body = make(number)
            number += 1
            client.put(path, json=body).raise_for_status()
    while min(len(found) for found in timings.values()) < puts:
        for name, client in clients.items():  # interleaved slices: noise hits both alike
            for _ in range(slice_size):
                path, body = make(number)
                number += 1
                started = time.perf_counter()
                answer = client.put(path, json=body)
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    raise RuntimeError(f"{name}: PUT {path} answered {answer.status_code}: {answer.text[:300]}")
                timings[name].append(elapsed * 1000)
    return timings


def summary(timings: dict[str, list[float]]) -> dict[str, Any]:
    on, off = timings["rules_on"], timings["rules_off"]
    return {
        "rules_on_ms": {"p50": round(statistics.median(on), 2), "p99": round(percentile(on, 0.99), 2), "n": len(on)},
        "rules_off_ms": {"p50": round(statistics.median(off), 2), "p99": round(percentile(off, 0.99), 2),
                         "n": len(off)},
        "ratio_p50": round(statistics.median(on) / statistics.median(off), 3),
    }


def resolution(runs: int) -> dict[str, Any]:
    from apphub.bootstrap import initialise
    from apphub.environments.overlays import merged, relaxed
    from apphub.paths import DataDir
    from apphub.store.inidoc import IniDocument
    from apphub.store.schema import load_schema
    from apphub.store.secrets import SecretBox
    from apphub.store.snapshot import Snapshot
    from apphub.store.substitution import resolver_for

    folder = Path(tempfile.mkdtemp(prefix="apphub-bench-resolve-"))
    data = DataDir(folder / "data")
    initialise(data)
    sections, per = 100, 50
    schema_lines = ["config:", "  sections:"]
    for s in range(sections):
        schema_lines += [f"    s{s}:", "      extra_keys: true", "      keys: {}"]
    (data.schema_dir / "90-bench.yaml").write_text("\n".join(schema_lines) + "\n", encoding="utf-8")
    schema = load_schema(data.schema_dir)
    lines = []
    for s in range(sections):
        lines.append(f"[s{s}]")
        for k in range(per):
            n = s * per + k
            if n % 5 == 0 and s > 2:  # 20 %: references, chains 2-3 deep through earlier sections
                lines.append(f"k{k} = http://${{s{s - 1}.k{(k + 1) % per}}}:${{s{s - 2}.k{(k + 3) % per}}}/x")
            elif n % 97 == 0:
                lines.append(f"k{k} = ${{env:BENCH_MODE_{n}:-production}}")
            else:
                lines.append(f"k{k} = value-{n}")
    base_text = "\n".join(lines) + "\n"
    overlay_text = "\n".join(f"[s{s}]\n" + "\n".join(f"k{k} = overlay-{s}-{k}" for k in range(0, per, 10))
                             for s in range(sections)) + "\n"
    box = SecretBox(data.secret_key)
    base = Snapshot("config.ini", base_text.encode(), IniDocument(base_text, "config.ini"), schema.config, box)
    overlay = Snapshot("config.prod.ini", overlay_text.encode(), IniDocument(overlay_text, "config.prod.ini"),
                       relaxed(schema.config), box)
    keys = [(f"s{s}", f"k{k}") for s in range(sections) for k in range(per)]
    floor, work = [], []
    for _ in range(runs):
        started = time.perf_counter()
        for section, key in keys:
            base.document.get(section, key)
        floor.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        effective = merged(base, overlay)
        resolver = resolver_for(effective, {})
        for section, key in keys:
            resolver.resolve(section, key)
        work.append((time.perf_counter() - started) * 1000)
    references = sum("${" in (base.document.get(s, k) or "") for s, k in keys)
    return {"keys": len(keys), "with_references": references, "overlay_keys": sections * (per // 10),
            "merge_and_resolve_ms": {"p50": round(statistics.median(work), 2), "min": round(min(work), 2),
                                     "max": round(max(work), 2)},
            "floor_read_every_key_ms": {"p50": round(statistics.median(floor), 2)},
            "ratio_to_floor_p50": round(statistics.median(work) / statistics.median(floor), 1),
            "aim_ms": RESOLVE_AIM_MS, "aim_met": statistics.median(work) < RESOLVE_AIM_MS, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puts", type=int, default=300, help="PUTs per case and server")
    parser.add_argument("--quick", action="store_true", help="a short run (60 PUTs, 10 resolutions)")
    arguments = parser.parse_args()
    puts, runs = (60, 10) if arguments.quick else (arguments.puts, 30)
    result: dict[str, Any] = {"benchmark": "rules", "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, check=False).stdout.strip()}}
    log("resolving a 5,000-key configuration")
    result["resolve_5000_keys"] = resolution(runs)
    folder = Path(tempfile.mkdtemp(prefix="apphub-bench-rules-"))
    with server(folder, rules=True) as on, server(folder, rules=False) as off:
        clients = {"rules_on": on, "rules_off": off}
        for name, make in (("plain_key", plain), ("port_key", port_key), ("password_key", password)):
            log(f"PUT of a {name.replace('_', ' ')}: {puts} per server")
            result[f"put_{name}"] = summary(time_puts(clients, make, puts, warmup=20))
    result["put_plain_key"]["aim_ratio"] = PUT_RATIO_AIM
    result["put_plain_key"]["aim_met"] = result["put_plain_key"]["ratio_p50"] <= PUT_RATIO_AIM
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
