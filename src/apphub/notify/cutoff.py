"""Cutting off the requests a sender has in flight, so that stopping does not wait for a
destination that hangs (up to the client's timeout, 10 s).

Closing an httpx client from another thread does not wake a thread blocked reading one of its
sockets: closing a file descriptor does not interrupt a `recv` on Linux. Shutting the socket down
does: the read returns at once, and the request fails. httpx does not show a request's socket, so
they are collected through httpcore's `trace` extension, which hands over each connection's
network stream as it is opened (plain, then again once TLS is started on it):
https://www.encode.io/httpcore/extensions/#trace
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from collections.abc import Mapping
from typing import Any

# The trace events whose `return_value` is the network stream a connection will read from.
STREAM_OPENED = (".connect_tcp.complete", ".start_tls.complete")


class OpenSockets:
    """The sockets opened for requests that carry `trace` as their trace extension."""

    def __init__(self) -> None:
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()  # closed ones go with their connection
        self._lock = threading.Lock()
        self._cut = False

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's trace callback: keeps each new connection's socket."""
        if not event.endswith(STREAM_OPENED):
            return
        stream = info.get("return_value")
        found = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(found, socket.socket):
            return
        with self._lock:
            cut = self._cut
            if not cut:
                self._sockets.add(found)
        if cut:  # opened while stopping: it would hang as long as the others would have
            _shut(found)

    def cut_off(self) -> None:
        """Shut down every socket kept, and any opened from now on: what waits on one fails at once."""
        with self._lock:
            self._cut = True
            found = list(self._sockets)
        for one in found:
            _shut(one)


def _shut(found: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed already: its request is over
        found.shutdown(socket.SHUT_RDWR)
