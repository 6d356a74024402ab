"""A May 2026 hotpatch rollout over three rings, run step by step through `hotpatch remediate`.

The sandbox's request log is the witness: what it was asked is what the service did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hotpatch.cli import main
from hotpatch.sandbox.estate import Estate
from hotpatch.sandbox.request_log import LoggedRequest, read_requests
from hotpatch.sandbox.server import Sandbox, SandboxConfig
from tests.integration.conftest import ManualClock, vm_row

pytestmark = pytest.mark.sandbox

#: The day after May 2026's Patch Tuesday (the 12th), in ring 0's window.
RING0_WINDOW = datetime(2026, 5, 13, 0, 30, tzinfo=UTC)
RING1_WINDOW = datetime(2026, 5, 15, 0, 30, tzinfo=UTC)
RING2_WINDOW = datetime(2026, 5, 17, 0, 30, tzinfo=UTC)
WS2022_APRIL_BASELINE = "10.0.20348.5020"
WS2025_APRIL_BASELINE = "10.0.26100.32690"
WS2022_MAY_HOTPATCH = "KB5087424"
WS2025_MAY_HOTPATCH = "KB5087423"

POLICY = f"""
mode: remediate
install_pending: true
rings:
  - name: ring0
    soak: 1d
    window: {{offset_days: 1, start: "00:00", time_zone: UTC, duration: 3h}}
  - name: ring1
    soak: 1d
    error_budget: 0
    window: {{offset_days: 3, start: "00:00", time_zone: UTC, duration: 3h}}
  - name: ring2
    window: {{offset_days: 5, start: "00:00", time_zone: UTC, duration: 3h}}
blocked_kbs:
  - kb: {WS2025_MAY_HOTPATCH}
    reason: breaks the cluster service in this rehearsal
