"""The composition root: settings (or a sandbox) in, typed ports out; bad wiring fails early."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from hotpatch import bootstrap
from hotpatch.bootstrap import SandboxEndpoint
from hotpatch.data import shipped_release_catalog
from hotpatch.errors import ConfigurationError
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
