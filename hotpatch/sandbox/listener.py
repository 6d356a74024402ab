"""The sandbox's TCP listener: a cap on open connections, TLS with a handshake deadline.

asyncio accepts a connection and, with TLS, spends up to a minute on a handshake that a stalled
client never finishes, with no cap on how many such connections pile up. Here every accepted
connection is counted at once; at the cap, the oldest connection that is not serving a request
(still shaking hands, or idle before its request headers) is cut to make room, so stalled
clients can hold at most the cap and never lock a working client out. The TLS handshake runs
under `handshake_seconds`; after it, aiohttp's keep-alive timer (armed when the connection
opens, and between requests) closes a connection whose request headers have not all arrived.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler


@dataclass(slots=True)
class _Connection:
    raw: asyncio.Transport
    handler: RequestHandler | None = None

    @property
    def busy(self) -> bool:
        """Serving a request: never cut to make room."""
        return self.handler is not None and bool(self.handler._request_in_progress)


class Listener:
    """Accepts connections for `server` under a cap, and upgrades each to TLS."""

    def __init__(
        self,
        server: web.Server,
        ssl_context: ssl.SSLContext,
        *,
        max_connections: int,
        handshake_seconds: float,
    ) -> None:
        self._server = server
        self._ssl = ssl_context
        self.max_connections = max_connections
        self.handshake_seconds = handshake_seconds
        #: Open connections, oldest first.
        self._open: dict[asyncio.Transport, _Connection] = {}
        self._by_handler: dict[RequestHandler, asyncio.Transport] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.refused = 0
        self.evicted = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def listen(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: _Gate(self), host, port, reuse_address=True, backlog=1024
        )

    def abort_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for raw in list(self._open):
            raw.abort()
        self._open.clear()
        self._by_handler.clear()

    # -- called by the gates ----------------------------------------------------------------

    def admit(self, raw: asyncio.Transport) -> bool:
        if len(self._open) >= self.max_connections:
            idle = next((c for c in self._open.values() if not c.busy), None)
            if idle is None:
                self.refused += 1
                return False
            self.evicted += 1
            self.forget(idle.raw)
            idle.raw.abort()
        self._open[raw] = _Connection(raw)
        task = asyncio.get_running_loop().create_task(self._upgrade(raw))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def forget(self, raw: asyncio.Transport) -> None:
        connection = self._open.pop(raw, None)
        if connection is not None and connection.handler is not None:
            self._by_handler.pop(connection.handler, None)

    async def _upgrade(self, raw: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        handler = self._server()
        try:
            secure = await loop.start_tls(
                raw,
                handler,
                self._ssl,
                server_side=True,
                ssl_handshake_timeout=self.handshake_seconds,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, RuntimeError):
            self.forget(raw)
            raw.abort()
            return
        if secure is None or raw not in self._open:
            # Cut while shaking hands.
            raw.abort()
            return
        self._open[raw].handler = handler
        self._by_handler[handler] = raw
        handler.connection_made(secure)

    def handler_closed(self, handler: RequestHandler) -> None:
        raw = self._by_handler.pop(handler, None)
        if raw is not None:
            self.forget(raw)


class ListenedServer(web.Server):
    """aiohttp's low-level server, telling the listener when a connection's handler ends."""

    listener: Listener | None = None
    #: The largest request body `request.read()` accepts (413 beyond).
    max_body_bytes: int = 1024 * 1024

    def _make_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        # The low-level server takes no client_max_size; the request it makes does.
        return web.BaseRequest(
            message,
            payload,
            protocol,
            writer,
            task,
            asyncio.get_running_loop(),
            client_max_size=self.max_body_bytes,
        )

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        if self.listener is not None:
            self.listener.handler_closed(handler)


class _Gate(asyncio.Protocol):
    """The first protocol of every connection: counts it, then hands it to the TLS upgrade."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._raw: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # Nothing is read until the TLS protocol takes over.
        transport.pause_reading()
        if not self._listener.admit(transport):
            transport.abort()
            return
        self._raw = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._raw is not None:
            self._listener.forget(self._raw)
