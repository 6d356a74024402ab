"""Run a sandbox in-process for a command: generate (or import) an estate, serve it, stop it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from hotpatch.core.calendar import release_instant
from hotpatch.core.releases import ReleaseCatalog
from hotpatch.sandbox.estate import Estate, EstateSpec, generate_estate, read_export
from hotpatch.sandbox.server import Sandbox, SandboxConfig


def default_as_of(releases: ReleaseCatalog) -> datetime:
    """A week after the newest release the catalog knows, at noon UTC.

    A generated estate carries real catalog builds only, so it is observed at a time the
    catalog fully describes; past the catalog's end every machine would look behind.
    """
    newest = max(r.date for r in releases.releases if not r.out_of_band)
    released = release_instant(newest.year, newest.month)
    return datetime.combine(released.date() + timedelta(days=7), time(12, 0), tzinfo=UTC)


def sandbox_estate(
    releases: ReleaseCatalog,
    *,
    machines: int,
    seed: int,
    as_of: datetime,
    subscriptions: int = 4,
    export: Path | None = None,
) -> Estate:
    """The estate to serve: an imported raw export, or a generated one."""
    if export is not None:
        return read_export(export)
    spec = EstateSpec(machines=machines, subscriptions=subscriptions, seed=seed, as_of=as_of)
    return generate_estate(spec, releases)


@contextmanager
def running_sandbox(estate: Estate, config: SandboxConfig | None = None) -> Iterator[Sandbox]:
    sandbox = Sandbox(config or SandboxConfig(), estate)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()
