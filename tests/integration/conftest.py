"""Fixtures for tests that run the real Azure SDK clients against the local ARM sandbox."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo

from hotpatch.sandbox.estate import Estate
from hotpatch.sandbox.server import Sandbox, SandboxConfig

#: ../shared/azure-specs next to the repository: reference shapes the sandbox must answer in.
SPECS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "azure-specs"

SUB_A = "11111111-1111-1111-1111-111111111111"
SUB_B = "22222222-2222-2222-2222-222222222222"
#: Mid-February 2026: the February hotpatch (20348.4711 / 26100.32313) is in force.
FEBRUARY = datetime(2026, 2, 20, 12, 0, tzinfo=UTC)


class StaticToken:
    """A credential that always hands out the same bearer token (the sandbox takes any)."""

    def __init__(self, token: str = "sandbox-token") -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self.token, int(time.time()) + 3600)


class AsyncStaticToken:
    """The async twin of StaticToken, for the `aio` clients."""

    def __init__(self, token: str = "sandbox-token") -> None:
        self.token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None


@dataclass
class ManualClock:
    """Real monotonic time (so pollers finish), a fixed wall clock, and a manual offset."""

    now_at: datetime = FEBRUARY
    offset: float = 0.0
    frozen: float | None = None
    _origin: float = field(default_factory=time.monotonic)

    def monotonic(self) -> float:
        base = self.frozen if self.frozen is not None else time.monotonic()
        return base + self.offset

    def now(self) -> datetime:
        return self.now_at + timedelta(seconds=self.offset)

    def freeze(self) -> None:
        self.frozen = time.monotonic()

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def vm_row(
    name: str,
    subscription: str = SUB_A,
    group: str = "rg-hotpatch",
    os_version: str | None = "10.0.20348.4648",
    hotpatch: bool = True,
    power: str = "PowerState/running",
    sku: str = "2022-datacenter-azure-edition-core",
) -> dict[str, Any]:
    """A `resources` row for one Windows VM, in the raw export shape."""
    view: dict[str, Any] = {"powerState": {"code": power}}
    if os_version is not None:
        view["osVersion"] = os_version
    return {
        "id": f"/subscriptions/{subscription}/resourceGroups/{group}/providers/"
        f"Microsoft.Compute/virtualMachines/{name}",
        "name": name,
        "type": "microsoft.compute/virtualmachines",
        "tenantId": "00000000-0000-0000-0000-0000000000aa",
        "kind": "",
        "location": "westeurope",
        "resourceGroup": group,
        "subscriptionId": subscription,
        "managedBy": "",
        "sku": None,
        "plan": None,
        "properties": {
            "storageProfile": {
                "imageReference": {
                    "publisher": "MicrosoftWindowsServer",
                    "offer": "WindowsServer",
                    "sku": sku,
                    "version": "latest",
                },
                "osDisk": {"osType": "Windows"},
            },
            "osProfile": {
                "windowsConfiguration": {
                    "provisionVMAgent": True,
                    "patchSettings": {
                        "patchMode": "AutomaticByPlatform",
                        "enableHotpatching": hotpatch,
                        "assessmentMode": "AutomaticByPlatform",
                    },
                }
            },
            "extended": {"instanceView": view},
        },
        "tags": {"hotpatch-ring": "1"},
        "identity": None,
        "zones": None,
        "extendedLocation": None,
    }


def arc_row(
    name: str, os_version: str = "10.0.26100.32230", status: str = "Connected"
) -> dict[str, Any]:
    """A `resources` row for one Azure Arc-enabled Windows Server 2025 machine."""
    return {
        "id": f"/subscriptions/{SUB_A}/resourceGroups/rg-arc/providers/"
        f"Microsoft.HybridCompute/machines/{name}",
        "name": name,
        "type": "microsoft.hybridcompute/machines",
        "location": "westeurope",
        "resourceGroup": "rg-arc",
        "subscriptionId": SUB_A,
        "properties": {
            "status": status,
            "osType": "windows",
            "osVersion": os_version,
            "osProfile": {"windowsConfiguration": {"patchSettings": {"enableHotpatching": True}}},
        },
    }


def numbered_vms(count: int, subscriptions: tuple[str, ...] = (SUB_A, SUB_B)) -> Estate:
    """`count` VMs spread over `subscriptions`, no patch rows."""
    rows = [
        vm_row(f"vm-{index:05d}", subscription=subscriptions[index % len(subscriptions)])
        for index in range(count)
    ]
    return Estate(rows, [], [])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def start_sandbox(tmp_path: Path, clock: ManualClock) -> Iterator[Callable[..., Sandbox]]:
    """Start a sandbox with the given rows and config changes; stopped after the test."""
    started: list[Sandbox] = []

    def start(rows: Estate | None = None, **changes: Any) -> Sandbox:
        config = SandboxConfig(state_dir=tmp_path / f"state-{len(started)}", **changes)
        sandbox = Sandbox(config, rows, clock=clock)
        started.append(sandbox.start())
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def specs_dir() -> Path:
    if not SPECS_DIR.is_dir():
        pytest.skip(f"the Azure REST API specs are not at {SPECS_DIR} (../shared/azure-specs)")
    return SPECS_DIR


def spec_validator(path: Path, definition: str, any_json: tuple[str, ...] = ()) -> Any:
    """A JSON Schema validator for one Swagger definition of the spec file at `path`.

    References the file does not carry (`ApiError` from common-types, `InstanceViewStatus`) are
    open objects, as the specs README says. The places named in `any_json` (paths under
    `definitions`, e.g. `QueryResponse/properties/data`) accept any JSON: AutoRest reads a bare
    `type: object` as "any value", and Azure answers that way (Resource Graph's `data` is an
    array in every example, table cells are strings and numbers, and error details carry
    `line` and `characterPositionInLine` integers).
    """
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    document = json.loads(path.read_text(encoding="utf-8"))
    definitions: dict[str, Any] = document["definitions"]

    def open_unresolved(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and (
                not ref.startswith("#/definitions/") or ref.split("/")[-1] not in definitions
            ):
                return {"type": "object"}
            return {key: open_unresolved(value) for key, value in node.items()}
        if isinstance(node, list):
            return [open_unresolved(item) for item in node]
        return node

    document = open_unresolved(document)
    for place in any_json:
        *parents, last = place.split("/")
        node = document["definitions"]
        for step in parents:
            node = node[step]
        node[last] = {}
    registry: Registry[Any] = Registry().with_resource(
        "urn:spec", Resource(contents=document, specification=DRAFT4)
    )
    return Draft4Validator({"$ref": f"urn:spec#/definitions/{definition}"}, registry=registry)
