"""The CLI judges and plans by the release catalog the Function App keeps in the store, as the
Function App does: two entrypoints over one store reach the same verdicts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from hotpatch.bootstrap import RELEASE_CATALOG
from hotpatch.cli import main
from hotpatch.ports.store import StoredCatalog
from hotpatch.store import open_store

#: Two Patch Tuesdays past the shipped catalog, which covers releases through 2026-05.
JULY = "2026-07-15T12:00Z"
REFRESHED = datetime(2026, 7, 15, 5, 30, tzinfo=UTC)


def sweep_json(
    capsys: pytest.CaptureFixture[str], store: Path, tmp_path: Path
) -> tuple[dict[str, Any], str]:
    code = main(
        [
            "sweep",
            "--sandbox",
            "--machines",
            "200",
            "--now",
            JULY,
            "--format",
            "json",
            "--report-dir",
            str(tmp_path / "reports"),
        ],
        environ={"HOTPATCH_STORE": str(store)},
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document: dict[str, Any] = json.loads(captured.out)
    return document, " ".join(captured.err.split())


def refreshed_through(store_path: Path, month: str) -> None:
    """What the `catalog` timer leaves: the catalog as the page listed it, in the store."""
    shipped = json.loads(resources.files("hotpatch.data").joinpath("releases.json").read_text())
    store = open_store(str(store_path))
    try:
        store.save_catalog(
            StoredCatalog(
                name=RELEASE_CATALOG,
                document={**shipped, "covers_through": month},
                source="https://learn.microsoft.com/windows/release-health/windows-server-release-info",
                refreshed_at=REFRESHED,
            )
        )
    finally:
        store.close()


def test_a_sweep_judges_by_the_catalog_the_function_app_refreshed_into_the_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    before, _ = sweep_json(capsys, store, tmp_path)
    assert (before["catalog"]["stale"], before["catalog"]["covers_through"]) == (True, "2026-05")

    refreshed_through(store, "2026-07")
    after, err = sweep_json(capsys, store, tmp_path)

    assert after["catalog"] == {"stale": False}
    assert "Release catalog: the store's, refreshed 2026-07-15 05:30 UTC" in err


def test_a_sweep_with_no_catalog_in_the_store_says_nothing_of_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, err = sweep_json(capsys, tmp_path / "store", tmp_path)
    assert "the store's" not in err
