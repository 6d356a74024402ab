"""Hygiene shared by every test."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    """`hotpatch evaluate` switches the cyclic collector off for good, as a one-shot command
    may (see `hotpatch.bulk`); a test that runs it in-process must not leave it off."""
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()


@pytest.fixture(autouse=True)
def _own_working_directory(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test runs in a directory of its own: a sweep records itself in the default store
    (`.hotpatch/store`, relative), which must be neither the checkout's nor another test's."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
