"""hello-ini: a demo service of apphub's quickstart that reads an INI file (stdlib only).

    python hello_ini.py CONFIG.ini

    [server]
    port = 8702
    title = Hello from an INI file
    backend = http://127.0.0.1:8701/

    [auth]
    token = ...          # a secret: the page shows only a fingerprint of it

It reads the file at start, and again on SIGHUP: `title`, `backend` and `token` change without a
restart (a `reload`); `port` needs a restart (it cannot move a listening socket), so on SIGHUP a
new port is only noted. Serves on 127.0.0.1:PORT:

    GET /         a page showing its settings
    GET /health   200 {"status": "ok", ...} while it runs what its file holds; 503 when the last
                  re-read failed, or when the file changed since it last read it (waiting for SIGHUP)

Until its file exists it waits (apphub writes it on its first sync); a file that is not valid
at start, or a port it cannot listen on, makes it exit 1.
"""

from __future__ import annotations

import configparser
import hashlib
import html
import http.server
import json
import os
import signal
import sys
import threading
import time
from typing import Any, NoReturn


class Settings:
    """What the service runs with, and the bytes of the file it came from."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as handle:
            raw = handle.read()
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(raw.decode("utf-8"), source=path)
        except (UnicodeDecodeError, configparser.Error) as exc:
            raise ValueError(str(exc).splitlines()[0]) from exc
        try:
            port = parser.getint("server", "port")
        except (configparser.Error, ValueError) as exc:
            raise ValueError(f"[server] port: {exc}") from exc
        if not 1 <= port <= 65535:
            raise ValueError(f"[server] port must be from 1 to 65535, not {port}")
        self.port = port
        self.title = parser.get("server", "title", fallback="hello-ini")
        self.backend = parser.get("server", "backend", fallback="")
        self.token = parser.get("auth", "token", fallback="")
        self.digest = hashlib.sha256(raw).hexdigest()

    def shown(self) -> dict[str, Any]:
        fingerprint = hashlib.sha256(self.token.encode()).hexdigest()[:12] if self.token else "(none)"
        return {"port": self.port, "title": self.title, "backend": self.backend, "token_sha256": fingerprint}


class State:
    def __init__(self, path: str, settings: Settings) -> None:
        self.path = path
        self.settings = settings
        self.problem: str | None = None
        self.loaded_at = time.strftime("%Y-%m-%d %H:%M:%S")
        self.reloads = 0
        self.lock = threading.Lock()

    def reload(self) -> None:
        """SIGHUP: read the file again; a bad file keeps the running settings and says why."""
        try:
            fresh = Settings(self.path)
        except (OSError, ValueError) as exc:
            with self.lock:
                self.problem = f"the re-read of {self.path} failed, still running the previous settings: {exc}"
            print(f"hello-ini: {self.problem}", file=sys.stderr, flush=True)
            return
        with self.lock:
            if fresh.port != self.settings.port:
                print(f"hello-ini: port {fresh.port} takes effect at the next restart "
                      f"(still listening on {self.settings.port})", flush=True)
                fresh.port = self.settings.port
            self.settings, self.problem = fresh, None
            self.loaded_at = time.strftime("%Y-%m-%d %H:%M:%S")
            self.reloads += 1
        print(f"hello-ini: re-read {self.path} on SIGHUP (title {fresh.title!r})", flush=True)

    def health(self) -> tuple[int, dict[str, Any]]:
        with self.lock:
            settings, problem = self.settings, self.problem
        if problem is None:
            try:
                with open(self.path, "rb") as handle:
                    on_disk = hashlib.sha256(handle.read()).hexdigest()
            except OSError as exc:
                on_disk, problem = settings.digest, f"cannot read {self.path}: {exc}"
            if on_disk != settings.digest:
                problem = f"{self.path} changed since it was read (send SIGHUP, or restart for a new port)"
        body = {"status": "ok" if problem is None else "pending", "service": "hello-ini", "pid": os.getpid(),
                "loaded_at": self.loaded_at, "reloads": self.reloads, "settings": settings.shown(), "problem": problem}
        return (200 if problem is None else 503), body


def fail(message: str) -> NoReturn:
    print(f"hello-ini: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def wait_for_config(path: str) -> Settings:
    said = False
    while True:
        try:
            return Settings(path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            fail(f"{path}: {exc}")
        if not said:
            print(f"hello-ini: waiting for {path} (apphub writes it on its first sync)", flush=True)
            said = True
        time.sleep(0.5)


def main() -> None:
    if len(sys.argv) != 2:
        fail("usage: hello_ini.py CONFIG.ini")
    path = sys.argv[1]
    reload_asked = threading.Event()
    # Installed first: a SIGHUP that arrives while it still waits for its file must not kill it.
    signal.signal(signal.SIGHUP, lambda signum, frame: reload_asked.set())
    state = State(path, wait_for_config(path))

    def reloader() -> None:  # the re-read runs here, not inside the signal handler
        while True:
            reload_asked.wait()
            reload_asked.clear()
            state.reload()

    threading.Thread(target=reloader, name="reloader", daemon=True).start()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = state.health()
            if self.path == "/health":
                self._send(status, "application/json", json.dumps(body) + "\n")
            elif self.path == "/":
                self._send(200, "text/html; charset=utf-8", page(body, path))
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

    port = state.settings.port
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}")
    print(f"hello-ini: pid {os.getpid()} serving http://127.0.0.1:{port}/ (title {state.settings.title!r})",
          flush=True)
    server.serve_forever()


def page(health: dict[str, Any], path: str) -> str:
    settings = health["settings"]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in settings.items())
    backend = html.escape(settings["backend"], quote=True)
    note = f"<p><strong>{html.escape(health['problem'])}</strong></p>" if health["problem"] else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(settings['title'])}</title></head>
<body style="font-family: sans-serif; padding: 1em">
<h1>{html.escape(settings['title'])}</h1>
<p>hello-ini, pid {health['pid']}, settings read {html.escape(health['loaded_at'])}
({health['reloads']} re-read(s) on SIGHUP), from <code>{html.escape(path)}</code></p>
{note}<table>{rows}</table>
<p>Its backend: <a href="{backend}">{backend}</a>. <code>title</code> and <code>token</code> apply on SIGHUP;
<code>port</code> on a restart.</p>
</body></html>
"""


if __name__ == "__main__":
    main()
