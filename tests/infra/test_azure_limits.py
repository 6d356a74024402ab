"""What Azure takes, beyond what parses: every value a parameter allows turns into something the
service accepts (log search alert windows and frequencies), and what the README tells an operator
to run reads outputs the way ARM returns them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tree_sitter import Node

from tests.infra.bicep import INFRA, modules, params, parse, properties, resources, variables

MAIN = parse(INFRA / "main.bicep")
ALERTS = parse(INFRA / "modules" / "alerts.bicep")

#: The durations a log search alert rule takes, as Azure Monitor spells them. A window
#: (windowSize) is one of the service's granularities, 5 minutes to 2 days; "Supported
#: granularities are: 5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440, 2880" is its answer
#: to any other: https://github.com/Azure/azure-rest-api-specs/issues/21258. A frequency
#: (evaluationFrequency) is 1 minute to 1 day, in the same steps:
#: https://github.com/hashicorp/terraform-provider-azurerm/pull/18960
WINDOWS = {
    *(f"PT{minutes}M" for minutes in (5, 10, 15, 30, 45)),
    *(f"PT{hours}H" for hours in range(1, 7)),
    "P1D",
    "P2D",
}
FREQUENCIES = {
    *(f"PT{minutes}M" for minutes in (1, 5, 10, 15, 30, 45)),
    *(f"PT{hours}H" for hours in range(1, 7)),
    "P1D",
}


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def evaluate(node: Node, rule: dict[str, int]) -> Any:
    """A Bicep expression over `rule.<field>` as ARM evaluates it: numbers, strings with
    interpolations, parentheses, ternaries and the arithmetic and comparisons it uses."""
    named = [child for child in node.children if child.is_named]
    if node.type == "number":
        return int(_text(node))
    if node.type == "member_expression":
        owner, field = named
        assert _text(owner) == "rule", _text(node)
        return rule[_text(field)]
    if node.type == "parenthesized_expression":
        return evaluate(named[0], rule)
    if node.type == "ternary_expression":
        condition, yes, no = named
        return evaluate(yes if evaluate(condition, rule) else no, rule)
    if node.type == "binary_expression":
        left, operator, right = node.children
        a, b = evaluate(left, rule), evaluate(right, rule)
        operations = {"%": a % b if b else None, "/": a // b if b else None, "==": a == b}
        return operations[_text(operator)]
    if node.type == "string":
        parts = []
        for child in node.children:
            if child.type == "string_content":
                parts.append(_text(child))
            elif child.type == "interpolation":
                (inner,) = [c for c in child.children if c.is_named]
                parts.append(str(evaluate(inner, rule)))
        return "".join(parts)
    raise AssertionError(f"cannot evaluate {node.type}: {_text(node)!r}")


def _object(node: Node) -> dict[str, Node]:
    return {
        _text(child.children[0]).strip("'"): child.children[-1]
        for child in node.children
        if child.type == "object_property"
    }


def _rule_fields() -> dict[str, dict[str, str]]:
    """Each alert rule's fields that name an alerts module parameter, by rule name."""
    found = {}
    for item in variables(ALERTS)["rules"].children:
        if item.type == "object":
            fields = _object(item)
            name = _text(fields["name"]).strip("'")
            found[name] = {
                key: _text(value) for key, value in fields.items() if value.type == "identifier"
            }
    return found


def _main_parameter(module_parameter: str) -> str:
    """The main.bicep parameter passed to an alerts module parameter."""
    (call,) = [module for module in modules(MAIN) if module.path == "modules/alerts.bicep"]
    (arguments,) = properties(call.node, "params")
    return _text(_object(arguments)[module_parameter])


def _allowed_values(rule: str, field: str) -> list[int]:
    declared = {param.name: param for param in params(MAIN)}
    parameter = declared[_main_parameter(_rule_fields()[rule][field])]
    assert parameter.allowed is not None, f"{parameter.name} allows values Azure refuses"
    return [int(value) for value in parameter.allowed]


def _duration(name: str) -> Node:
    (value,) = properties(ALERTS.root, name)
    return value


def test_the_evaluator_reads_the_ternaries_the_rules_use() -> None:
    frequency = _duration("evaluationFrequency")
    assert evaluate(frequency, {"frequencyMinutes": 1440}) == "P1D"
    assert evaluate(frequency, {"frequencyMinutes": 120}) == "PT2H"
    assert evaluate(frequency, {"frequencyMinutes": 45}) == "PT45M"


@pytest.mark.parametrize("rule", sorted(_rule_fields()))
def test_every_window_main_bicep_allows_is_a_granularity_azure_monitor_takes(rule: str) -> None:
    window = _duration("windowSize")
    for hours in _allowed_values(rule, "windowHours"):
        assert evaluate(window, {"windowHours": hours}) in WINDOWS, (rule, hours)


@pytest.mark.parametrize("rule", sorted(_rule_fields()))
def test_every_frequency_main_bicep_allows_is_one_azure_monitor_takes(rule: str) -> None:
    frequency = _duration("evaluationFrequency")
    for minutes in _allowed_values(rule, "frequencyMinutes"):
        assert evaluate(frequency, {"frequencyMinutes": minutes}) in FREQUENCIES, (rule, minutes)


