"""Fixtures shared by every test: an initialised data folder, the Core over it, a live server.

The live server is real uvicorn on a loopback port in a thread (httpx's own tests do the same),
so the API tests go through the real HTTP stack, middleware and lifespan included.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    port = free_port()
    config = uvicorn.Config(create_app(data), host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
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
