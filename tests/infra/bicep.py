"""A small reader of Bicep files over tree-sitter-bicep, for the tests that hold infra/ to the code.

    bicep = parse(path)              # a Bicep file's syntax tree
    syntax_problems(bicep)           # ERROR and MISSING nodes, as "line:column kind text"
    params(bicep)                    # `param`s: name, type, default, description, @allowed, @secure
    modules(bicep)                   # `module` declarations: symbol and the file they reference
    imports(bicep)                   # `import {...} from '<file>'`: the file of each
    variables(bicep)                 # `var` declarations: name -> value node
    resources(bicep, "Microsoft.Web/sites")   # `resource` declarations (optionally of a type)
    properties(node, "appSettings")  # the values of every property of that name under a node
    string_values(node, "actions")   # the strings those values are (a string, or strings in arrays)
    object_keys(node)                # the keys of an object node, in order

Nothing here knows about hotpatch; B's alert and workbook tests use it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

INFRA = Path(__file__).resolve().parents[2] / "infra"


@cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bicep.language()))


@dataclass(frozen=True)
class Bicep:
    path: Path
    root: Node

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    #: The default's source text (`'report'`, `30`, `[]`, `resourceGroup().location`); None if none.
    default: str | None
    description: str | None
    #: The source text of each value of its `@allowed([...])`; None without the decorator.
    allowed: tuple[str, ...] | None = None
    #: Whether it is `@secure()`: ARM keeps its value out of the deployment's history.
    secure: bool = False


@dataclass(frozen=True)
class Module:
    symbol: str
    path: str
    node: Node


@dataclass(frozen=True)
class Resource:
    symbol: str
    #: The type without its API version, e.g. Microsoft.Web/sites (a child's short type as written).
    type: str
    api_version: str
    node: Node


def parse(path: Path) -> Bicep:
    return Bicep(path, _parser().parse(path.read_bytes()).root_node)


def bicep_files(root: Path = INFRA) -> list[Path]:
    return sorted(root.rglob("*.bicep"))


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def syntax_problems(bicep: Bicep) -> list[str]:
    """Every ERROR or MISSING node, as `line:column kind text` (empty when the file parses)."""
    problems = []
    for node in _walk(bicep.root):
        if node.is_error or node.is_missing:
            kind = "ERROR" if node.is_error else f"MISSING {node.type}"
            row, column = node.start_point
            problems.append(f"{row + 1}:{column + 1} {kind} {_text(node)[:60]!r}")
    return problems


def string_literal(node: Node) -> str:
    """A string node's content as written; an interpolation keeps its `${...}` source."""
    if node.type != "string":
        raise ValueError(f"not a string: {node.type} {_text(node)[:60]!r}")
    return _text(node)[1:-1] if not _text(node).startswith("'''") else _text(node)[3:-3]


def _decorator_call(decorators: Node | None, name: str) -> Node | None:
    if decorators is None:
        return None
    for decorator in decorators.children:
        for call in decorator.children:
            function = call.child_by_field_name("function")
            if call.type == "call_expression" and function is not None and _text(function) == name:
                return call.child_by_field_name("arguments")
    return None


def _description(decorators: Node | None) -> str | None:
    arguments = _decorator_call(decorators, "description")
    strings = [node for node in arguments.children if node.type == "string"] if arguments else []
    return string_literal(strings[0]) if strings else None


def _allowed(decorators: Node | None) -> tuple[str, ...] | None:
    arguments = _decorator_call(decorators, "allowed")
    arrays = [node for node in arguments.children if node.type == "array"] if arguments else []
    if not arrays:
        return None
    return tuple(_text(item) for item in arrays[0].children if item.is_named)


def params(bicep: Bicep) -> list[Param]:
    found = []
    decorators: Node | None = None
    for node in bicep.root.children:
        if node.type == "parameter_declaration":
            named = [child for child in node.children if child.is_named]
            equals = [index for index, child in enumerate(node.children) if child.type == "="]
            default = _text(node.children[equals[0] + 1]) if equals else None
            found.append(
                Param(
                    _text(named[0]),
                    _text(named[1]),
                    default,
                    _description(decorators),
                    _allowed(decorators),
                    _decorator_call(decorators, "secure") is not None,
                )
            )
        if node.type != "comment":
            decorators = node if node.type == "decorators" else None
    return found


def modules(bicep: Bicep) -> list[Module]:
    found = []
    for node in bicep.root.children:
        if node.type == "module_declaration":
            symbol = next(child for child in node.children if child.type == "identifier")
            path = next(child for child in node.children if child.type == "string")
            found.append(Module(_text(symbol), string_literal(path), node))
    return found


def imports(bicep: Bicep) -> list[str]:
    """The file each `import ... from '<file>'` names."""
    return [
        string_literal(next(child for child in node.children if child.type == "string"))
        for node in bicep.root.children
        if node.type == "import_functionality"
    ]


def variables(bicep: Bicep) -> dict[str, Node]:
    """Each top-level `var`'s value node, by name."""
    found = {}
    for node in bicep.root.children:
        if node.type == "variable_declaration":
            named = [child for child in node.children if child.is_named]
            found[_text(named[0])] = named[-1]
    return found


def resources(bicep: Bicep, type_: str | None = None) -> list[Resource]:
    """Resource declarations anywhere in the file (nested children too), of one type if given."""
    found = []
    for node in _walk(bicep.root):
        if node.type == "resource_declaration":
            symbol = next(child for child in node.children if child.type == "identifier")
            kind = next(child for child in node.children if child.type == "string")
            name, _, version = string_literal(kind).partition("@")
            if type_ is None or name.lower() == type_.lower():
                found.append(Resource(_text(symbol), name, version, node))
    return found


def properties(node: Node, name: str) -> list[Node]:
    """The value nodes of every object property called `name` at any depth under `node`."""
    values = []
    for candidate in _walk(node):
        if candidate.type == "object_property":
            key, value = candidate.children[0], candidate.children[-1]
            key_text = string_literal(key) if key.type == "string" else _text(key)
            if key_text == name:
                values.append(value)
    return values


def object_keys(node: Node) -> list[str]:
    """The keys of an object node's own properties (not nested ones), in order."""
    if node.type != "object":
        raise ValueError(f"not an object: {node.type} {_text(node)[:60]!r}")
    keys = []
    for child in node.children:
        if child.type == "object_property":
            key = child.children[0]
            keys.append(string_literal(key) if key.type == "string" else _text(key))
    return keys


def string_values(node: Node, name: str) -> list[str]:
    """The strings that properties called `name` hold: the value itself, or its array's items."""
    strings = []
    for value in properties(node, name):
        items = value.children if value.type == "array" else [value]
        strings.extend(string_literal(item) for item in items if item.type == "string")
    return strings
