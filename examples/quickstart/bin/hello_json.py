"""hello-json: a demo service of apphub's quickstart that reads a JSON file (stdlib only).

    python hello_json.py CONFIG.json

    {"port": 8701, "greeting": "Hello", "color": "teal", "log_requests": false}

`port` and `greeting` are read once, at start: a change needs a restart. `color` is read on
every request: a change shows at the next page view, with no reload at all (a `hot` key).
Serves on 127.0.0.1:PORT:

    GET /         a page showing its settings
    GET /health   200 {"status": "ok", ...} while it runs the settings its file holds;
                  503 when the file asks for a port or greeting it has not restarted into yet

Until its file exists and names a port it waits (apphub writes it on its first sync). A file
that is not valid makes it exit 1, as does a port it cannot listen on, so that supervisord and
apphub's health gate see the failure.
"""

from __future__ import annotations

import html
import http.server
import json
import os
import sys
import time
from typing import Any, NoReturn

RESTART_KEYS = ("port", "greeting")


def load(path: str) -> dict[str, Any]:
    """The file's settings, checked; ValueError says what is wrong, FileNotFoundError if missing."""
    with open(path, encoding="utf-8") as handle:
        settings = json.load(handle)
    if not isinstance(settings, dict):
        raise ValueError("the file must hold a JSON object")
    port = settings.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, not {port!r}")
    for key in ("greeting", "color"):
        if not isinstance(settings.get(key, ""), str):
            raise ValueError(f"{key} must be a string")
    return settings


def wait_for_config(path: str) -> dict[str, Any]:
    said = False
    while True:
        try:
            with open(path, encoding="utf-8") as handle:
                named_port = "port" in json.load(handle)
        except FileNotFoundError:
            named_port = False
        except (OSError, ValueError) as exc:
            fail(f"{path} cannot be read: {exc}")
        if named_port:
            try:
                return load(path)
            except (OSError, ValueError) as exc:
                fail(f"{path}: {exc}")
        if not said:
            print(f"hello-json: waiting for {path} to name a port (apphub writes it on its first sync)", flush=True)
            said = True
        time.sleep(0.5)


def fail(message: str) -> NoReturn:
    print(f"hello-json: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def main() -> None:
    if len(sys.argv) != 2:
        fail("usage: hello_json.py CONFIG.json")
    path = sys.argv[1]
    started = wait_for_config(path)
    started_at = time.strftime("%Y-%m-%d %H:%M:%S")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            problem: str | None
            try:
                current = load(path)  # `color` is read on every request
            except (OSError, ValueError) as exc:
                current, problem = started, f"cannot read {path}: {exc}"
            else:
                pending = [key for key in RESTART_KEYS if current.get(key) != started.get(key)]
                problem = f"{', '.join(pending)} changed in {path}: restart to apply" if pending else None
            shown = {"port": started["port"], "greeting": started.get("greeting", ""),
                     "color": current.get("color", "teal")}
            if self.path == "/health":
                body = {"status": "ok" if problem is None else "pending", "service": "hello-json", "pid": os.getpid(),
                        "started_at": started_at, "settings": shown, "problem": problem}
                self._send(200 if problem is None else 503, "application/json", json.dumps(body) + "\n")
            elif self.path == "/":
                self._send(200, "text/html; charset=utf-8", page(shown, started_at, path))
            else:
                self._send(404, "text/plain", "not found\n")
            if current.get("log_requests"):
                print(f"hello-json: GET {self.path}", flush=True)

        def _send(self, status: int, kind: str, text: str) -> None:
            data = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", started["port"]), Handler)
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{started['port']}: {exc.strerror}")
    print(f"hello-json: pid {os.getpid()} serving http://127.0.0.1:{started['port']}/ "
          f"(greeting {started.get('greeting', '')!r})", flush=True)
    server.serve_forever()


def page(settings: dict[str, Any], started_at: str, path: str) -> str:
    color = html.escape(str(settings["color"]), quote=True)
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in settings.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>hello-json</title></head>
<body style="font-family: sans-serif; border-top: 1em solid {color}; padding: 1em">
<h1>{html.escape(str(settings['greeting']))}</h1>
<p>hello-json, pid {os.getpid()}, started {html.escape(started_at)}, reading <code>{html.escape(path)}</code></p>
<table>{rows}</table>
<p><code>port</code> and <code>greeting</code> apply on a restart; <code>color</code> at once (reload this page).</p>
</body></html>
"""


if __name__ == "__main__":
    main()
