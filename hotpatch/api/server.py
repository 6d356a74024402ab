"""Serving the API with uvicorn, on a socket bound first so that port 0 is known before start.

`hotpatch serve` runs it in the foreground until SIGINT or SIGTERM; tests and the benchmark run
it in a thread. uvicorn is imported here only, so the Function App never loads it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

if TYPE_CHECKING:
    import uvicorn

LOOPBACK = "127.0.0.1"
#: How long a server in a thread may take to start before that is an error.
START_TIMEOUT_S = 30.0


def is_loopback(host: str) -> bool:
    """`host` names this machine only (127.0.0.0/8, ::1 or localhost)."""
    if host.casefold() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port` (port 0: a free one); OSError when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it a response's headers and body meet Nagle and delayed ACKs (40 ms a request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _server(app: ASGIApp) -> uvicorn.Server:
    import uvicorn

    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        # Keep-alive connections of a load generator or a dashboard stay open between calls.
        timeout_keep_alive=30,
    )
    return uvicorn.Server(config)


def serve(app: ASGIApp, sock: socket.socket) -> None:
    """Serve on `sock` until SIGINT or SIGTERM (uvicorn's own handlers: a graceful stop)."""
    _server(app).run(sockets=[sock])


@contextmanager
def serving_in_thread(app: ASGIApp, host: str = LOOPBACK, port: int = 0) -> Iterator[str]:
    """Serve `app` in a thread for the block; yields its base URL (`http://127.0.0.1:PORT`)."""
    sock = bind(host, port)
    server = _server(app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="hotpatch-api", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)
        sock.close()
