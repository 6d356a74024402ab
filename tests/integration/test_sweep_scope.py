"""A configured scope that cannot be read fails the sweep unless the operator accepts a partial
answer; the in-process sandbox says it ignores scope settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hotpatch.cli import main
from hotpatch.data import shipped_release_catalog
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from hotpatch.sandbox.server import Sandbox

AS_OF = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)
ESTATE = generate_estate(
    EstateSpec(machines=120, subscriptions=2, seed=9, as_of=AS_OF), shipped_release_catalog()
)
#: A subscription the sandbox does not serve to this caller.
UNREADABLE = "99999999-9999-9999-9999-999999999999"


def sweep_argv(sandbox: Sandbox, reports: Path, *extra: str) -> list[str]:
    return [
        "sweep",
        "--sandbox-url",
        sandbox.base_url,
        "--sandbox-ca",
        str(sandbox.ca_path),
        "--now",
        AS_OF.isoformat(),
        "--report-dir",
        str(reports),
        *extra,
    ]


@pytest.mark.parametrize("allow_partial", [False, True])
def test_an_unreadable_subscription_fails_the_sweep_unless_partial_answers_are_allowed(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    start_sandbox: Callable[..., Sandbox],
    allow_partial: bool,
) -> None:
    readable = sorted({str(r["subscriptionId"]) for r in ESTATE.resources})[0]
    sandbox = start_sandbox(ESTATE, graph_quota=None, subscriptions=frozenset({readable}))
    extra = ("--format", "json", *(("--allow-partial",) if allow_partial else ()))
    code = main(
        sweep_argv(sandbox, tmp_path, *extra),
        environ={"HOTPATCH_SUBSCRIPTIONS": f"{readable},{UNREADABLE}"},
    )
    out, err = capsys.readouterr()
    # The readable part is reported either way: nothing already learnt is thrown away.
    (report,) = tmp_path.glob("sweep-*.json")
    document = json.loads(report.read_text())
    assert document["sweep"]["inventory"]["skipped_scopes"] == [f"/subscriptions/{UNREADABLE}"]
    assert {m["subscription_id"] for m in document["machines"]} == {readable}
    assert json.loads(out)["summary"]["total"] == len(document["machines"])
    if allow_partial:
        assert code == 0
        assert "could not read" not in err
    else:
        assert code == 3
        last = err.strip().splitlines()[-1]
        assert last.startswith("hotpatch: azure: could not read 1 scope(s): ")
        assert UNREADABLE in last


def test_the_in_process_sandbox_says_it_ignores_scope_settings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        [
            "sweep",
            "--sandbox",
            "--machines",
            "30",
            "--report-dir",
            str(tmp_path),
            "--format",
            "csv",
        ],
        environ={"HOTPATCH_SUBSCRIPTIONS": UNREADABLE},
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "--sandbox ignores HOTPATCH_SUBSCRIPTIONS" in err
    assert out.startswith("id,name,")
