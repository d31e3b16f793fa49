"""What the audit event's power-loss durability costs a write: store-level writes, interleaved.

    .venv/bin/python benchmarks/write_durability.py [--slices 10] [--writes 100]

A write records its audit event before it replaces config.ini, flushed to disk (SQLite
synchronous=FULL for that one commit), so that a power loss cannot leave a version on disk whose
event is gone. This times `IniStore.update` (no HTTP) as shipped and with that one commit left to
the operating system (synchronous=NORMAL, what every other commit of the database uses), in
interleaved slices on two data folders of the same temporary file system, and prints one JSON
document: p50/p90/p99 of each and the ratios. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apphub.audit.log import Actor
from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.db import Database
from apphub.paths import DataDir

ACTOR = Actor("bench", "bench")
FLUSHED_TRANSACTION = Database.transaction


def transaction_not_flushed(self: Database, *, durable: bool = False) -> contextlib.AbstractContextManager[Any]:
    """Database.transaction with every commit left to the OS, as the other commits of the database are."""
    return FLUSHED_TRANSACTION(self, durable=False)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "mean": round(statistics.fmean(ordered), 3)}


def timed_writes(core: Core, count: int, tag: str) -> list[float]:
    samples = []
    for number in range(count):
        started = time.perf_counter_ns()
        core.config.update({"gitea": {"user_email": f"{tag}-{number}@example.com"}}, ACTOR)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=10, help="interleaved slices per variant (default 10)")
    parser.add_argument("--writes", type=int, default=100, help="writes per slice (default 100)")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary data folders")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="apphub-durability-", dir=args.tmp))
    cores: dict[str, Core] = {}
    try:
        for variant in ("durable", "not_flushed"):
            data = DataDir(folder / variant)
            initialise(data)
            cores[variant] = Core(data)
        samples: dict[str, list[float]] = {variant: [] for variant in cores}
        for number in range(args.slices):
            for variant in ("durable", "not_flushed") if number % 2 == 0 else ("not_flushed", "durable"):
                Database.transaction = (  # type: ignore[method-assign]
                    FLUSHED_TRANSACTION if variant == "durable" else transaction_not_flushed)
                timed_writes(cores[variant], 5, f"warm{number}")
                slice_ms = timed_writes(cores[variant], args.writes, f"s{number}")
                samples[variant] += slice_ms
                print(f"[durability] {number + 1}/{args.slices} {variant:12} p50 {percentiles(slice_ms)['p50']} ms",
                      file=sys.stderr, flush=True)
        Database.transaction = FLUSHED_TRANSACTION  # type: ignore[method-assign]
        figures = {variant: percentiles(values) for variant, values in samples.items()}
        result: dict[str, Any] = {
            "benchmark": "audit event durability (IniStore.update, no HTTP)",
            "writes_per_variant": args.slices * args.writes,
            "temp_folder": str(folder),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": [round(n, 2) for n in os.getloadavg()],
            "latency_ms": figures,
            "ratio_durable_to_not_flushed": {
                percentile: round(figures["durable"][percentile] / figures["not_flushed"][percentile], 3)
                for percentile in ("p50", "p90", "p99", "mean")
            },
            "cost_ms": {percentile: round(figures["durable"][percentile] - figures["not_flushed"][percentile], 3)
                        for percentile in ("p50", "p99", "mean")},
        }
    finally:
        for core in cores.values():
            core.close()
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
