"""The HTTP compliance API inside the Function App: the `api` function answers the host's
HttpRequests through func.AsgiFunctionApp, over the store the timers write; the ASGI app is
built at the first request, not at import."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import azure.functions as func
import pytest

from hotpatch.functions.http import LazyAsgiApp
from tests.functions.conftest import ESTATE, App, timer

pytestmark = pytest.mark.sandbox


def get(app: App, path: str, **params: str) -> func.HttpResponse:
    request = func.HttpRequest(
        method="GET", url=f"https://app.azurewebsites.net{path}", body=b"", params=params
    )
    response: func.HttpResponse = asyncio.run(
        app.functions["api"].get_user_function()(request, None)
    )
    return response


def test_the_api_answers_through_the_function_over_what_the_sweep_stored(function_app: App) -> None:
    assert get(function_app, "/api/health").status_code == 200

    function_app.call("sweep", timer())
    found = get(function_app, "/api/compliance", top="100")

    assert found.status_code == 200
    body: dict[str, Any] = json.loads(found.get_body())
    ids = {row["id"].casefold() for row in body["value"]}
    assert ids == {machine.casefold() for machine in ESTATE.machine_ids()}


def test_an_unknown_machine_is_a_problem_document(function_app: App) -> None:
    function_app.call("sweep", timer())

    missing = get(function_app, "/api/compliance/no-such-machine")

    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"


def test_the_asgi_app_is_built_at_its_first_request_once() -> None:
    built: list[int] = []

    async def hello(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def build() -> Any:
        built.append(1)
        return hello

    lazy = LazyAsgiApp(build)
    middleware = func.AsgiMiddleware(lazy)
    assert asyncio.run(middleware.notify_startup())
    assert built == []
    request = func.HttpRequest(method="GET", url="https://app/api/x", body=b"")
    for _ in range(2):
        assert asyncio.run(middleware.handle_async(request, None)).status_code == 204
    assert built == [1]
