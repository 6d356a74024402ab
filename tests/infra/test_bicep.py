"""Every Bicep file under infra/ parses, every module it calls or file it imports exists, and the
README lists every parameter of the two deployments once, with its default; azd, the app package
and the Entra app roles line up with the code."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
import yaml

from hotpatch.api.access import OPERATE_ROLE, READ_ROLE
from tests.infra.bicep import (
    INFRA,
    bicep_files,
    imports,
    modules,
    params,
    parse,
    resources,
    string_literal,
    syntax_problems,
    variables,
)

FILES = bicep_files()


def test_infra_holds_the_main_template_and_its_modules() -> None:
    assert INFRA / "main.bicep" in FILES
    assert any(path.parent == INFRA / "modules" for path in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(INFRA)))
def test_each_bicep_file_parses_without_an_error_or_a_missing_node(path: Path) -> None:
    assert syntax_problems(parse(path)) == []


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(INFRA)))
def test_each_module_a_bicep_file_calls_is_a_file_beside_it(path: Path) -> None:
    for module in modules(parse(path)):
        assert (path.parent / module.path).is_file(), f"{path.name}: module {module.symbol}"


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(INFRA)))
def test_each_file_a_bicep_file_imports_from_is_a_file_beside_it(path: Path) -> None:
    for imported in imports(parse(path)):
        assert (path.parent / imported).is_file(), f"{path.name}: import from {imported}"


def test_the_reader_sees_a_broken_file_as_broken(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bicep"
    broken.write_text("param location string =\nresource x 'A/b@1' = {\n", encoding="utf-8")

    assert syntax_problems(parse(broken)) != []


#: A row of a parameter table: | `name` | default | meaning |
_ROW = re.compile(r"^\| `(?P<name>[A-Za-z0-9_]+)` \| (?P<default>[^|]*) \|", re.MULTILINE)
_CODE = re.compile(r"`([^`]*)`")


def readme_parameter_rows(heading: str) -> list[tuple[str, str]]:
    """The (name, default cell) rows under a README heading of the Deployment section, down to
    the next `###` heading (the alert parameters' table between its markers included)."""
    text = (INFRA.parent / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Deployment\n", 1)[1].split("\n## ", 1)[0]
    table = section.split(f"\n### {heading}\n", 1)[1].split("\n### ", 1)[0]
    return [(row["name"], row["default"].strip()) for row in _ROW.finditer(table)]


def _documented_default(cell: str) -> str | None:
    """The default a README cell states: its first code span, or None when it says none."""
    if cell.startswith("none"):
        return None
    found = _CODE.match(cell)
    assert found, f"a default is `code` or 'none ...': {cell!r}"
    return found.group(1)


@pytest.mark.parametrize(
    ("template", "heading"),
    [
        ("main.bicep", "Parameters of `infra/main.bicep`"),
        ("management-group.bicep", "Parameters of `infra/management-group.bicep`"),
    ],
)
def test_the_readme_lists_every_parameter_once_with_its_default(
    template: str, heading: str
) -> None:
    declared = {param.name: param for param in params(parse(INFRA / template))}
    rows = readme_parameter_rows(heading)
    names = [name for name, _ in rows]

    assert len(names) == len(set(names)), "a parameter is listed twice"
    assert set(names) == set(declared)
    for name, cell in rows:
        default = declared[name].default
        expected = None if default is None else " ".join(default.split())
        assert _documented_default(cell) == expected, name


def test_every_parameter_says_what_it_is_for() -> None:
    for path in (INFRA / "main.bicep", INFRA / "management-group.bicep"):
        for param in params(parse(path)):
            assert param.description, f"{path.name}: {param.name} has no @description"


def test_azd_deploys_the_repository_to_the_service_the_bicep_tags() -> None:
    azure = yaml.safe_load((INFRA.parent / "azure.yaml").read_text(encoding="utf-8"))
    [(service, spec)] = azure["services"].items()
    main = parse(INFRA / "main.bicep")

    assert spec == {"project": ".", "language": "python", "host": "function"}
    assert azure["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert string_literal(variables(main)["serviceName"]) == service
    site = resources(parse(INFRA / "modules" / "function-app.bicep"), "Microsoft.Web/sites")[0]
    assert "'azd-service-name': serviceName" in (site.node.text or b"").decode()


def test_the_azd_parameters_file_names_only_parameters_and_every_required_one() -> None:
    document = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    declared = {param.name: param for param in params(parse(INFRA / "main.bicep"))}
    given = set(document["parameters"])

    assert given <= set(declared)
    assert {name for name, param in declared.items() if param.default is None} <= given


def test_the_app_package_keeps_what_the_functions_host_loads() -> None:
    ignored = [
        line.strip()
        for line in (INFRA.parent / ".funcignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kept in ("function_app.py", "host.json", "requirements.txt", "hotpatch/", "examples/"):
        assert not [pattern for pattern in ignored if fnmatch.fnmatch(kept, pattern)], kept


def test_the_entra_app_roles_are_the_ones_the_api_checks() -> None:
    roles = json.loads((INFRA / "app-roles.json").read_text(encoding="utf-8"))

    assert sorted(role["value"] for role in roles) == sorted([OPERATE_ROLE, READ_ROLE])
    assert all(role["isEnabled"] for role in roles)
    assert len({role["id"] for role in roles}) == len(roles)
