"""The web console (issue 14, "Performance"), measured in Debian's Chromium driven by Playwright.

1. `first_visit`: a cold browser opens `/`, signs in and lands on the overview; every byte it
   received (Resource and Navigation Timing `transferSize`), against the aim of 150 KB.
2. `pages`: each page opened by a full load of its URL (signed in, warm cache, as a bookmark
   opens it), from the navigation's start to its content drawn (the first element that only its
   data makes; `performance.now()` in the page when a mutation shows it), against the aim of
   300 ms and against the same run's floor: the navigation to a static file of the same server.
3. `status`: the overview open, changes of a hot key of the quickstart's hello-json made through
   the API one after another; for each, from the time the sync thread recorded the service's
   status (its `updated_at`) to the time the open overview showed it (`Date.now()` in the
   page when the row changed), against the aim of 100 ms. Both clocks are this machine's.

The server is `apphub serve` in a subprocess on the quickstart (examples/quickstart/start.sh:
real supervisord), as `./run.sh` starts it.

    .venv/bin/python benchmarks/console.py [--changes 30] [--loads 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from apphub.paths import DataDir

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# What only each page's data draws: the page is ready when it is there.
PAGES = {
    "/": "table.services tbody tr[data-service]",
    "/settings/hello_json": ".settings-form .field[data-key]",
    "/history": "table.history tbody tr[data-version]",
    "/history/compare": "#services-layer",
    "/env": "[data-scope]",
    "/system": "main section h2",
    "/init": "main section table, main section p.muted",
    "/notifications": "main section h2 + *",
    "/audit": "main table.listing tbody tr",
}
AIMS = {"first_visit_kb": 150, "page_ready_ms": 300, "status_ms": 100}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 2),
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
            "max": round(ordered[-1], 2), "mean": round(statistics.fmean(ordered), 2)}


def start(folder: Path) -> tuple[subprocess.Popen[bytes], str, DataDir]:
    data = DataDir(folder / "data")
    environment = {**os.environ, "QUICKSTART_JSON_PORT": str(free_port()), "QUICKSTART_INI_PORT": str(free_port()),
                   "QUICKSTART_ENV_PORT": str(free_port()), "XDG_DATA_HOME": str(folder / "xdg")}
    environment.pop("APPHUB_DATA", None)
    subprocess.run(["bash", str(ROOT / "examples" / "quickstart" / "start.sh"), str(data.root)], check=True,
                   capture_output=True, env=environment, timeout=180)
    port = free_port()
    process = subprocess.Popen([str(Path(sys.executable).with_name("apphub")), "--data-dir", str(data.root), "serve",
                                "--port", str(port), "--log-level", "warning"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url, data
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("apphub serve did not answer /healthz within 60 s")


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_selector(PAGES["/"])


def first_visit(browser: Browser, url: str, key: str) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, url, key)
    page.wait_for_load_state("networkidle")
    entries = page.evaluate("""() => [...performance.getEntriesByType('navigation'),
                                      ...performance.getEntriesByType('resource')]
                                     .map(e => ({name: e.name, transfer: e.transferSize, body: e.encodedBodySize}))""")
    context.close()
    transferred = sum(entry["transfer"] for entry in entries)
    return {"requests": len(entries), "transferred_kb": round(transferred / 1024, 1),
            "ratio_to_aim": round(transferred / 1024 / AIMS["first_visit_kb"], 3),
            "largest": sorted(({"name": e["name"].replace(url, ""), "kb": round(e["transfer"] / 1024, 1)}
                               for e in entries), key=lambda e: -e["kb"])[:5]}


# Installed in every document before its own scripts run: notes when each page's selector first
# matches (performance.now(), from the navigation's start), at the mutation that made it match.
READY_WATCH = """(() => {
  const selectors = %s;
  window.__ready = {};
  const look = () => {
    for (const selector of selectors) {
      if (!(selector in window.__ready) && document.querySelector(selector)) {
        window.__ready[selector] = performance.now();
      }
    }
  };
  new MutationObserver(look).observe(document, {childList: true, subtree: true, attributes: true});
})();"""


def page_ready(page: Page, url: str, route: str, selector: str) -> float:
    """A full load of the page's URL; ms from the navigation's start to `selector` drawn."""
    page.goto("about:blank")
    page.goto(f"{url}/#{route}")
    handle = page.wait_for_function("s => window.__ready && window.__ready[s]", arg=selector, timeout=15000)
    return float(handle.json_value())


def floor(page: Page, url: str) -> float:
    """The same browser's full load of a static file of the same server: what no page can beat."""
    page.goto("about:blank")
    page.goto(f"{url}/favicon.ico")
    return float(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))


