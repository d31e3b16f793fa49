"""Fixtures shared by every test: an initialised data folder, the Core over it, a live server.

The live server is real uvicorn on a loopback port in a thread (httpx's own tests do the same),
so the API tests go through the real HTTP stack, middleware and lifespan included.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath

import httpx
import pytest
import uvicorn

from apphub.api.app import create_app
from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.paths import DataDir

# Upstream files the tests use (copied from shared/reference, so that a clone anywhere has them).
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    """A freshly initialised data folder (Websoft9 defaults, fresh credentials and keys)."""
    data = DataDir(tmp_path / "data")
    initialise(data)
    return data


@pytest.fixture
def core(data_dir: DataDir) -> Iterator[Core]:
    opened = Core(data_dir)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def admin_key(data_dir: DataDir) -> str:
    return data_dir.admin_key.read_text().strip()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_slice() -> range:
    """The ports this process hands out: its own share of those below the kernel's ephemeral range.

    Below that range no outgoing connection takes a port behind our back, and each pytest-xdist
    worker (PYTEST_XDIST_WORKER gwN of PYTEST_XDIST_WORKER_COUNT) has a share no other worker uses,
    so a port one test was given and has not bound yet (a server it passes it to, a port it keeps
    to restart a server on) is never given to a test running beside it.
    """
    low, high = 10000, max(_ephemeral_low(), 12000)
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    number = int(worker[2:]) if worker[2:].isdigit() else 0
    share = (high - low) // count
    return range(low + share * (number % count), low + share * (number % count + 1))


_PORTS: list[int] = []  # the slice's next port, once chosen


def _bindable(port: int) -> bool:
    """Nothing at all holds `port` (no listener, no connection, on any address)."""
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nobody holds, different from every port given before in this process (until
    its slice wraps). For a test that must name a port before something binds it (a subprocess, a
    container, a server restarted on the same port); a server in this process binds port 0 instead."""
    ports = _port_slice()
    if not _PORTS:  # a random start: two runs side by side (two clones) rarely meet
        _PORTS.append(random.SystemRandom().randrange(len(ports)))
    for _ in range(len(ports)):
        port = ports[_PORTS[0] % len(ports)]
        _PORTS[0] += 1
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in {ports}")


@dataclass
class LiveServer:
    url: str
    data: DataDir
    server: uvicorn.Server

    def client(self, key: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"x-api-key": key} if key is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0, **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def serving(data: DataDir) -> Iterator[LiveServer]:
    """The API of `data` served by uvicorn on a loopback port in a thread, stopped on exit."""
    listener = socket.socket()  # bound here, so no other test can take its port before uvicorn listens
    listener.bind(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    config = uvicorn.Config(create_app(data), host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", data, server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture
def live_server(data_dir: DataDir) -> Iterator[LiveServer]:
    """The API of `data_dir`, served for the length of one test."""
    with serving(data_dir) as server:
        yield server


@pytest.fixture
def admin(live_server: LiveServer, admin_key: str) -> Iterator[httpx.Client]:
    """An HTTP client of the live server with the admin key."""
    with live_server.client(admin_key) as client:
        yield client


def is_made(state: str, marker: str | None, version_after: str | None, folder: Path) -> bool:
    """Whether an audit event of config.ini's writes was made, as apphub reads it: done, or pending
    with its staged file gone (renamed into place; the next write marks it done) or emptied by an
    undo not finished (config.ini holds its new version). `folder`: config.ini's folder, where the
    staged file its marker names is."""
    if state == "done":
        return True
    if state != "pending" or marker is None:
        return False
    staged = folder / PurePath(marker).name
    if not os.path.lexists(staged):
        return True
    on_disk = hashlib.sha256((folder / "config.ini").read_bytes()).hexdigest()[:32]
    return staged.lstat().st_size == 0 and on_disk == version_after


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked `slow` (a minute or more of a run's time) first, the rest in their order:
    run in parallel (pytest-xdist, see ./test.sh), they then start at once, on every worker,
    instead of one of them starting last and keeping the whole run waiting for it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