"""


def machine(name: str, ring: str, **tags: str) -> dict[str, Any]:
    if name.startswith("ws2025"):
        row = vm_row(name, os_version=WS2025_APRIL_BASELINE, sku="2025-datacenter-azure-edition")
    else:
        row = vm_row(name, os_version=WS2022_APRIL_BASELINE)
    row["tags"] = {"hotpatch-ring": ring, **tags}
    return row


ESTATE = Estate(
    [
        *(machine(f"a{n}", "ring0") for n in range(3)),
        machine("ws2025-a", "ring0"),
        machine("excluded", "ring0", **{"hotpatch-exclude": "true"}),
        *(machine(f"b{n}", "ring1") for n in range(3)),
        *(machine(f"c{n}", "ring2") for n in range(3)),
    ],
    [],
    [],
)


class Rollout:
    """One sandbox, one store, one policy; `hotpatch remediate` run at chosen instants."""

    def __init__(self, sandbox: Sandbox, clock: ManualClock, home: Path) -> None:
        self.sandbox = sandbox
        self.clock = clock
        self.policy = home / "policy.yaml"
        self.policy.write_text(POLICY, encoding="utf-8")
        # Assessments stay fresh for the week the rollout takes (the default is 72 hours).
        self.environ = {
            "HOTPATCH_STORE": str(home / "store"),
            "HOTPATCH_ASSESSMENT_MAX_AGE_HOURS": "168",
        }

    def remediate(self, now: datetime, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
        self.clock.now_at = now
        capsys.readouterr()
        code = main(
            [
                "remediate",
                "--policy",
                str(self.policy),
                "--sandbox-url",
                self.sandbox.base_url,
                "--sandbox-ca",
                str(self.sandbox.ca_path),
                "--now",
                now.isoformat(),
                "--yes",
                "--format",
                "json",
            ],
            environ=self.environ,
        )
        out = capsys.readouterr().out
        assert code == 0, out
        document: dict[str, Any] = json.loads(out)
        return document

    def installs(self) -> list[LoggedRequest]:
        return [r for r in read_requests(self.sandbox.state_dir) if r.operation == "installPatches"]

    def installed_on(self) -> list[str]:
        return sorted(r.machine_id.rsplit("/", 1)[-1] for r in self.installs())


@pytest.fixture
def rollout(tmp_path: Path) -> Iterator[Rollout]:
    clock = ManualClock(now_at=RING0_WINDOW)
    config = SandboxConfig(
        state_dir=tmp_path / "sandbox",
        operation_latency_seconds=0.05,
        operation_retry_after_seconds=0,
        failing_installs=frozenset({vm_row("b1")["id"]}),
    )
    sandbox = Sandbox(config, ESTATE, clock=clock).start()
    try:
        yield Rollout(sandbox, clock, tmp_path)
    finally:
        sandbox.stop()


def skipped(document: dict[str, Any]) -> dict[str, str]:
    return {s["machine"].rsplit("/", 1)[-1]: s["code"] for s in document["plan"]["skips"]}


def rings(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["ring"]: r for r in document["plan"]["rings"]}


def test_a_release_rolls_out_ring_by_ring_and_halts_where_its_budget_is_spent(
    rollout: Rollout, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1. No machine has an assessment yet: they are assessed first, and nothing is installed.
    first = rollout.remediate(RING0_WINDOW, capsys)
    assert rollout.installs() == []
    assert {op["action"].split(":")[0] for op in first["plan"]["operations"]} == {"assess"}
    assert skipped(first)["excluded"] == "excluded"

    # 2. Ring 0 installs the month's hotpatch; the blocked WS2025 hotpatch is never asked for.
    second = rollout.remediate(RING0_WINDOW + timedelta(minutes=15), capsys)
    assert rollout.installed_on() == ["a0", "a1", "a2"]
    assert skipped(second)["ws2025-a"] == "blocked"
    assert skipped(second)["b0"] == "ring_waiting"
    assert second["applied"]["outcomes"] == {"succeeded": 3}

    # 3. Half a day later no window is open (and ring 0 soaks): nothing starts.
    third = rollout.remediate(RING0_WINDOW + timedelta(hours=12), capsys)
    assert third["plan"]["operations"] == []
    assert rollout.installed_on() == ["a0", "a1", "a2"]
    assert rings(third)["ring0"]["kbs"] == [WS2022_MAY_HOTPATCH]

    # 4. After ring 0's soak, in ring 1's window: exactly ring 0's KB set, nothing else.
    fourth = rollout.remediate(RING1_WINDOW, capsys)
    ring1 = [r for r in rollout.installs() if r.machine_id.rsplit("/", 1)[-1].startswith("b")]
    assert sorted(r.machine_id.rsplit("/", 1)[-1] for r in ring1) == ["b0", "b1", "b2"]
    for request in ring1:
        assert request.install is not None
        assert request.install.kbs_included == {WS2022_MAY_HOTPATCH}
        assert request.install.classifications_to_include == ()
    assert fourth["applied"]["outcomes"] == {"failed": 1, "succeeded": 2}

    # 5. Ring 1 spent its budget (one failure, budget 0): ring 2 is never promoted.
    fifth = rollout.remediate(RING2_WINDOW, capsys)
    assert fifth["plan"]["operations"] == []
    assert {skipped(fifth)[f"c{n}"] for n in range(3)} == {"ring_halted"}
    assert rings(fifth)["ring1"]["status"] == "halted"
    assert "budget" in rings(fifth)["ring1"]["reason"]
    assert rollout.installed_on() == ["a0", "a1", "a2", "b0", "b1", "b2"]

    # Throughout: a hotpatch month never restarts, the block is always sent, never asked for.
    for request in rollout.installs():
        assert request.install is not None
        assert request.install.reboot_setting == "Never"
        assert WS2025_MAY_HOTPATCH in request.install.kbs_excluded
        assert WS2025_MAY_HOTPATCH not in request.install.kbs_included
    # Each machine was asked to install the release once.
    assert len(rollout.installed_on()) == len(set(rollout.installed_on()))
