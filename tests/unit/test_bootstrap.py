"""The composition root: settings (or a sandbox) in, typed ports out; bad wiring fails early."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest
import trustme

from hotpatch import bootstrap
from hotpatch.bootstrap import SandboxEndpoint
from hotpatch.core.calendar import YearMonth
from hotpatch.core.plan import RemediationPolicy
from hotpatch.data import shipped_release_catalog
from hotpatch.errors import ConfigurationError, StoreError
from hotpatch.fakes import FakePatchOperations, InMemoryInventory, MemoryStore
from hotpatch.ports.inventory import Scope
from hotpatch.ports.store import StoredCatalog
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from hotpatch.service import sweep
from hotpatch.settings import Settings

AS_OF = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)


def test_the_world_holds_the_rules_the_settings_name_and_the_clock_it_was_given() -> None:
    world = bootstrap.build(
        Settings.from_env({"HOTPATCH_ASSESSMENT_MAX_AGE_HOURS": "24"}), clock=lambda: AS_OF
    )
    assert world.rules.policy.assessment_max_age.total_seconds() == 24 * 3600
    assert world.clock() == AS_OF


def test_a_bad_catalog_setting_fails_while_building_not_later(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOTPATCH_RELEASE_CATALOG": str(tmp_path / "none.json")})
    with pytest.raises(ConfigurationError):
        bootstrap.build(settings)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("ca_text", "says"),
    [
        (None, "cannot read"),
        ("not a certificate", "not a PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "not a usable"),
    ],
)
def test_a_sandbox_target_with_a_bad_ca_file_is_a_configuration_error(
    tmp_path: Path, closed_port: int, ca_text: str | None, says: str
) -> None:
    ca = tmp_path / "ca.pem"
    if ca_text is not None:
        ca.write_text(ca_text)
    endpoint = SandboxEndpoint(f"https://127.0.0.1:{closed_port}", ca)
    with pytest.raises(ConfigurationError, match=says), bootstrap.sandbox_target(endpoint):
        pass


def test_an_in_process_sandbox_is_swept_through_the_same_ports(tmp_path: Path) -> None:
    world = bootstrap.build(Settings(), clock=lambda: AS_OF)
    estate = generate_estate(
        EstateSpec(machines=40, subscriptions=2, seed=3, as_of=AS_OF), shipped_release_catalog()
    )
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with bootstrap.in_process_sandbox(estate, AS_OF) as target:
        assert target.sandbox is not None
        assert target.as_of == AS_OF
        result = sweep(target.inventory, target.scope, world.rules, now=AS_OF)
        # The same sandbox, trusted through a CA that did not sign it: refused before any work.
        wrong = SandboxEndpoint(target.sandbox.base_url, other_ca)
        with (
            pytest.raises(ConfigurationError, match="not signed by"),
            bootstrap.sandbox_target(wrong),
        ):
            pass
    assert result.evaluation.summary.total == len(estate.machine_ids())


def test_the_store_the_settings_name_is_open_for_the_block_and_closed_after(
    tmp_path: Path,
) -> None:
    settings = Settings.from_env({"HOTPATCH_STORE": str(tmp_path / "store")})
    with bootstrap.compliance_store(settings) as store:
        assert store.runs() == []
    assert (tmp_path / "store" / "store.db").is_file()
    with pytest.raises(StoreError):
        store.runs()  # closed


@pytest.mark.parametrize("setting", ["ftp://host/store", "{tmp}/a-file/store"])
def test_a_store_setting_that_cannot_be_opened_is_a_configuration_error_naming_it(
    tmp_path: Path, setting: str
) -> None:
    (tmp_path / "a-file").write_text("in the way")
    settings = Settings.from_env({"HOTPATCH_STORE": setting.replace("{tmp}", str(tmp_path))})
    with (
        pytest.raises(ConfigurationError, match=r"^HOTPATCH_STORE"),
        bootstrap.compliance_store(settings),
    ):
        pass


def test_a_run_is_recorded_as_the_managed_identity_or_the_user_at_this_host() -> None:
    identity = Settings.from_env({"HOTPATCH_MANAGED_IDENTITY_CLIENT_ID": "client-1"})
    assert bootstrap.operator(identity) == "managed identity client-1"
    assert f"@{socket.gethostname()}" in bootstrap.operator(Settings())


@asynccontextmanager
async def fake_operations() -> AsyncIterator[FakePatchOperations]:
    yield FakePatchOperations()


def test_a_remediation_plans_by_the_release_catalog_refreshed_into_its_store() -> None:
    world = bootstrap.build(Settings.from_env({}), clock=lambda: AS_OF)
    target = bootstrap.Target(
        inventory=InMemoryInventory([]),
        scope=Scope(),
        patch_operations=fake_operations,
        installations=InMemoryInventory([]),
    )
    store = MemoryStore()
    shipped = json.loads(resources.files("hotpatch.data").joinpath("releases.json").read_text())
    store.save_catalog(
        StoredCatalog(
            name=bootstrap.RELEASE_CATALOG,
            document={**shipped, "covers_through": "2026-07"},
            source="https://example.test/release-info",
            refreshed_at=AS_OF,
        )
    )
    policy = RemediationPolicy()

    remediation = bootstrap.remediation(world, target, store, policy, clock=world.clock)

    assert world.rules.calendar.catalog.covers_through == YearMonth(2026, 5)
    assert remediation.calendar.catalog.covers_through == YearMonth(2026, 7)
