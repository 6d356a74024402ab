"""The HTTP compliance API inside the Function App: an ASGI app behind `func.AsgiFunctionApp`.

The API app needs the store and the world, which are not opened at import: `LazyAsgiApp` builds
it at the first request (through the composition root, `hotpatch.api.create_app`) and answers
the ASGI lifespan itself until then. `api_function_app()` is what function_app.py builds its app
with once `hotpatch.api.create_app` exists; the Functions host checks the function key before
the app sees a request (auth level FUNCTION).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import azure.functions as func

from hotpatch.functions.host import current

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The one HTTP function's name: every route of the API goes through it.
FUNCTION_NAME = "api"


class LazyAsgiApp:
    """An ASGI app built by `build` at its first request, once (concurrent first requests wait
    for the same build)."""

    def __init__(self, build: Callable[[], AsgiApp]) -> None:
        self._build = build
        self._app: AsgiApp | None = None
        self._lock = asyncio.Lock()

    @property
    def built(self) -> bool:
        return self._app is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self._app is None:
            # Nothing to start or stop before the app exists.
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if self._app is None:
            async with self._lock:
                if self._app is None:
                    self._app = self._build()
        await self._app(scope, receive, send)


def api_app() -> AsgiApp:
    """The compliance API over this instance's store and world."""
    from hotpatch.api import create_app
    from hotpatch.functions.assessments import QueuedAssessments

    host = current()
    app: AsgiApp = create_app(host.store(), host.world(), start_assessment=QueuedAssessments(host))
    return app


def api_function_app(build: Callable[[], AsgiApp] = api_app) -> func.AsgiFunctionApp:
    """A Function App whose HTTP function serves the API (the blueprints register on it)."""
    return func.AsgiFunctionApp(
        app=LazyAsgiApp(build), http_auth_level=func.AuthLevel.FUNCTION, function_name=FUNCTION_NAME
    )
