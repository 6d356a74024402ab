"""The deployment and the code name the same things: the app settings Bicep sets are the settings
object's fields (plus the host's own, each classified), the same as local.settings.example.json's;
each setting's default is the code's; and the storage account holds exactly the queues the
functions bind and the container and tables the store opens."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tree_sitter import Node

from hotpatch.api.access import OPEN_PATHS
from hotpatch.azure.queues import CONNECTION
from hotpatch.settings import PREFIX, Settings
from hotpatch.store.azure import PREFIX as STORE_PREFIX
from hotpatch.store.azure import TABLES
from hotpatch.telemetry import AUTHENTICATION_STRING_VARIABLE, CONNECTION_STRING_VARIABLE
from tests.functions.conftest import load_function_app
from tests.infra.bicep import (
    INFRA,
    object_keys,
    params,
    parse,
    properties,
    string_literal,
    variables,
)

ROOT = INFRA.parent
MAIN = parse(INFRA / "main.bicep")
FUNCTION_APP = parse(INFRA / "modules" / "function-app.bicep")

#: The settings the deployment computes from what it creates or from a parameter of another
#: name, rather than passing a parameter of the setting's own name through.
COMPUTED = {
    "subscriptions": "targetSubscriptions, or this subscription; empty with management groups",
    "management_groups": "targetManagementGroups",
    "managed_identity_client_id": "the user-assigned identity it creates",
    "remediation_policy": "remediationPolicyFile, in remediate mode only",
    "require_roles": "true exactly when entraClientId is given",
    "store": "the Blob endpoint of the storage account it creates",
}
#: The Functions host's identity-based AzureWebJobsStorage connection, beside the keys the
#: service's own queue client reads (hotpatch/azure/queues.py):
#: https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
HOST_STORAGE_KEYS = {
    f"{CONNECTION}__credential",
    f"{CONNECTION}__clientId",
    f"{CONNECTION}__blobServiceUri",
    f"{CONNECTION}__queueServiceUri",
    f"{CONNECTION}__tableServiceUri",
}
#: Keys of local.settings.example.json that only the local host reads: the worker runtime (Flex
#: Consumption takes it from functionAppConfig.runtime and refuses the setting) and Azurite's
#: connection string (in Azure the connection is identity-based, HOST_STORAGE_KEYS).
LOCAL_ONLY = {"FUNCTIONS_WORKER_RUNTIME", CONNECTION}


def settings_variables() -> set[str]:
    return {PREFIX + name.upper() for name in Settings.model_fields}


def bicep_app_settings() -> dict[str, Node]:
    """The service's settings main.bicep hands the function app module, by name."""
    [function_app] = [
        m for m in MAIN.root.children if b"modules/function-app.bicep" in (m.text or b"")
    ]
    [settings] = properties(function_app, "appSettings")
    found = {}
    for child in settings.children:
        if child.type == "object_property":
            key = child.children[0]
            found[(key.text or b"").decode()] = child.children[-1]
    return found


def host_settings() -> list[str]:
    return object_keys(variables(FUNCTION_APP)["hostSettings"])


def template_settings() -> set[str]:
    template = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))
    return set(template["Values"])


def test_bicep_sets_every_setting_of_the_settings_object_and_no_other() -> None:
    assert set(bicep_app_settings()) == settings_variables()


def test_local_settings_example_holds_the_same_settings() -> None:
    in_template = {name for name in template_settings() if name.startswith(PREFIX)}
    assert in_template == settings_variables()


def test_every_other_setting_bicep_sets_is_the_host_s_storage_connection_or_telemetry() -> None:
    others = set(host_settings())
    assert others == HOST_STORAGE_KEYS | {
        CONNECTION_STRING_VARIABLE,
        AUTHENTICATION_STRING_VARIABLE,
    }
    assert not {name for name in others if name.startswith(PREFIX)}


def test_every_other_key_of_the_local_template_is_local_only() -> None:
    others = {name for name in template_settings() if not name.startswith(PREFIX)}
    assert others == LOCAL_ONLY


def test_the_queue_client_s_identity_based_settings_are_among_those_bicep_sets() -> None:
    source = (ROOT / "hotpatch" / "azure" / "queues.py").read_text(encoding="utf-8")
    for suffix in ("__queueServiceUri", "__clientId"):
        assert f'f"{{CONNECTION}}{suffix}"' in source
        assert CONNECTION + suffix in host_settings()


def test_every_app_setting_a_binding_names_is_one_bicep_sets() -> None:
    named = set()
    for function in load_function_app().app.get_functions():
        for binding in function.get_bindings():
            for value in binding.get_dict_repr().values():
                if isinstance(value, str) and value.startswith("%") and value.endswith("%"):
                    named.add(value.strip("%"))
    assert named
    assert named <= set(bicep_app_settings()) | set(host_settings())


