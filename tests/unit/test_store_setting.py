"""HOTPATCH_STORE names a store: a directory, sqlite:///path, memory:, or an Azure account."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hotpatch.errors import ConfigurationError
from hotpatch.settings import Settings
from hotpatch.store import DEFAULT_STORE, open_store
from hotpatch.store.embedded import EmbeddedStore
from hotpatch.store.memory import MemoryStore


def test_the_default_store_is_the_embedded_one_in_the_working_directory() -> None:
    assert Settings.from_env({}).store == DEFAULT_STORE
    assert Settings.from_env({"HOTPATCH_STORE": "sqlite:///x.db"}).store == "sqlite:///x.db"


def test_a_directory_holds_the_database_and_the_snapshots(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "state"))
    try:
        assert isinstance(store, EmbeddedStore)
        assert store.database == tmp_path / "state" / "store.db"
        assert store.snapshot_dir == tmp_path / "state" / "snapshots"
    finally:
        store.close()


def test_a_sqlite_url_names_the_database_file(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/here.db")
    try:
        assert isinstance(store, EmbeddedStore)
        assert store.database == tmp_path / "here.db"
    finally:
        store.close()


def test_memory_is_the_in_memory_store() -> None:
    assert isinstance(open_store("memory:"), MemoryStore)


@pytest.mark.parametrize(
    "setting",
    ["", "  ", "sqlite://", "ftp://host/store", "https://account.queue.core.windows.net"],
)
def test_a_setting_that_names_no_store_is_a_configuration_error(setting: str) -> None:
    with pytest.raises(ConfigurationError, match="HOTPATCH_STORE"):
        open_store(setting)


def test_the_embedded_store_loads_no_azure_sdk(tmp_path: Path) -> None:
    script = (
        "import sys; from hotpatch.store import open_store; "
        f"open_store({str(tmp_path / 's')!r}).close(); "
        "print(sorted(m for m in sys.modules if m.startswith('azure')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
