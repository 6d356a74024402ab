"""A sweep end to end: the real Resource Graph client, the sandbox over TLS, the core."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from hotpatch.azure.credentials import StaticTokenCredential
from hotpatch.azure.resource_graph import ResourceGraphInventory, RetryPolicy, resource_graph_client
from hotpatch.bootstrap import SandboxEndpoint, sandbox_target
from hotpatch.cli import main
from hotpatch.core.models import Verdict
from hotpatch.data import shipped_release_catalog
from hotpatch.export import read_rows, write_rows
from hotpatch.ports import Scope
from hotpatch.sandbox.arm import FaultConfig
from hotpatch.sandbox.estate import Estate, EstateSpec, generate_estate
from hotpatch.sandbox.server import SandboxConfig
from hotpatch.sandbox.session import default_as_of, running_sandbox
from hotpatch.service import Rules, evaluate_rows, sweep
from hotpatch.settings import Settings

RULES = Rules.from_settings(Settings())
AS_OF = default_as_of(RULES.releases)


@pytest.fixture(scope="module")
def estate() -> Estate:
    spec = EstateSpec(machines=10_000, subscriptions=5, seed=42, as_of=AS_OF)
    return generate_estate(spec, shipped_release_catalog())


def judged(verdicts: list[Verdict]) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    return {
        v.id: (v.state.value, v.action.value, tuple(r.code for r in v.reasons)) for v in verdicts
    }


def test_a_sandbox_sweep_gives_the_verdicts_evaluate_gives_on_the_exported_estate(
    estate: Estate, tmp_path: Path
) -> None:
    export = tmp_path / "estate.json"
    write_rows(export, estate.rows())
    from_file = evaluate_rows(read_rows(export), RULES, AS_OF)
    config = SandboxConfig(state_dir=tmp_path / "sandbox", graph_quota=None)
    with (
        running_sandbox(estate, config) as sandbox,
        sandbox_target(SandboxEndpoint(sandbox.base_url, sandbox.ca_path)) as target,
    ):
        swept = sweep(target.inventory, Scope(), RULES, now=AS_OF)
    assert swept.evaluation.summary.total == len(estate.machine_ids()) >= 10_000
    assert judged(swept.evaluation.verdicts) == judged(from_file.verdicts)
    # One query row per machine or Flexible scale set (Uniform instances from computeresources),
    # 1000 to a page.
    query_rows = len(estate.resources) + len(estate.computeresources)
    assert swept.inventory.pages == -(-query_rows // 1000)


def test_with_server_errors_and_429_bursts_every_machine_is_accounted_for_once(
    estate: Estate, tmp_path: Path
) -> None:
    faults = FaultConfig(
        seed=7,
        error_500_rate=0.025,
        error_503_rate=0.025,
        throttle_burst_rate=0.1,
        throttle_burst_length=2,
        throttle_retry_after_seconds=1,
    )
    config = SandboxConfig(state_dir=tmp_path / "sandbox", graph_quota=None, faults=faults)
    with running_sandbox(estate, config) as sandbox:
        # The adapter itself, built by hand: this test gives it a longer retry policy.
        client = resource_graph_client(
            StaticTokenCredential(),
            base_url=sandbox.base_url,
            connection_verify=str(sandbox.ca_path),
        )
        inventory = ResourceGraphInventory(client, retry=RetryPolicy(attempts=10))
        swept = sweep(inventory, Scope(), RULES, now=AS_OF)
        injected = sandbox.counters().faults
    ids = [v.id for v in swept.evaluation.verdicts]
    assert Counter(ids).most_common(1)[0][1] == 1
    assert set(ids) == {machine_id.casefold() for machine_id in estate.machine_ids()}
    summary = swept.summary()
    retries = summary["inventory"]["retries"]  # type: ignore[index]
    assert sum(injected.values()) >= 1
    assert sum(retries.values()) == sum(injected.values())
    assert retries.get("throttled", 0) >= 1


def test_the_sweep_command_prints_the_summary_and_where_the_report_is(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    code = main(
        ["sweep", "--sandbox", "--machines", "300", "--seed", "3", "--report-dir", str(reports)],
        environ={},
    )
    out, _ = capsys.readouterr()
    assert code == 0
    (report,) = reports.glob("sweep-*.json")
    document = json.loads(report.read_text())
    assert document["summary"]["total"] == len(document["machines"]) == 300
    assert f"Full report: {report}" in out
    # The state table shows the report's counts (a bare "compliant" would match non_compliant).
    for state, count in document["summary"]["by_state"].items():
        assert re.search(rf"│ {state} +│ +{count} │", out), (state, count)
    assert "Swept" in out


def test_the_sandbox_export_command_writes_what_evaluate_reads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    output = tmp_path / "export.json"
    assert main(["sandbox", "export", "--machines", "50", "--output", str(output)], environ={}) == 0
    capsys.readouterr()
    code = main(
        ["evaluate", "--inventory", str(output), "--now", AS_OF.isoformat(), "--format", "json"],
        environ={},
    )
    out, _ = capsys.readouterr()
    assert code == 0
    assert json.loads(out)["summary"]["total"] == 50  # every machine exported, each judged once
