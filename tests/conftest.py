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
