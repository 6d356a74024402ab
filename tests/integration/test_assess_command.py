"""`hotpatch assess`: a dry run changes nothing; --yes assesses exactly the machines due, each
journalled in the store before its request is sent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hotpatch.cli import main
from hotpatch.core.models import Action
from hotpatch.data import shipped_release_catalog
from hotpatch.ports.store import JournalRecord, JournalStatus
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from hotpatch.sandbox.request_log import read_requests
from hotpatch.sandbox.server import Sandbox
from hotpatch.service import Rules, evaluate_rows
from hotpatch.settings import Settings
from hotpatch.store import open_store
from tests.integration.conftest import FEBRUARY


def run(capsys: pytest.CaptureFixture[str], sandbox: Sandbox, tmp_path: Path, *extra: str) -> str:
    code = main(
        [
            "assess",
            "--sandbox-url",
            sandbox.base_url,
            "--sandbox-ca",
            str(sandbox.ca_path),
            "--now",
            FEBRUARY.isoformat(),
            "--report-dir",
            str(tmp_path / "reports"),
            "--limit",
            "1000",
            *extra,
        ],
        environ={"HOTPATCH_STORE": str(tmp_path / "store")},
    )
    out, _ = capsys.readouterr()
    assert code == 0, out
    return out


def test_a_dry_run_lists_the_machines_due_and_starts_nothing(
    capsys: pytest.CaptureFixture[str], start_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    estate = generate_estate(
        EstateSpec(machines=150, seed=9, as_of=FEBRUARY), shipped_release_catalog()
    )
    sandbox = start_sandbox(estate, graph_quota=None, operation_retry_after_seconds=0)
    out = run(capsys, sandbox, tmp_path)
    listed = [
        line.split()[-1].casefold()
        for line in out.splitlines()
        if line.strip().startswith("would assess")
    ]
    # Due: every machine whose verdict, judged on the same rows at the same instant, is assess.
    verdicts = evaluate_rows(estate.rows(), Rules.from_settings(Settings()), FEBRUARY).verdicts
    due = sorted(v.id.casefold() for v in verdicts if v.action is Action.ASSESS)
    assert due, "the estate has machines due for assessment"
    assert sorted(listed) == due
    assert f"Dry run: {len(due)} machine(s) need an assessment" in out
    assert sandbox.counters().operations_started == 0


def test_yes_assesses_every_machine_due_arc_included_and_a_second_run_finds_none_due(
    capsys: pytest.CaptureFixture[str], start_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    estate = generate_estate(
        EstateSpec(machines=150, seed=9, as_of=FEBRUARY), shipped_release_catalog()
    )
    sandbox = start_sandbox(
        estate, graph_quota=None, operation_latency_seconds=0.01, operation_retry_after_seconds=0
    )
    dry = run(capsys, sandbox, tmp_path)
    due = [line.split()[-1] for line in dry.splitlines() if line.strip().startswith("would assess")]
    out = run(capsys, sandbox, tmp_path, "--yes")
    journal = journal_of(tmp_path / "store")
    assert sorted(r.machine_id.casefold() for r in journal) == sorted(m.casefold() for m in due)
    assert {r.status for r in journal} == {JournalStatus.SUCCEEDED}
    # Each was journalled with the request id it was sent with.
    sent = {r.machine_key: r.client_request_id for r in read_requests(sandbox.state_dir)}  # type: ignore[arg-type]
    assert {r.machine_id.casefold(): r.client_request_id for r in journal} == sent
    # Arc machines due went through Hybrid Compute (the estate has some: not vacuous).
    assert state_dir_requests(sandbox, "microsoft.hybridcompute")
    assert sandbox.counters().operations_started == len(journal)
    assert "Assessments:" in out
    again = run(capsys, sandbox, tmp_path)
    still_due = [line for line in again.splitlines() if line.strip().startswith("would assess")]
    assert still_due == []


def journal_of(store_dir: Path) -> list[JournalRecord]:
    store = open_store(str(store_dir))
    try:
        return store.journal()
    finally:
        store.close()


def state_dir_requests(sandbox: Sandbox, provider: str) -> list[str]:
    """The machines the sandbox's request log shows `assessPatches` sent to `provider`."""
    assert sandbox.state_dir is not None
    return [
        r.machine_id
        for r in read_requests(sandbox.state_dir)
        if r.operation == "assessPatches" and f"/providers/{provider}/" in r.machine_key
    ]


def test_a_missing_ca_file_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["sweep", "--sandbox-url", "https://127.0.0.1:1", "--sandbox-ca", str(tmp_path / "no")]
    assert main(argv, environ={}) == 2
    _, err = capsys.readouterr()
    assert err.strip() == f"hotpatch: error: --sandbox-ca {tmp_path / 'no'}: no such file"


def test_an_unreachable_sandbox_url_is_a_usage_error_not_retried_as_an_outage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, start_sandbox: Callable[..., Sandbox]
) -> None:
    sandbox = start_sandbox(None)
    url, ca = sandbox.base_url, str(sandbox.ca_path)
    sandbox.stop()  # nothing listens there any more: a wrong URL, not an Azure outage (issue 8)
    argv = [
        "sweep",
        "--sandbox-url",
        url,
        "--sandbox-ca",
        ca,
        "--report-dir",
        str(tmp_path),
    ]
    assert main(argv, environ={}) == 2
    _, err = capsys.readouterr()
    assert err.strip().startswith(f"hotpatch: error: sandbox {url}: cannot connect")
    assert len(err.strip().splitlines()) == 1
