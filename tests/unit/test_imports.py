"""The CLI, the use cases and the ports load no Azure SDK until a real adapter is built."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-export.json"


def azure_modules_after(code: str) -> list[str]:
    """The `azure` modules a fresh interpreter holds after running `code`."""
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'azure' "
        "or m.startswith('azure.'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "module",
    [
        "hotpatch.cli",
        "hotpatch.service",
        "hotpatch.bootstrap",
        "hotpatch.ports",
        "hotpatch.fakes",
        "hotpatch.api",
    ],
)
def test_importing_the_shell_loads_no_azure_module(module: str) -> None:
    assert azure_modules_after(f"import {module}") == []


def test_hotpatch_evaluate_loads_no_azure_module() -> None:
    # -X importtime lists every module the command imported, on stderr.
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "hotpatch.cli",
            "evaluate",
            "--inventory",
            str(SAMPLE),
            "--now",
            "2026-05-19T12:00Z",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = [
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]
    assert "hotpatch.service" in imported  # the command ran (as __main__)
    assert [name for name in imported if name == "azure" or name.startswith("azure.")] == []


def test_building_a_real_adapter_is_what_loads_the_sdk() -> None:
    loaded = azure_modules_after("import hotpatch.azure.resource_graph")
    assert "azure.mgmt.resourcegraph" in loaded