def pages(browser: Browser, url: str, key: str, loads: int, versions: tuple[str, str]) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(READY_WATCH % json.dumps(list(PAGES.values())))
    page = context.new_page()
    sign_in(page, url, key)
    routes = {route: (f"{route}?from={versions[0]}&to={versions[1]}" if route == "/history/compare" else route)
              for route in PAGES}
    samples: dict[str, list[float]] = {route: [] for route in PAGES}
    floors: list[float] = []
    for _ in range(loads):  # in turns, so that a noisy moment falls on every page alike
        floors.append(floor(page, url))
        for route, selector in PAGES.items():
            samples[route].append(page_ready(page, url, routes[route], selector))
    context.close()
    base = statistics.median(floors)
    found = {route: {**percentiles(values), "ratio_to_floor": round(statistics.median(values) / base, 2),
                     "ratio_to_aim": round(statistics.median(values) / AIMS["page_ready_ms"], 3)}
             for route, values in samples.items()}
    return {"floor_ms": percentiles(floors), "pages": found,
            "worst_p50_ms": max(values["p50"] for values in found.values())}


OBSERVER = """() => {
  window.__seen = [];
  const body = document.querySelector('table.services tbody');
  new MutationObserver(() => {
    const row = body.querySelector('tr[data-service="hello-json"]');
    const time = row && row.querySelector('time[datetime]');
    if (row && time) {
      window.__seen.push({at: Date.now(), state: row.dataset.state, updated: time.getAttribute('datetime')});
    }
  }).observe(body, {childList: true, subtree: true, attributes: true});
}"""


def status(browser: Browser, url: str, key: str, changes: int) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, url, key)
    page.wait_for_selector(".live[data-live=on]")
    page.evaluate(OBSERVER)
    latencies: list[float] = []
    with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
        for number in range(changes):
            color = "purple" if number % 2 else "orange"
            answer = client.put("/api/v1/settings/hello_json", params={"wait": "true"}, json={"color": color})
            answer.raise_for_status()
            version = answer.json()["version"]
            # (the wait may end with a later round than the one that applied it: read the status)
            deadline = time.monotonic() + 30
            while True:
                found = next(s for s in client.get("/api/v1/sync/status").json()["services"]
                             if s["service"] == "hello-json")
                if found["applied_version"] == version and found["state"] == "applied":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"hello-json did not apply {version}: {found}")
                time.sleep(0.05)
            recorded = found["updated_at"]
            page.wait_for_function("u => window.__seen.some(s => s.updated === u && s.state === 'applied')",
                                   arg=recorded, timeout=10000)
            shown = page.evaluate("u => window.__seen.find(s => s.updated === u && s.state === 'applied').at",
                                  recorded)
            latencies.append(shown - datetime.fromisoformat(recorded).timestamp() * 1000)
            time.sleep(0.2)
    context.close()
    found = percentiles(latencies)
    return {"change": "hello_json.color (hot: the file is rewritten, no reload)", "latency_ms": found,
            "ratio_p50_to_aim": round(found["p50"] / AIMS["status_ms"], 3),
            "ratio_p95_to_aim": round(found["p95"] / AIMS["status_ms"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=30, help="status changes measured (default 30)")
    parser.add_argument("--loads", type=int, default=5, help="full loads of each page (default 5)")
    arguments = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "console", "aims": AIMS, "git_commit": subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()}
    with tempfile.TemporaryDirectory(prefix="apphub-console-") as temporary:
        folder = Path(temporary)
        process, url, data = start(folder)
        key = data.admin_key.read_text().strip()
        try:
            with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as client:
                old = client.put("/api/v1/settings/hello_json?wait=true", json={"color": "orange"}).json()["version"]
                new = client.put("/api/v1/settings/hello_json?wait=true", json={"color": "teal"}).json()["version"]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                log("first visit")
                result["first_visit"] = first_visit(browser, url, key)
                log("pages")
                result["pages"] = pages(browser, url, key, arguments.loads, (old, new))
                log("status")
                result["status"] = status(browser, url, key, arguments.changes)
                browser.close()
        finally:
            process.terminate()
            process.wait(30)
            subprocess.run(["supervisorctl", "-c", str(data.root / "supervisor" / "supervisord.conf"), "shutdown"],
                           capture_output=True, timeout=30, check=False)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
