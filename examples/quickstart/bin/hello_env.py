"""hello-env: a demo service of apphub's quickstart that takes its settings as environment
variables only (stdlib only).

    python hello_env.py

It reads `HELLO_PORT` (where to listen) and shows every variable whose name starts with `HELLO_`
or `APP_` (not the rest: supervisord passes on the environment it was started in). supervisord starts it from its own program file, whose `environment=`
apphub writes: `HELLO_PORT` and `HELLO_MOTD` are mapped from config.ini ([hello_env]), and any
variable set with `apphub env set hello-env NAME VALUE` (or in [global]) comes along. A process
only sees new variables when it is started again: apphub has supervisord reread the file and
restart this program only.

    GET /         a page listing its environment (a variable named like a secret is masked)
    GET /health   200 {"status": "ok", "pid": ..., "env": {...}}

Until `HELLO_PORT` is set it waits (apphub sets it on its first sync).
"""

from __future__ import annotations

import html
import http.server
import json
import os
import sys
import time
from typing import Any

SHOWN_PREFIXES = ("HELLO_", "APP_")
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "KEY")


def shown_env() -> dict[str, str]:
    found = {}
    for name, value in sorted(os.environ.items()):
        if name.startswith(SHOWN_PREFIXES):
            found[name] = "********" if any(word in name for word in SECRET_WORDS) else value
    return found


def main() -> None:
    port_text = os.environ.get("HELLO_PORT")
    if port_text is None:
        print("hello-env: waiting for HELLO_PORT (apphub sets it on its first sync)", flush=True)
        while True:
            time.sleep(3600)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        print(f"hello-env: HELLO_PORT must be a port number, not {port_text!r}", file=sys.stderr, flush=True)
        sys.exit(1)
    port = int(port_text)
    env = shown_env()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                body = {"status": "ok", "service": "hello-env", "pid": os.getpid(), "env": env}
                self._send(200, "application/json", json.dumps(body) + "\n")
            elif self.path == "/":
                rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in env.items())
                motd = html.escape(os.environ.get("HELLO_MOTD", ""))
                self._send(200, "text/html; charset=utf-8",
                           f"<!doctype html><meta charset='utf-8'><title>hello-env</title><h1>{motd}</h1>"
                           f"<p>hello-env, pid {os.getpid()}: its environment</p><table>{rows}</table>\n")
            else:
                self._send(404, "text/plain", "not found\n")

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
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        print(f"hello-env: cannot listen on 127.0.0.1:{port}: {exc.strerror}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"hello-env: pid {os.getpid()} serving http://127.0.0.1:{port}/ with {len(env)} variables", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
