"""The sandbox's Compute protocol: patch operations, their Location URLs, and machine reads.

`assessPatches` and `installPatches` on VMs and Arc machines start long-running operations
polled at their Location URL. The plain ARM reads other tools use (list VMs and Arc machines by
subscription and resource group, paged with `nextLink`; get one, with `$expand=instanceView`)
answer from the same estate, so another ARM client can be pointed at the same rehearsal.

Operations and their table writes run on one writer thread (the event loop runs no DuckDB
work, and the operation book is used by one thread only); reads run on the query workers.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any, Protocol, TypeVar

from aiohttp import web

from hotpatch.sandbox.arm import WindowQuota, arm_error
from hotpatch.sandbox.arm_http import AnswerNowError, json_response, read_json, with_ids
from hotpatch.sandbox.graph import GraphStore
from hotpatch.sandbox.operations import (
    Operation,
    OperationTracker,
    PatchAction,
    Started,
    StartRefusal,
)
from hotpatch.sandbox.patch_decisions import InstallRequest, InvalidParameterError

_T = TypeVar("_T")

#: ARM resource types as ARM spells them (Resource Graph lower-cases them).
# ARM spellings kept here on purpose, apart from hotpatch.core.resource_types: the sandbox is an
# independent check of the product's constants, not a reader of them.
VM_TYPE = "Microsoft.Compute/virtualMachines"
ARC_TYPE = "Microsoft.HybridCompute/machines"
_POWER_STATES = {
    "powerstate/running": "VM running",
    "powerstate/deallocated": "VM deallocated",
    "powerstate/stopped": "VM stopped",
    "powerstate/starting": "VM starting",
    "powerstate/stopping": "VM stopping",
    "powerstate/deallocating": "VM deallocating",
}
_SKIP = re.compile(r"^\d{1,12}$")


class ComputeSettings(Protocol):
    @property
    def page_size(self) -> int: ...

    @property
    def operation_latency_seconds(self) -> float: ...

    @property
    def operation_retry_after_seconds(self) -> int | None: ...

    @property
    def body_timeout_seconds(self) -> float: ...


class ComputeCounters(Protocol):
    def throttled(self) -> None: ...


class ComputeProtocol:
    """Answers the Compute and HybridCompute routes over an OperationTracker and a GraphStore."""

    def __init__(
        self,
        operations: OperationTracker,
        *,
        store: GraphStore,
        settings: ComputeSettings,
        write_quota: WindowQuota | None,
        counters: ComputeCounters,
        readable: Callable[[], frozenset[str]],
    ) -> None:
        self.operations = operations
        self.store = store
        self.settings = settings
        self._write_quota = write_quota
        self._counters = counters
        self._readable = readable

    # -- patch operations ---------------------------------------------------------------------

    async def action(
        self, request: web.BaseRequest, match: re.Match[str], writes: Executor
    ) -> web.Response:
        subscription, group = match.group("sub"), match.group("rg")
        provider, name = match.group("provider"), match.group("name")
        kind = (
            PatchAction.ASSESS
            if match.group("action").lower() == "assesspatches"
            else PatchAction.INSTALL
        )
        headers: dict[str, str] = {}
        if self._write_quota is not None:
            decision = self._write_quota.take(subscription.lower())
            headers["x-ms-ratelimit-remaining-subscription-writes"] = str(decision.remaining)
            if not decision.allowed:
                self._counters.throttled()
                headers["Retry-After"] = str(decision.retry_after)
                return json_response(429, write_throttled(), headers)
        parameters = None
        if kind is PatchAction.INSTALL:
            body = await read_json(request, headers, self.settings.body_timeout_seconds)
            try:
                parameters = InstallRequest.from_body(body)
            except InvalidParameterError as error:
                return json_response(400, arm_error("InvalidParameter", str(error)), headers)
        candidate = (
            f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{provider}/{name}"
        )
        api_version = request.query["api-version"]
        started: Started = await _on(
            writes, lambda: self.operations.start(kind, candidate, api_version, parameters)
        )
        if started.refusal is StartRefusal.NOT_FOUND:
            hybrid = provider.lower().startswith("microsoft.hybridcompute")
            return json_response(404, _not_found(ARC_TYPE if hybrid else VM_TYPE, name, group))
        if started.refusal is StartRefusal.BUSY:
            return json_response(
                409,
                arm_error(
                    "OperationNotAllowed",
                    f"Operation '{kind.value}' is not allowed on VM '{name}' since another "
                    f"operation ('{started.detail}') is in progress. Retry after it completes.",
                ),
                headers,
            )
        if started.refusal is StartRefusal.NOT_RUNNING:
            return json_response(
                409,
                arm_error(
                    "OperationNotAllowed",
                    f"Operation '{kind.value}' is not allowed on VM '{name}' since "
                    f"{started.detail}.",
                ),
                headers,
            )
        operation = started.operation
        assert operation is not None
        location = (
            f"{request.url.origin()}/subscriptions/{subscription}/providers/"
            f"{operation.provider}/locations/{operation.location}/operations/{operation.id}"
            f"?monitor=true&api-version={operation.api_version}"
        )
        headers["Location"] = location
        headers["Retry-After"] = str(self._retry_after(self.settings.operation_latency_seconds))
        return web.Response(status=202, headers=with_ids(headers))

    async def operation(
        self, request: web.BaseRequest, match: re.Match[str], writes: Executor
    ) -> web.Response:
        operation_id = match.group("op")
        found = await _on(writes, lambda: self.operations.get(operation_id))
        if found is None or not _belongs(found, match):
            # An operation is only found at the URL Azure gave for it: its subscription,
            # provider and location, not any other.
            return json_response(
                404,
                arm_error("OperationNotFound", f"The operation '{operation_id}' was not found."),
            )
        if found.result is None:
            left = self.operations.seconds_left(found)
            return web.Response(
                status=202,
                headers=with_ids(
                    {"Location": str(request.url), "Retry-After": str(self._retry_after(left))}
                ),
            )
        return json_response(200, found.result)

    def _retry_after(self, seconds_left: float) -> int:
        configured = self.settings.operation_retry_after_seconds
        return configured if configured is not None else math.ceil(seconds_left)

    # -- machine reads ------------------------------------------------------------------------

    async def read_machines(
        self, request: web.BaseRequest, match: re.Match[str], reads: Executor
    ) -> web.Response:
        """List (by subscription or resource group) or get VMs or Arc machines."""
        hybrid = match.group("provider").lower() == "microsoft.hybridcompute/machines"
        arm_type = ARC_TYPE if hybrid else VM_TYPE
        subscription = match.group("sub")
        group = match.groupdict().get("rg")
        name = match.groupdict().get("name")
        if subscription.lower() not in self._readable():
            return json_response(
                403,
                arm_error(
                    "AuthorizationFailed",
                    "The client does not have authorization to perform action "
                    f"'{arm_type}/read' over scope '/subscriptions/{subscription}' or the "
                    "scope is invalid.",
                ),
            )
        expand = request.query.get("$expand", "")
        instance_view = expand.lower() == "instanceview"
        if name is not None:
            rows = await _on(
                reads,
                lambda: self.store.machine_rows(
                    arm_type, subscription, group=group, name=name, offset=0, limit=1
                ),
            )
            if not rows:
                return json_response(404, _not_found(arm_type, name, group or ""))
            return json_response(200, arm_machine(rows[0], arm_type, instance_view))
        skip_text = request.query.get("$skiptoken", "0")
        if not _SKIP.match(skip_text):
            raise AnswerNowError(
                json_response(400, arm_error("InvalidSkipToken", "The $skiptoken is not valid."))
            )
        offset, size = int(skip_text), self.settings.page_size
        # One row more than the page says whether another page follows.
        rows = await _on(
            reads,
            lambda: self.store.machine_rows(
                arm_type, subscription, group=group, name=None, offset=offset, limit=size + 1
            ),
        )
        body: dict[str, Any] = {
            "value": [arm_machine(row, arm_type, instance_view) for row in rows[:size]]
        }
        if len(rows) > size:
            query = {**request.query, "$skiptoken": str(offset + size)}
            body["nextLink"] = str(request.url.with_query(query))
        return json_response(200, body)


async def _on(executor: Executor, work: Callable[[], _T]) -> _T:
    return await asyncio.get_running_loop().run_in_executor(executor, work)


def _belongs(operation: Operation, match: re.Match[str]) -> bool:
    machine = operation.machine
    return (
        (machine.subscription_id or "").lower() == match.group("sub").lower()
        and operation.provider.lower() == match.group("provider").lower()
        and operation.location.lower() == match.group("location").lower()
    )


def _not_found(arm_type: str, name: str, group: str) -> dict[str, Any]:
    return arm_error(
        "ResourceNotFound",
        f"The Resource '{arm_type}/{name}' under resource group '{group}' was not found. For "
        "more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def write_throttled() -> dict[str, Any]:
    return arm_error(
        "TooManyRequests",
        "The request is being throttled as the limit has been reached for operation type - "
        "Write_Subscription. Retry after the time in the Retry-After header.",
    )


def arm_machine(row: Mapping[str, Any], arm_type: str, instance_view: bool) -> dict[str, Any]:
    """A Resource Graph `resources` row as ARM's GET answers it.

    ARM's body is the resource's own: Resource Graph's additions (`extended`, and the
    `subscriptionId`/`resourceGroup`/`tenantId` columns) are not part of it; ARM spells the type
    in its own case. VM shape: ../shared/azure-specs/compute/VirtualMachine_Get*.json. An Arc
    machine's body already carries its status and OS (Resource Graph keeps them in
    `properties`), so `$expand=instanceView` adds nothing to it here.
    """
    properties = dict(row.get("properties") or {})
    extended = properties.pop("extended", None)
    body: dict[str, Any] = {
        "id": row.get("id"),
        "name": row.get("name"),
        "type": arm_type,
        "location": row.get("location"),
    }
    if row.get("tags") is not None:
        body["tags"] = row["tags"]
    for optional in ("zones", "identity", "plan", "extendedLocation"):
        if row.get(optional):
            body[optional] = row[optional]
    if arm_type == ARC_TYPE and row.get("kind"):
        body["kind"] = row["kind"]
    if instance_view and arm_type == VM_TYPE:
        properties["instanceView"] = _vm_instance_view(extended)
    body["properties"] = properties
    return body


def _vm_instance_view(extended: Any) -> dict[str, Any]:
    """`VirtualMachineInstanceView` from Resource Graph's `extended.instanceView`."""
    view = extended.get("instanceView") if isinstance(extended, Mapping) else None
    view = view if isinstance(view, Mapping) else {}
    result: dict[str, Any] = {
        key: view[key]
        for key in ("computerName", "osName", "osVersion", "hyperVGeneration")
        if view.get(key) is not None
    }
    statuses: list[dict[str, Any]] = [
        {
            "code": "ProvisioningState/succeeded",
            "level": "Info",
            "displayStatus": "Provisioning succeeded",
        }
    ]
    power = view.get("powerState")
    if isinstance(power, Mapping) and isinstance(power.get("code"), str):
        code = str(power["code"])
        statuses.append(
            {
                "code": code,
                "level": str(power.get("level") or "Info"),
                "displayStatus": str(
                    power.get("displayStatus") or _POWER_STATES.get(code.lower(), code)
                ),
            }
        )
    result["statuses"] = statuses
    return result


Route = Callable[[web.BaseRequest, re.Match[str], Executor], Awaitable[web.Response]]
