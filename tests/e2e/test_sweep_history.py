"""The store through the real `hotpatch` command: a sweep is listed by `hotpatch runs`, a change
between two sweeps is a transition in `hotpatch history`, and a sweep cut short (or refused
because another is writing) never becomes the latest snapshot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HOTPATCH = Path(sys.executable).with_name("hotpatch")
NOW = "2026-05-19T12:00Z"


def hotpatch(cwd: Path, *argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it, in `cwd` (whose .hotpatch/store is the default)."""
    return subprocess.run(
        [str(HOTPATCH), *argv],
        env=_environment(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HOTPATCH_")}


def runs(cwd: Path) -> list[dict[str, Any]]:
    done = hotpatch(cwd, "runs", "--format", "json")
    assert done.returncode == 0, done.stderr
    found: list[dict[str, Any]] = json.loads(done.stdout)["runs"]
    return found


def _export_rows(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["data"]
    return rows


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"data": rows}), encoding="utf-8")


def test_a_sweep_is_listed_in_runs_and_a_change_in_the_next_sweep_is_in_history(
    tmp_path: Path,
) -> None:
    estate = tmp_path / "estate.json"
    made = hotpatch(tmp_path, "sandbox", "export", "--machines", "40", "--output", str(estate))
    assert made.returncode == 0, made.stderr
    first = hotpatch(
        tmp_path, "sweep", "--sandbox", "--import", str(estate), "--now", NOW, "--format", "json"
    )
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    run_id = report["sweep"]["run_id"]
    assert f"stored as run {run_id}" in first.stderr

    (listed,) = runs(tmp_path)
    assert listed["id"] == run_id
    assert (listed["kind"], listed["outcome"]) == ("sweep", "succeeded")
    assert listed["figures"]["machines"] == report["summary"]["total"] == 40
    assert listed["scope"] == f"in-process sandbox serving {estate}"
    table = hotpatch(tmp_path, "runs")
    assert run_id in table.stdout
    assert "succeeded" in table.stdout

    # Between the sweeps one running VM is deallocated and another is deleted.
    states = {m["id"]: m["state"] for m in report["machines"] if m["kind"] == "vm"}
    changed, deleted = [vm for vm, state in states.items() if state != "unknown"][:2]
    rows = []
    for row in _export_rows(estate):
        row_id = str(row["id"]).casefold()
        if row_id == deleted or row_id.startswith(deleted + "/"):
            continue
        if row_id == changed:
            view = row["properties"].setdefault("extended", {}).setdefault("instanceView", {})
            view["powerState"] = {"code": "PowerState/deallocated"}
        rows.append(row)
    _write_rows(estate, rows)
    second = hotpatch(tmp_path, "sweep", "--sandbox", "--import", str(estate), "--now", NOW)
    assert second.returncode == 0, second.stderr
    assert "Stored as run" in second.stdout
    assert [run["id"] for run in runs(tmp_path)][1] == run_id  # newest first

    history = hotpatch(tmp_path, "history", changed.upper(), "--format", "json")
    assert history.returncode == 0, history.stderr
    document = json.loads(history.stdout)
    assert document["verdict"]["state"] == "unknown"
    assert [(t["from"], t["to"]) for t in document["transitions"]] == [
        (None, states[changed]),
        (states[changed], "unknown"),
    ]
    assert document["transitions"][0]["run_id"] == run_id

    gone = hotpatch(tmp_path, "history", deleted)
    assert gone.returncode == 0, gone.stderr
    flat = " ".join(gone.stdout.split())
    assert "the machine is not in it" in flat
    assert "not_in_sweep" in flat
    assert states[deleted] in flat


def test_a_sweep_while_another_writes_is_refused_and_one_cut_short_is_not_made_latest(
    tmp_path: Path,
) -> None:
    small = hotpatch(tmp_path, "sweep", "--sandbox", "--machines", "30", "--format", "json")
    assert small.returncode == 0, small.stderr
    latest = json.loads(small.stdout)["sweep"]["run_id"]
    a_machine = json.loads(small.stdout)["machines"][0]["id"]

    # A big sweep (the Resource Graph quota makes it wait for seconds) is cut short by Ctrl-C
    # once its run is recorded; meanwhile a second sweep is refused.
    big = subprocess.Popen(
        [str(HOTPATCH), "sweep", "--sandbox", "--machines", "20000", "--format", "json"],
        env=_environment(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(runs(tmp_path)) < 2 and big.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert big.poll() is None, "the big sweep ended before it could be cut short"
        refused = hotpatch(tmp_path, "sweep", "--sandbox", "--machines", "5")
        assert big.poll() is None, "the big sweep ended before the second was refused"
        big.send_signal(signal.SIGINT)
        stdout, stderr = big.communicate(timeout=120)
    finally:
        if big.poll() is None:
            big.kill()
            big.communicate()
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    # The sandbox's address line, then the error on one line.
    *_, line = refused.stderr.strip().splitlines()
    assert line.startswith("hotpatch: error: another sweep is writing the store (lease sweep")
    assert big.returncode == 130, stderr
    assert stdout == ""

    cut, done = runs(tmp_path)
    assert cut["outcome"] == "interrupted"
    assert cut["finished_at"] is not None
    assert done["id"] == latest
    history = hotpatch(tmp_path, "history", a_machine, "--format", "json")
    assert json.loads(history.stdout)["latest_snapshot"]["run_id"] == latest
    # The lease went with the interrupted sweep: the next one is not refused.
    after = hotpatch(tmp_path, "sweep", "--sandbox", "--machines", "5")
    assert after.returncode == 0, after.stderr
    unrecorded = hotpatch(tmp_path, "sweep", "--sandbox", "--machines", "5", "--no-store")
    assert unrecorded.returncode == 0, unrecorded.stderr
    assert "Stored as run" not in unrecorded.stdout
    assert [run["outcome"] for run in runs(tmp_path)] == ["succeeded", "interrupted", "succeeded"]


@pytest.mark.parametrize("setting", ["ftp://host/store", "report.json/store"])
def test_a_bad_store_setting_stops_the_sweep_before_it_starts(tmp_path: Path, setting: str) -> None:
    (tmp_path / "report.json").write_text("{}")
    done = subprocess.run(
        [str(HOTPATCH), "sweep", "--sandbox", "--machines", "5"],
        env={**_environment(), "HOTPATCH_STORE": setting},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("hotpatch: error: HOTPATCH_STORE")
    assert not (tmp_path / "hotpatch-reports").exists() or not any(
        (tmp_path / "hotpatch-reports").iterdir()
    )