def _bicep_literal(value: Any) -> str:
    """The Bicep literal a parameter's default must be to equal the code's default."""
    if value is None or value == ():
        return "''"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return f"'{value}'"


def _parameter_of(value: Node) -> str | None:
    """The parameter a setting's value passes through: `name`, `string(name)`, or
    `name ? 'true' : 'false'`."""
    if value.type == "identifier":
        return (value.text or b"").decode()
    if value.type == "call_expression":
        function = value.child_by_field_name("function")
        arguments = value.child_by_field_name("arguments")
        inner = [c for c in arguments.children if c.is_named] if arguments is not None else []
        if function is not None and function.text == b"string" and len(inner) == 1:
            return _parameter_of(inner[0])
    if value.type == "ternary_expression":
        condition, *_ = [child for child in value.children if child.is_named]
        branches = [string_literal(c) for c in value.children if c.is_named and c.type == "string"]
        if condition.type == "identifier" and branches == ["true", "false"]:
            return (condition.text or b"").decode()
    return None


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_each_setting_s_parameter_defaults_to_the_code_s_default(name: str) -> None:
    value = bicep_app_settings()[PREFIX + name.upper()]
    parameter = _parameter_of(value)
    if name in COMPUTED:
        assert parameter is None, f"{name} is computed: {COMPUTED[name]}"
        return
    declared = {param.name: param for param in params(MAIN)}
    assert parameter in declared, f"{PREFIX}{name.upper()} passes no parameter through"
    field = Settings.model_fields[name]
    assert declared[parameter].default == _bicep_literal(field.default)
    description = declared[parameter].description or ""
    assert description.startswith(f"{PREFIX}{name.upper()}:")


def _strings(node: Node) -> list[str]:
    return [string_literal(item) for item in node.children if item.type == "string"]


def test_the_store_s_container_and_tables_are_the_ones_the_store_opens() -> None:
    found = variables(MAIN)
    assert string_literal(found["storeContainer"]) == STORE_PREFIX
    assert _strings(found["storeTables"]) == [STORE_PREFIX + name for name in TABLES]
    [storage] = [m for m in MAIN.root.children if b"modules/storage.bicep" in (m.text or b"")]
    [containers] = properties(storage, "containers")
    assert "storeContainer" in (containers.text or b"").decode()
    assert [(node.text or b"").decode() for node in properties(storage, "tables")] == [
        "storeTables"
    ]


def test_the_queues_are_the_ones_the_functions_bind() -> None:
    bound = set()
    for function in load_function_app().app.get_functions():
        for binding in function.get_bindings():
            spec = binding.get_dict_repr()
            if spec["type"] in {"queue", "queueTrigger"}:
                assert spec["connection"] == CONNECTION
                bound.add(spec["queueName"])
    queues = _strings(variables(MAIN)["queues"])
    assert len(queues) == len(set(queues))
    assert set(queues) == bound
    [storage] = [m for m in MAIN.root.children if b"modules/storage.bicep" in (m.text or b"")]
    assert [(node.text or b"").decode() for node in properties(storage, "queues")] == ["queues"]


def test_the_storage_account_allows_no_shared_key() -> None:
    storage = parse(INFRA / "modules" / "storage.bicep")
    [value] = properties(storage.root, "allowSharedKeyAccess")
    assert (value.text or b"").decode() == "false"


def test_the_app_runs_python_3_11_on_flex_consumption_as_the_user_assigned_identity() -> None:
    root = FUNCTION_APP.root
    [runtime] = properties(root, "runtime")
    assert [(c.text or b"").decode() for c in properties(runtime, "version")] == ["'3.11'"]
    assert [(c.text or b"").decode() for c in properties(runtime, "name")] == ["'python'"]
    assert "'FlexConsumption'" in [(c.text or b"").decode() for c in properties(root, "tier")]
    [authentication] = properties(root, "authentication")
    assert [(c.text or b"").decode() for c in properties(authentication, "type")] == [
        "'UserAssignedIdentity'"
    ]


def test_app_service_authentication_leaves_open_exactly_the_api_s_open_paths() -> None:
    [function_app] = [
        m for m in MAIN.root.children if b"modules/function-app.bicep" in (m.text or b"")
    ]
    [paths] = properties(function_app, "openPaths")
    assert set(_strings(paths)) == OPEN_PATHS
    [excluded] = properties(FUNCTION_APP.root, "excludedPaths")
    assert (excluded.text or b"").decode() == "openPaths"
