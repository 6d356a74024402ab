"""Every Bicep file under infra/ parses, and every module it calls or file it imports exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, bicep_files, imports, modules, parse, syntax_problems

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