def test_a_window_of_a_day_is_written_as_a_day() -> None:
    assert evaluate(_duration("windowSize"), {"windowHours": 24}) == "P1D"
    assert evaluate(_duration("windowSize"), {"windowHours": 48}) == "P2D"


def test_webhook_urls_are_secure_parameters_all_the_way_to_the_action_group() -> None:
    main = {param.name: param for param in params(MAIN)}
    module = {param.name: param for param in params(ALERTS)}
    passed_as = [name for name in module if _main_parameter(name) == "alertWebhooks"]

    assert main["alertWebhooks"].secure
    assert main["alertWebhooks"].type == "object"
    assert passed_as == ["webhooks"]
    assert module["webhooks"].secure
    assert module["webhooks"].type == "object"
    (receivers,) = properties(ALERTS.root, "webhookReceivers")
    assert "items(webhooks)" in _text(receivers)


def test_no_output_carries_a_webhook() -> None:
    for bicep in (MAIN, ALERTS):
        outputs = [line for line in bicep.text.splitlines() if line.startswith("output ")]
        assert outputs
        assert not [line for line in outputs if "ebhook" in line], bicep.path.name


def test_every_output_the_readme_reads_with_the_cli_is_declared_and_camel_case() -> None:
    # ARM does not keep the case of output names (azd works around it for its own upper-case
    # ones: https://github.com/Azure/azure-dev/issues/512), so a JMESPath query for
    # AZURE_FUNCTION_APP_NAME may find nothing; a name that starts lower-case comes back as is.
    readme = (INFRA.parent / "README.md").read_text(encoding="utf-8")
    read = set(re.findall(r"properties\.outputs\.(\w+)\.value", readme))
    declared = {
        line.split()[1]
        for line in MAIN.text.splitlines()
        if line.startswith("output ") and len(line.split()) > 1
    }

    assert read
    assert read <= declared
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", name) for name in read), read


def test_the_operator_role_is_assigned_under_each_subscription_s_own_id() -> None:
    # The role is defined in the first target subscription; ARM records an assignment in another
    # one under that subscription's id (Azure/azure-rest-api-specs#10939), so the template names
    # it that way too, by the role's GUID.
    scope_roles = parse(INFRA / "modules" / "scope-roles.bicep")
    [_, operator] = [
        resource
        for resource in resources(scope_roles)
        if resource.type == "Microsoft.Authorization/roleAssignments"
    ]
    [role] = properties(operator.node, "roleDefinitionId")
    (call,) = [module for module in modules(MAIN) if module.path == "modules/scope-roles.bicep"]

    assert _text(role) == (
        "subscriptionResourceId('Microsoft.Authorization/roleDefinitions', operatorRoleName)"
    )
    assert "operatorRoleName: remediate ? operatorRole!.outputs.name : ''" in _text(call.node)


def test_signed_in_callers_tokens_match_the_issuer_and_audiences_easy_auth_checks() -> None:
    # App Service Authentication is set up with the v2.0 issuer; the README has the Entra app
    # issue v2 access tokens (issuer .../v2.0, audience the client id), and both audiences an
    # access token for the app can carry are allowed.
    app = parse(INFRA / "modules" / "function-app.bicep")
    [issuer] = properties(app.root, "openIdIssuer")
    [audiences] = properties(app.root, "allowedAudiences")
    readme = (INFRA.parent / "README.md").read_text(encoding="utf-8")

    assert _text(issuer).endswith("/v2.0'")
    assert [_text(item) for item in audiences.children if item.is_named] == [
        "'api://${entraClientId}'",
        "entraClientId",
    ]
    assert """--body '{"api":{"requestedAccessTokenVersion":2}}'""" in readme


#: Azure Storage names: a queue or blob container is 3-63 lower-case letters, digits and single
#: hyphens between them; a table 3-63 letters and digits, starting with a letter.
_QUEUE_OR_CONTAINER = re.compile(r"(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*")
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
#: What uniqueString() makes (13 lower-case letters and digits), for names built on it.
_TOKEN = "a1b2c3d4e5f6g"


def _names(variable: str) -> list[str]:
    value = variables(MAIN)[variable]
    items = value.children if value.type == "array" else [value]
    return [
        _text(item)[1:-1].replace("${resourceToken}", _TOKEN)
        for item in items
        if item.type == "string"
    ]


def test_the_queues_and_containers_have_names_azure_storage_takes() -> None:
    names = [*_names("queues"), *_names("storeContainer"), *_names("deploymentContainer")]
    assert len(names) == 5
    assert [name for name in names if not _QUEUE_OR_CONTAINER.fullmatch(name)] == []


def test_the_tables_have_names_azure_storage_takes() -> None:
    names = _names("storeTables")
    assert names
    assert [name for name in names if not _TABLE.fullmatch(name)] == []


def test_the_name_rules_refuse_what_azure_refuses() -> None:
    for refused in ("Hotpatch", "hotpatch--batches", "-hotpatch", "hotpatch-", "ab", "a" * 64):
        assert not _QUEUE_OR_CONTAINER.fullmatch(refused), refused
    for refused in ("hotpatch-runs", "1hotpatch", "ab"):
        assert not _TABLE.fullmatch(refused), refused
