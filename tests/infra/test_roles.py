"""The identity's roles over the machines it watches: Reader for what it reads, and a custom role
holding exactly the Azure operations the code calls, found by running the real adapters (through
the composition root, as the Function App builds them) against the sandbox for an assessment and
an install on an Azure VM and an Azure Arc machine. Nothing grants Owner, Contributor or User
Access Administrator."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tree_sitter import Node

from hotpatch import bootstrap
from hotpatch.ports.inventory import Scope
from hotpatch.ports.patch_operations import (
    InstallParameters,
    MachineRef,
    OutcomeStatus,
    RebootSetting,
)
from hotpatch.sandbox.estate import Estate
from hotpatch.sandbox.request_log import read_requests
from hotpatch.sandbox.server import Sandbox, SandboxConfig
from hotpatch.telemetry import AUTHENTICATION_STRING_VARIABLE
from tests.infra.bicep import (
    INFRA,
    Bicep,
    bicep_files,
    imports,
    parse,
    properties,
    resources,
    string_literal,
    string_values,
    variables,
)
from tests.integration.conftest import arc_row, vm_row

pytestmark = pytest.mark.sandbox

#: Built-in role definition ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
#: The data roles on the app's own storage account (modules/storage.bicep).
STORAGE_DATA_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
}
#: The identity sends telemetry to Application Insights as itself (modules/monitoring.bicep).
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
#: Roles that administer: never granted.
FORBIDDEN = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
#: azure-core's HttpLoggingPolicy: every request an Azure SDK client sends, retries and polls too.
_SDK_REQUEST_LOGGER = "azure.core.pipeline.policies.http_logging_policy"
_SDK_REQUEST = re.compile(r"Request URL: '(?P<url>[^']*)'\nRequest method: '(?P<method>[A-Z]+)'")
#: What Reader covers (Resource Graph reads what the identity may read, with `*/read`).
COVERED_BY_READER = "Reader"

SUB = r"/subscriptions/[^/]+"
GROUP = rf"{SUB}/resourceGroups/[^/]+"


@dataclass(frozen=True)
class Shape:
    """A request shape and the ARM operation (permission) it needs."""

    method: str
    path: re.Pattern[str]
    operation: Callable[[re.Match[str]], str]


#: How ARM names the permission each kind of request needs. Action paths name their own action;
#: a long-running operation's status URL needs its provider's operation-status read.
#: https://learn.microsoft.com/azure/update-manager/roles-permissions (Compute: locations/
#: operations/read; Arc: locations/updateCenterOperationResults/read). The sandbox answers Arc
#: polls at `.../Microsoft.HybridCompute/locations/{l}/operations/{id}`; either spelling of the
#: status URL needs the same permission.
SHAPES = (
    Shape(
        "POST",
        re.compile(r"^/providers/Microsoft\.ResourceGraph/resources$", re.IGNORECASE),
        lambda _: COVERED_BY_READER,
    ),
    Shape(
        "POST",
        re.compile(
            rf"^{GROUP}/providers/(?P<type>Microsoft\.(?:Compute/virtualMachines|"
            r"HybridCompute/machines))/[^/]+/(?P<action>assessPatches|installPatches)$"
        ),
        lambda found: f"{found['type']}/{found['action']}/action",
    ),
    Shape(
        "GET",
        re.compile(rf"^{SUB}/providers/Microsoft\.Compute/locations/[^/]+/operations/[^/]+$"),
        lambda _: "Microsoft.Compute/locations/operations/read",
    ),
    Shape(
        "GET",
        re.compile(
            rf"^{SUB}/providers/Microsoft\.HybridCompute/locations/[^/]+/"
            r"(?:operations|updateCenterOperationResults)/[^/]+$"
        ),
        lambda _: "Microsoft.HybridCompute/locations/updateCenterOperationResults/read",
    ),
)


def operation_of(method: str, path: str) -> str:
    for shape in SHAPES:
        found = shape.path.match(path)
        if method == shape.method and found:
            return shape.operation(found)
    raise AssertionError(f"no ARM operation known for {method} {path}: add its shape to SHAPES")


class _Requests(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.sent: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = _SDK_REQUEST.search(record.getMessage())
        if found:
            self.sent.append((found["method"], urlsplit(found["url"]).path))


@dataclass(frozen=True)
class Exercised:
    #: (method, path) of every request the SDK clients sent.
    sent: list[tuple[str, str]]
    #: (method, path) of every assess and install the sandbox logged.
    logged: list[tuple[str, str]]
    statuses: list[OutcomeStatus]


@pytest.fixture(scope="module")
def exercised(tmp_path_factory: pytest.TempPathFactory) -> Exercised:
    """A sweep's inventory read, then an assessment and an install on a VM and an Arc machine,
    through `bootstrap`'s target over the sandbox (the same `_target` as Azure's)."""
    state = tmp_path_factory.mktemp("sandbox")
    rows = [vm_row("vm-1"), arc_row("arc-1")]
    machines = [MachineRef.parse(row["id"]) for row in rows]
    config = SandboxConfig(state_dir=state, operation_latency_seconds=0.05)
    logger = logging.getLogger(_SDK_REQUEST_LOGGER)
    handler, level = _Requests(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with Sandbox(config, Estate(rows, [], [])) as sandbox:
            endpoint = bootstrap.SandboxEndpoint(sandbox.base_url, sandbox.ca_path)
            with bootstrap.sandbox_target(endpoint) as target:
                pages = list(target.inventory.list_machines(Scope()).by_page())
                assert sum(map(len, pages)) == len(rows)

                async def assess_and_install() -> list[OutcomeStatus]:
                    async with target.patch_operations() as operations:
                        assessed = await operations.assess(machines)
                        installed = await operations.install(
                            machines, InstallParameters(reboot_setting=RebootSetting.NEVER)
                        )
                    return [outcome.status for outcome in [*assessed, *installed]]

                statuses = asyncio.run(assess_and_install())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    logged = [(request.method, request.path) for request in read_requests(state)]
    return Exercised(handler.sent, logged, statuses)


def operator_role_actions(bicep: Bicep) -> list[list[str]]:
    """The actions of each custom role defined in the file: literal strings, or the
    `operatorActions` list the file imports from modules/operator-actions.bicep."""
    found = []
    for role in resources(bicep, "Microsoft.Authorization/roleDefinitions"):
        [value] = properties(role.node, "actions")
        if value.type == "identifier":
            assert value.text is not None
            name = value.text.decode()
            assert name == "operatorActions", f"{bicep.path.name}: actions from {name}"
            [source] = [path for path in imports(bicep) if path.endswith("operator-actions.bicep")]
            value = variables(parse(bicep.path.parent / source))[name]
        found.append([string_literal(item) for item in value.children if item.type == "string"])
    return found


def custom_roles() -> list[tuple[Path, Node]]:
    return [
        (path, role.node)
        for path in bicep_files()
        for role in resources(parse(path), "Microsoft.Authorization/roleDefinitions")
    ]


def test_the_run_assessed_and_installed_on_both_machines_and_polled_each_operation(
    exercised: Exercised,
) -> None:
    assert exercised.statuses == [OutcomeStatus.SUCCEEDED] * 4
    methods = [method for method, _ in exercised.sent]
    assert methods.count("POST") >= 5  # a Resource Graph query and four starts
    assert "GET" in methods


def test_the_starts_the_sdk_sent_are_the_ones_the_sandbox_logged(exercised: Exercised) -> None:
    starts = [
        (method, path)
        for method, path in exercised.sent
        if method == "POST" and "ResourceGraph" not in path
    ]
    assert sorted(starts) == sorted(exercised.logged)
    assert len(exercised.logged) == 4


def test_the_custom_role_holds_exactly_the_operations_the_code_calls(
    exercised: Exercised,
) -> None:
    called = {operation_of(method, path) for method, path in exercised.sent}
    called.discard(COVERED_BY_READER)
    roles = [actions for path in bicep_files() for actions in operator_role_actions(parse(path))]

    assert len(roles) == 2, "the subscription and the management group deployments each define it"
    for actions in roles:
        assert sorted(actions) == sorted(called)
        assert len(actions) == len(set(actions))


def test_every_request_shape_maps_to_an_operation_and_an_unknown_one_fails_loudly() -> None:
    assert operation_of("POST", "/providers/Microsoft.ResourceGraph/resources") == "Reader"
    with pytest.raises(AssertionError, match="no ARM operation known"):
        operation_of("DELETE", "/subscriptions/s/resourceGroups/g")


@pytest.mark.parametrize(("path", "role"), custom_roles(), ids=lambda item: str(item)[:40])
def test_the_custom_role_has_no_wildcard_no_data_actions_and_no_exclusions(
    path: Path, role: Node
) -> None:
    for actions in operator_role_actions(parse(path)):
        assert not [action for action in actions if "*" in action]
    for name in ("dataActions", "notActions", "notDataActions"):
        [value] = properties(role, name)
        assert value.type == "array"
        assert [child for child in value.children if child.is_named] == []


def test_reader_is_assigned_over_each_subscription_and_each_management_group() -> None:
    for name in ("modules/scope-roles.bicep", "management-group.bicep"):
        text = (INFRA / name).read_text(encoding="utf-8")
        assert READER in text, name
        [reader_assignment, _operator] = resources(
            parse(INFRA / name), "Microsoft.Authorization/roleAssignments"
        )
        assert string_values(reader_assignment.node, "principalType") == ["ServicePrincipal"]


def test_role_assignment_names_are_guids_of_scope_principal_and_role() -> None:
    for path in bicep_files():
        for assignment in resources(parse(path), "Microsoft.Authorization/roleAssignments"):
            [name] = properties(assignment.node, "name")
            text = (name.text or b"").decode()
            assert re.fullmatch(r"guid\([^,]+, principalId, [^,]+\)", text), (path.name, text)


def test_in_report_mode_the_operator_role_is_neither_defined_nor_assigned() -> None:
    main = parse(INFRA / "main.bicep")
    assert (variables(main)["remediate"].text or b"").decode() == "mode == 'remediate'"
    [definition] = [
        module for module in main.root.children if b"operator-role.bicep" in (module.text or b"")
    ]
    assert b"if (remediate" in (definition.text or b"")
    scope_roles = parse(INFRA / "modules/scope-roles.bicep")
    [_, operator] = resources(scope_roles, "Microsoft.Authorization/roleAssignments")
    assert (
        (operator.node.text or b"")
        .decode()
        .split("{", 1)[0]
        .strip()
        .endswith("if (assignOperator)")
    )
    assert "assignOperator: remediate" in (main.path.read_text(encoding="utf-8"))
    group = parse(INFRA / "management-group.bicep")
    for resource in [
        *resources(group, "Microsoft.Authorization/roleDefinitions"),
        resources(group, "Microsoft.Authorization/roleAssignments")[1],
    ]:
        assert b"= if (remediate)" in (resource.node.text or b"")


def test_no_role_id_in_infra_is_owner_contributor_or_user_access_administrator() -> None:
    allowed = {READER, *STORAGE_DATA_ROLES, MONITORING_METRICS_PUBLISHER}
    for path in bicep_files():
        text = path.read_text(encoding="utf-8")
        ids = {found.lower() for found in _GUID.findall(text)}
        assert not ids & set(FORBIDDEN), path.name
        assert ids <= allowed, f"{path.name}: unexpected role ids {ids - allowed}"


def test_no_role_is_named_owner_contributor_or_user_access_administrator() -> None:
    for path in bicep_files():
        bicep = parse(path)
        names = [
            *string_values(bicep.root, "roleName"),
            *string_values(bicep.root, "roleDefinitionName"),
        ]
        for name in names:
            assert name.strip().lower() not in {role.lower() for role in FORBIDDEN.values()}
        text = path.read_text(encoding="utf-8")
        for role in FORBIDDEN.values():
            assert f"'{role}'" not in text, (path.name, role)


def test_telemetry_is_sent_as_the_identity_and_application_insights_takes_no_key() -> None:
    monitoring = parse(INFRA / "modules/monitoring.bicep")
    [component] = resources(monitoring, "Microsoft.Insights/components")
    [local_auth_off] = properties(component.node, "DisableLocalAuth")
    assert local_auth_off.text == b"true"
    [publisher] = resources(monitoring, "Microsoft.Authorization/roleAssignments")
    assert b"monitoringMetricsPublisher" in (publisher.node.text or b"")
    assert f"'{MONITORING_METRICS_PUBLISHER}'" in monitoring.path.read_text(encoding="utf-8")
    app = (INFRA / "modules/function-app.bicep").read_text(encoding="utf-8")
    assert (
        f"{AUTHENTICATION_STRING_VARIABLE}: 'ClientId=${{identityClientId}};Authorization=AAD'"
        in app
    )


def test_the_azure_monitor_exporter_takes_the_identity_the_authentication_setting_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The service hands configure_azure_monitor no credential: the exporter reads the setting
    # itself. This holds the installed exporter to that (a private attribute: it is the only
    # place the choice is visible without sending telemetry).
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter

    monkeypatch.setenv(
        AUTHENTICATION_STRING_VARIABLE,
        "ClientId=00000000-0000-0000-0000-000000000001;Authorization=AAD",
    )
    exporter = AzureMonitorLogExporter(
        connection_string="InstrumentationKey=00000000-0000-0000-0000-000000000002"
    )
    assert isinstance(exporter._credential, ManagedIdentityCredential)
