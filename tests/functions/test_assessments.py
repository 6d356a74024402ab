"""On-demand assessments through the Function App: `POST /api/assessments` on the `api`
function puts the request on the app's queue (Azurite here), `assess_request` turns it into
batches, and the worker assesses each machine once through the journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from hotpatch.functions.assessments import ASSESSMENT_QUEUE
from hotpatch.ports.store import JournalStatus
from hotpatch.remediation import Batch
from tests.functions.conftest import SUB_B, App, Out, timer
from tests.functions.test_remediation_queue import message
from tests.integration.azurite import azurite_connection_string

__all__ = ["azurite_connection_string"]

pytestmark = pytest.mark.sandbox


def post(app: App, path: str, body: dict[str, Any]) -> func.HttpResponse:
    request = func.HttpRequest(
        method="POST",
        url=f"https://app.azurewebsites.net{path}",
        body=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    response: func.HttpResponse = asyncio.run(
        app.functions["api"].get_user_function()(request, None)
    )
    return response


def received(connection: str) -> list[func.QueueMessage]:
    """Take the messages waiting on the assessment queue, as the host would hand them over."""
    client = QueueClient.from_connection_string(
        connection, ASSESSMENT_QUEUE, message_decode_policy=TextBase64DecodePolicy()
    )
    with client:
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        taken = list(client.receive_messages(max_messages=32))
        for item in taken:
            client.delete_message(item)
    return [message(str(item.content), id=str(item.id)) for item in taken]


@pytest.fixture
def app(function_app: App, azurite_connection_string: str) -> App:
    function_app.environ["AzureWebJobsStorage"] = azurite_connection_string
    return function_app


def test_an_assessment_asked_over_http_is_queued_batched_and_run_once_per_machine(app: App) -> None:
    app.call("sweep", timer())
    vm0 = next(i for i in app.host.store().latest_verdicts().rows if i.name == "vm0").id

    answer = post(app, "/api/assessments", {"subscriptions": [SUB_B], "machines": [vm0]})

    assert answer.status_code == 202, answer.get_body()
    accepted = json.loads(answer.get_body())
    (queued,) = received(app.environ["AzureWebJobsStorage"])
    batches: Out[list[str]] = Out()
    app.call("assess_request", queued, batches)
    cut = [Batch.from_json(text) for text in batches.value or []]
    assert sorted(len(b.operations) for b in cut) == [1, 1]  # one per subscription
    run = app.store.run(accepted["id"])
    assert run is not None
    assert run.outcome == "queued"

    for batch in cut:
        app.call("remediate_batch", message(batch.to_json()))
        app.call("remediate_batch", message(batch.to_json(), dequeue_count=2))

    assert app.assessed() == ["far0", "vm0"]
    assert {r.status for r in app.store.journal()} == {JournalStatus.SUCCEEDED}


def test_in_report_mode_an_assessment_is_refused_and_nothing_is_queued(app: App) -> None:
    del app.environ["HOTPATCH_REMEDIATION_POLICY"]

    answer = post(app, "/api/assessments", {"subscriptions": [SUB_B]})

    assert answer.status_code == 503
    assert "report mode" in json.loads(answer.get_body())["detail"]
    assert received(app.environ["AzureWebJobsStorage"]) == []
