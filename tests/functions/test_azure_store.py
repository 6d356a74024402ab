"""The Function App over the Azure store (Blob and Table Storage, Azurite here), as it runs in
Azure: HOTPATCH_STORE is a storage connection string, and every function keeps its state there."""

from __future__ import annotations

import copy

import pytest

from hotpatch.ports.store import JournalStatus, RunKind
from hotpatch.remediation import Batch
from hotpatch.sandbox.estate import Estate
from hotpatch.scheduled import RELEASE_CATALOG
from hotpatch.store.azure import AzureStore
from hotpatch.telemetry import STATE_CHANGED
from tests.functions.conftest import ESTATE, App, Out, timer
from tests.functions.test_remediation_queue import message
from tests.integration.azurite import azurite_connection_string

__all__ = ["azurite_connection_string"]

pytestmark = pytest.mark.sandbox


def test_every_function_keeps_its_state_in_blob_and_table_storage(
    function_app: App, azurite_connection_string: str
) -> None:
    function_app.environ["HOTPATCH_STORE"] = azurite_connection_string
    function_app.environ["AzureWebJobsStorage"] = azurite_connection_string

    function_app.call("catalog", timer())
    function_app.call("sweep", timer())
    rows = copy.deepcopy(ESTATE.resources)
    rows[1]["properties"]["extended"]["instanceView"]["powerState"]["code"] = (
        "PowerState/deallocated"
    )
    function_app.sandbox.load(Estate(rows, [], []))
    function_app.clock.advance(3600)
    function_app.call("sweep", timer())
    queued: Out[list[str]] = Out()
    function_app.call("remediate", timer(), queued)
    for text in queued.value or []:
        function_app.call("remediate_batch", message(text))
        function_app.call("remediate_batch", message(text, dequeue_count=2))

    store = function_app.store
    assert isinstance(store, AzureStore)
    assert store.catalog(RELEASE_CATALOG) is not None
    assert [r.outcome for r in store.runs(RunKind.SWEEP)] == ["succeeded", "succeeded"]
    (change,) = function_app.telemetry.named(STATE_CHANGED.name)
    assert change["machine_id"].casefold() == rows[1]["id"].casefold()
    batches = [Batch.from_json(text) for text in queued.value or []]
    keys = {key for batch in batches for key in batch.keys}
    assert keys
    assert {r.key for r in store.journal()} == keys
    assert {r.status for r in store.journal()} == {JournalStatus.SUCCEEDED}
    assert len(function_app.requests()) == len(keys)  # each started once
