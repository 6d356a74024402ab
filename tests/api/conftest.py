"""The API under test: real uvicorn servers on free loopback ports, over a 10,000-machine store."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from hotpatch.api import AssessmentAccepted, AssessmentRequest, create_app
from hotpatch.api.server import serving_in_thread
from hotpatch.bootstrap import World
from hotpatch.core.models import State
from hotpatch.ports.store import (
    JournalRecord,
    JournalStatus,
    RunKind,
    RunRecord,
    Store,
    VerdictRow,
)
from hotpatch.service import Rules
from hotpatch.settings import Settings
from hotpatch.store.memory import MemoryStore
from tests.api.estate import T0, fleet, machine, machine_id, store_snapshot

MACHINES = 10_000
KEY = "test-key-0123456789"
EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"


def world(**settings: object) -> World:
    chosen = Settings.model_validate(settings)
    return World(chosen, Rules.from_settings(chosen), lambda: T0)


def principal(*roles: str, role_claim: str = "roles") -> str:
    """An X-MS-CLIENT-PRINCIPAL as App Service Authentication writes it."""
    document = {
        "auth_typ": "aad",
        "claims": [{"typ": "name", "val": "operator@example.com"}]
        + [{"typ": role_claim, "val": role} for role in roles],
        "name_typ": "name",
        "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    }
    return base64.b64encode(json.dumps(document).encode()).decode()


@dataclass
class RecordingStarter:
    """An assessment starter that keeps what it was asked."""

    asked: list[AssessmentRequest] = field(default_factory=list)

    def __call__(self, request: AssessmentRequest) -> AssessmentAccepted:
        self.asked.append(request)
        return AssessmentAccepted(id=f"assessment-{len(self.asked)}", detail="queued")


def journal(store: Store, number: int, status: JournalStatus) -> JournalRecord:
    record = JournalRecord.start(
        machine_id(number),
        "2026-05",
        "install",
        client_request_id=f"00000000-0000-0000-0000-{number:012d}",
        now=T0,
        run_id="20260520T120000Z-remediate",
        ring="ring0",
    )
    started = store.journal_start(record)
    return store.journal_update(started.model_copy(update={"status": status}))


def fill(store: Store, size: int = MACHINES) -> list[VerdictRow]:
    """Two sweeps (machine 3 non-compliant, then compliant; machine 7 gone from the second),
    three run records, and two journalled installs of machine 3."""
    first = fleet(size)
    store_snapshot(store, "20260519T120000Z-sweep", first, T0 - timedelta(days=1))
    latest = [machine(n, State.COMPLIANT) if n == 3 else row for n, row in enumerate(first)]
    latest = [row for n, row in enumerate(latest) if n != 7]
    store_snapshot(store, "20260520T120000Z-sweep", latest, T0)
    for run_id, kind, at in (
        ("20260519T120000Z-sweep", RunKind.SWEEP, T0 - timedelta(days=1)),
        ("20260520T120000Z-sweep", RunKind.SWEEP, T0),
        ("20260520T120000Z-remediate", RunKind.REMEDIATION, T0 + timedelta(minutes=5)),
    ):
        store.save_run(
            RunRecord(
                id=run_id,
                kind=kind,
                who="tests",
                started_at=at,
                finished_at=at + timedelta(minutes=1),
                figures={"machines": len(latest)},
                outcome="succeeded",
            )
        )
    journal(store, 3, JournalStatus.SUCCEEDED)
    return latest


@pytest.fixture(scope="session")
def fleet_store() -> tuple[MemoryStore, list[VerdictRow]]:
    store = MemoryStore()
    return store, fill(store)


@pytest.fixture(scope="session")
def rows(fleet_store: tuple[MemoryStore, list[VerdictRow]]) -> list[VerdictRow]:
    return fleet_store[1]


Serve = Callable[..., AbstractContextManager[str]]


def serve(
    store: Store, api_world: World | None = None, **options: object
) -> AbstractContextManager[str]:
    app = create_app(store, api_world or world(), refresh_seconds=0, **options)  # type: ignore[arg-type]
    return serving_in_thread(app)


@pytest.fixture(scope="session")
def starter() -> RecordingStarter:
    return RecordingStarter()


@pytest.fixture(scope="session")
def api_url(
    fleet_store: tuple[MemoryStore, list[VerdictRow]], starter: RecordingStarter
) -> Iterator[str]:
    """The API over the fleet, with an API key (as `hotpatch serve`) and an assessment starter."""
    with serve(fleet_store[0], api_key=KEY, start_assessment=starter) as url:
        yield url


@pytest.fixture
def api(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, headers={"x-functions-key": KEY}, timeout=60) as client:
        yield client


def every_page(
    client: httpx.Client, params: dict[str, object] | list[tuple[str, str]]
) -> list[dict[str, object]]:
    """Every machine the filters list, following continuation tokens to the last page."""
    found: list[dict[str, object]] = []
    query = list(params.items()) if isinstance(params, dict) else list(params)
    token: str | None = None
    while True:
        asked = query + ([("continuationToken", token)] if token else [])
        answer = client.get("/api/compliance", params=asked)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        found.extend(page["value"])
        token = page["continuationToken"]
        if token is None:
            assert page["nextLink"] is None
            return found
