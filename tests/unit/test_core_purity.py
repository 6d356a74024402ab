"""The core is pure: no Azure, no I/O modules, no environment, no clock (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hotpatch.core

CORE = Path(hotpatch.core.__file__).resolve().parent

#: Modules the core must not import (the module itself or anything under it).
BANNED_MODULES = (
    "os",
    "time",
    "random",
    "socket",
    "urllib",
    "http",
    "requests",
    "aiohttp",
    "subprocess",
    "hotpatch.azure",
    "hotpatch.sandbox",
    "hotpatch.store",
    "hotpatch.settings",
)

#: Calls that read the clock or the environment, by fully qualified name.
BANNED_CALLS = frozenset(
    {
        "datetime.datetime.now",
        "datetime.datetime.utcnow",
        "datetime.datetime.today",
        "datetime.date.today",
        "time.time",
        "time.time_ns",
        "time.monotonic",
        "time.monotonic_ns",
        "time.perf_counter",
        "time.perf_counter_ns",
        "os.getenv",
        "os.getenvb",
    }
)

#: The same calls as written without a resolvable import (e.g. `self.datetime.now()`).
BANNED_CALL_SUFFIXES = (
    "datetime.now",
    "datetime.utcnow",
    "datetime.today",
    "date.today",
    "time.time",
    "time.monotonic",
    "time.perf_counter",
)

ENVIRONMENT = frozenset({"os.environ", "os.environb"})


def _banned_module(name: str) -> bool:
    return name.startswith("azure") or any(
        name == banned or name.startswith(banned + ".") for banned in BANNED_MODULES
    )


def _dotted(node: ast.expr) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None for anything that is not a plain name chain."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


class _Checker(ast.NodeVisitor):
    def __init__(self, filename: str, package: str) -> None:
        self.filename = filename
        self.package = package
        self.aliases: dict[str, str] = {}
        self.findings: list[str] = []

    def _flag(self, node: ast.AST, what: str) -> None:
        self.findings.append(f"{self.filename}:{getattr(node, 'lineno', '?')}: {what}")

    def _absolute(self, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        base = self.package.split(".")
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, node.module] if node.module else base)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _banned_module(alias.name):
                self._flag(node, f"imports {alias.name}")
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                root = alias.name.split(".")[0]
                self.aliases[root] = root
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = self._absolute(node)
        if _banned_module(module):
            self._flag(node, f"imports from {module}")
        for alias in node.names:
            qualified = f"{module}.{alias.name}" if module else alias.name
            if not _banned_module(module) and _banned_module(qualified):
                self._flag(node, f"imports {qualified}")
            self.aliases[alias.asname or alias.name] = qualified
        self.generic_visit(node)

    def _resolve(self, node: ast.expr) -> tuple[str, str] | None:
        """(as written, fully qualified through the module's imports)."""
        parts = _dotted(node)
        if parts is None:
            return None
        written = ".".join(parts)
        root = self.aliases.get(parts[0], parts[0])
        return written, ".".join([root, *parts[1:]])

    def visit_Call(self, node: ast.Call) -> None:
        names = self._resolve(node.func)
        if names is not None:
            written, qualified = names
            if (
                qualified in BANNED_CALLS
                or any(
                    written == suffix or written.endswith("." + suffix)
                    for suffix in BANNED_CALL_SUFFIXES
                )
                or written.split(".")[-1] == "getenv"
            ):
                self._flag(node, f"calls {written}() ({qualified}): the clock or the environment")
            if qualified in {"importlib.import_module", "__import__"} and node.args:
                first = node.args[0]
                if (
                    isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and _banned_module(first.value)
                ):
                    self._flag(node, f"imports {first.value} dynamically")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        names = self._resolve(node)
        if names is not None and names[1] in ENVIRONMENT:
            self._flag(node, f"reads the environment ({names[0]})")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if self.aliases.get(node.id) in ENVIRONMENT:
            self._flag(node, f"reads the environment ({node.id})")


def impurities(source: str, filename: str, package: str = "hotpatch.core") -> list[str]:
    """Every banned import, environment read and clock read in `source`, as `file:line: what`."""
    checker = _Checker(filename, package)
    checker.visit(ast.parse(source, filename=filename))
    return checker.findings


def _core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_core_has_modules_to_check() -> None:
    names = {path.name for path in _core_files()}
    assert {"__init__.py", "calendar.py", "models.py"} <= names, f"core files under {CORE}: {names}"


@pytest.mark.parametrize("path", _core_files(), ids=lambda path: path.relative_to(CORE).as_posix())
def test_the_core_imports_no_azure_io_environment_or_clock(path: Path) -> None:
    relative = path.relative_to(CORE.parent.parent)
    package = ".".join(["hotpatch", "core", *path.relative_to(CORE).parent.parts])
    found = impurities(path.read_text(encoding="utf-8"), str(relative), package)
    assert found == [], "the pure core must take time and data as parameters:\n" + "\n".join(found)


# --- the guard itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "from datetime import datetime\n\nstamp = datetime.now()\n",
            "snippet.py:3: calls datetime.now()",
            id="datetime-now",
        ),
        pytest.param(
            "import datetime as dt\nx = dt.datetime.utcnow()\n",
            "snippet.py:2: calls dt.datetime.utcnow()",
            id="aliased-module-utcnow",
        ),
        pytest.param(
            "from datetime import date as d\nx = d.today()\n",
            "snippet.py:2: calls d.today() (datetime.date.today)",
            id="aliased-date-today",
        ),
        pytest.param(
            "def f(clock):\n    return clock.datetime.now()\n",
            "snippet.py:2: calls clock.datetime.now()",
            id="unresolved-datetime-now",
        ),
        pytest.param(
            "from time import monotonic\nx = monotonic()\n",
            "snippet.py:2: calls monotonic() (time.monotonic)",
            id="from-time-import-monotonic",
        ),
        pytest.param("import azure.identity\n", "snippet.py:1: imports azure.identity", id="azure"),
        pytest.param(
            "x = 1\nfrom azure.mgmt.compute import ComputeManagementClient\n",
            "snippet.py:2: imports from azure.mgmt.compute",
            id="from-azure",
        ),
        pytest.param("import os.path\n", "snippet.py:1: imports os.path", id="os-path"),
        pytest.param("import subprocess\n", "imports subprocess", id="subprocess"),
        pytest.param("from urllib.parse import quote\n", "imports from urllib.parse", id="urllib"),
        pytest.param("import http.client\n", "imports http.client", id="http"),
        pytest.param("import requests\n", "imports requests", id="requests"),
        pytest.param("import aiohttp\n", "imports aiohttp", id="aiohttp"),
        pytest.param("import random\n", "imports random", id="random"),
        pytest.param("import socket\n", "imports socket", id="socket"),
        pytest.param("import time\n", "imports time", id="time"),
        pytest.param("from hotpatch import store\n", "imports hotpatch.store", id="hotpatch-store"),
        pytest.param(
            "from hotpatch.settings import Settings\n",
            "imports from hotpatch.settings",
            id="hotpatch-settings",
        ),
        pytest.param(
            "from ..azure import compute\n",
            "imports from hotpatch.azure",
            id="relative-hotpatch-azure",
        ),
        pytest.param(
            "from .. import sandbox\n", "imports hotpatch.sandbox", id="relative-hotpatch-sandbox"
        ),
        pytest.param(
            "import os\nx = os.environ['HOTPATCH_X']\n",
            "snippet.py:2: reads the environment (os.environ)",
            id="os-environ",
        ),
        pytest.param(
            "from os import environ\nx = environ.get('X')\n",
            "snippet.py:2: reads the environment (environ)",
            id="from-os-import-environ",
        ),
        pytest.param(
            "def f(o):\n    return o.getenv('X')\n",
            "snippet.py:2: calls o.getenv()",
            id="getenv",
        ),
        pytest.param(
            "import importlib\nm = importlib.import_module('azure.identity')\n",
            "snippet.py:2: imports azure.identity dynamically",
            id="import-module",
        ),
    ],
)
def test_the_guard_flags_impure_code(source: str, expected: str) -> None:
    found = impurities(source, "snippet.py")
    assert any(expected in finding for finding in found), f"{expected!r} not in {found}"


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("from datetime import time\nt = time(10, 0)\n", id="datetime-time"),
        pytest.param(
            "from datetime import UTC, datetime\n"
            "x = datetime.combine(d, t, tzinfo=UTC).astimezone(UTC)\n",
            id="datetime-combine",
        ),
        pytest.param("def f(now):\n    return now.astimezone()\n", id="now-as-a-parameter"),
        pytest.param("import osmium\nimport timeit_free\n", id="names-that-only-start-alike"),
        pytest.param("from hotpatch.core.models import OsFamily\n", id="core-import"),
        pytest.param("from .models import OsFamily\n", id="relative-core-import"),
        pytest.param("from zoneinfo import ZoneInfo\n", id="zoneinfo"),
    ],
)
def test_the_guard_passes_pure_code(source: str) -> None:
    assert impurities(source, "snippet.py") == []
