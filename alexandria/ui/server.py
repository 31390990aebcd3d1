"""Serving the dashboard: a listening socket, uvicorn over the app, until Ctrl-C or SIGTERM (`serve`), or from
a thread of this process (`BackgroundServer`, for tests and benchmarks).

uvicorn gives a real HTTP/1.1 server that shuts down gracefully on Ctrl-C and SIGTERM; a dashboard left
open in a tab polls every second, which an async server handles without a thread per tab.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp

from ..errors import StoreError
from ..store import Store
from .app import create_app


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), IPv4 or IPv6 as the host is."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StoreError(f"cannot resolve host {host!r}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StoreError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _server(app: ASGIApp) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=3)
    return uvicorn.Server(config)


def serve(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    interval: float = 1.0,
    fold: bool = True,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard until Ctrl-C or SIGTERM (uvicorn shuts down gracefully on either)."""
    app = create_app(store, fold=fold, interval=interval, host=host)
    sock = bind(host, port)
    try:
        server = _server(app)
        if announce is not None:
            announce(url_of(sock))
        server.run(sockets=[sock])
        if not server.started:
            raise StoreError("the dashboard did not start (see the messages above)")
    finally:
        sock.close()


class BackgroundServer:
    """The dashboard served from a thread of this process (tests, benchmarks): `url`, then `stop()`."""

    def __init__(
        self, store: str | os.PathLike[str] | Store | None = None, *, fold: bool = True, interval: float = 1.0
    ):
        self.sock = bind("127.0.0.1", 0)
        self.port: int = self.sock.getsockname()[1]
        self.url = url_of(self.sock)
        self.server = _server(create_app(store, fold=fold, interval=interval))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise StoreError("the dashboard did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
