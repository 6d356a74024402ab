"""The sandbox's request log: every assess and install request it answered, refused or dropped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from hotpatch.sandbox.arm import FaultConfig, Quota
from hotpatch.sandbox.estate import Estate
from hotpatch.sandbox.request_log import REQUEST_LOG_NAME, LoggedRequest, read_requests
from hotpatch.sandbox.server import Sandbox, SandboxConfig
from tests.integration.conftest import SUB_A, ManualClock, arc_row, vm_row

pytestmark = pytest.mark.sandbox

Start = Callable[..., Sandbox]
GROUPS = f"/subscriptions/{SUB_A}/resourceGroups"
VM_PATH = f"{GROUPS}/rg-hotpatch/providers/Microsoft.Compute/virtualMachines"
ARC_PATH = f"{GROUPS}/rg-arc/providers/Microsoft.HybridCompute/machines"
ON_JANUARY_BASELINE = "10.0.20348.4648"
FEBRUARY_HOTPATCH_KB = "5075943"
HOTPATCH_ONLY = {
    "rebootSetting": "Never",
    "maximumDuration": "PT2H",
    "windowsParameters": {
        "classificationsToInclude": ["Critical", "Security"],
        "kbNumbersToExclude": ["KB5062557"],
        "maxPatchPublishDate": "2026-02-10T17:00:00Z",
    },
}


def post(
    sandbox: Sandbox,
    path: str,
    body: Any = None,
    *,
    request_id: str | None = None,
    token: str | None = "t",
    api_version: str = "2024-07-10",
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if request_id is not None:
        headers["x-ms-client-request-id"] = request_id
    return requests.post(
        f"{sandbox.base_url}{path}?api-version={api_version}",
        json=body,
        headers=headers,
        verify=str(sandbox.ca_path),
        timeout=30,
    )


def logged(sandbox: Sandbox) -> list[LoggedRequest]:
    assert sandbox.state_dir is not None
    return read_requests(sandbox.state_dir)


@pytest.fixture
def sandbox(start_sandbox: Start) -> Sandbox:
    rows = [vm_row("vm-1", os_version=ON_JANUARY_BASELINE), vm_row("vm-2"), arc_row("arc-1")]
    return start_sandbox(Estate(rows, [], []), operation_retry_after_seconds=0)


def test_an_accepted_install_is_logged_with_its_parameters_and_client_request_id(
    sandbox: Sandbox, clock: ManualClock
) -> None:
    answer = post(sandbox, f"{VM_PATH}/vm-1/installPatches", HOTPATCH_ONLY, request_id="journal-1")
    assert answer.status_code == 202
    [request] = logged(sandbox)
    assert (request.method, request.path, request.operation, request.status) == (
        "POST",
        f"{VM_PATH}/vm-1/installPatches",
        "installPatches",
        202,
    )
    assert (request.machine_id, request.client_request_id, request.time) == (
        f"{VM_PATH}/vm-1",
        "journal-1",
        clock.now(),
    )
    assert request.accepted
    assert request.install is not None
    assert request.install.model_dump() == {
        "reboot_setting": "Never",
        "maximum_duration": "PT2H",
        "classifications_to_include": ("Critical", "Security"),
        "kb_numbers_to_include": (),
        "kb_numbers_to_exclude": ("KB5062557",),
        "max_patch_publish_date": "2026-02-10T17:00:00Z",
    }
    assert request.install.kbs_excluded == {"KB5062557"}


def test_an_assess_is_logged_without_a_body_and_polls_and_queries_are_not_logged(
    sandbox: Sandbox,
) -> None:
    started = post(sandbox, f"{ARC_PATH}/arc-1/assessPatches")
    requests.get(
        started.headers["Location"],
        headers={"Authorization": "Bearer t"},
        verify=str(sandbox.ca_path),
        timeout=30,
    )
    [request] = logged(sandbox)
    assert (request.operation, request.status, request.install, request.client_request_id) == (
        "assessPatches",
        202,
        None,
        None,
    )
    assert request.machine_key == f"{ARC_PATH}/arc-1".lower()


def test_refused_requests_are_logged_with_the_status_answered(
    sandbox: Sandbox, clock: ManualClock
) -> None:
    clock.freeze()  # vm-2's assessment runs until the clock moves: it is busy
    post(sandbox, f"{VM_PATH}/vm-2/assessPatches")
    answers = [
        post(sandbox, f"{VM_PATH}/no-such-vm/installPatches", HOTPATCH_ONLY, request_id="a"),
        post(sandbox, f"{VM_PATH}/vm-2/installPatches", HOTPATCH_ONLY, request_id="b"),
        post(sandbox, f"{VM_PATH}/vm-1/installPatches", {"rebootSetting": "Sometimes"}),
        post(sandbox, f"{VM_PATH}/vm-1/installPatches", HOTPATCH_ONLY, token=None),
        post(sandbox, f"{VM_PATH}/vm-1/assessPatches", api_version="2027-01-01"),
    ]
    assert [a.status_code for a in answers] == [404, 409, 400, 401, 400]
    first, *refused = logged(sandbox)
    assert first.status == 202
    assert [(r.status, r.client_request_id) for r in refused] == [
        (404, "a"),
        (409, "b"),
        (400, None),
        (401, None),
        (400, None),
    ]
    assert not any(r.accepted for r in refused)
    # What each install asked for is logged even when it was refused before it was read.
    bodies = [r.install for r in refused]
    assert [b.reboot_setting if b else None for b in bodies] == [
        "Never",
        "Never",
        "Sometimes",
        "Never",
        None,
    ]


def test_a_throttled_request_is_logged_with_its_429(start_sandbox: Start) -> None:
    sandbox = start_sandbox(
        Estate([vm_row("vm-1"), vm_row("vm-2")], [], []), write_quota=Quota(1, 60.0)
    )
    post(sandbox, f"{VM_PATH}/vm-1/installPatches", HOTPATCH_ONLY)
    post(sandbox, f"{VM_PATH}/vm-2/installPatches", HOTPATCH_ONLY)
    assert [(r.machine_id.rsplit("/", 1)[1], r.status) for r in logged(sandbox)] == [
        ("vm-1", 202),
        ("vm-2", 429),
    ]
    assert logged(sandbox)[1].install is not None


def test_a_dropped_request_is_logged_with_no_status(start_sandbox: Start) -> None:
    sandbox = start_sandbox(Estate([vm_row("vm-1")], [], []), faults=FaultConfig(drop_rate=1.0))
    with pytest.raises(requests.ConnectionError):
        post(sandbox, f"{VM_PATH}/vm-1/assessPatches", request_id="lost")
    [request] = logged(sandbox)
    assert (request.status, request.client_request_id, request.accepted) == (None, "lost", False)


def test_the_log_is_appended_to_across_restarts_on_the_same_state_directory(
    tmp_path: Any, clock: ManualClock
) -> None:
    config = SandboxConfig(state_dir=tmp_path / "state", operation_retry_after_seconds=0)
    estate = Estate([vm_row("vm-1")], [], [])
    for request_id in ("first", "second"):
        with Sandbox(config, estate, clock=clock) as sandbox:
            post(sandbox, f"{VM_PATH}/vm-1/assessPatches", request_id=request_id)
    assert [r.client_request_id for r in read_requests(tmp_path / "state")] == ["first", "second"]
    assert (tmp_path / "state" / REQUEST_LOG_NAME).is_file()


def test_the_installs_filters_decide_what_it_installs_and_the_log_shows_what_was_asked(
    start_sandbox: Start,
) -> None:
    """kbNumbersToInclude naming another KB, with no classification asked, selects nothing;
    naming the month's KB installs it; kbNumbersToExclude wins over both."""
    sandbox = start_sandbox(
        Estate([vm_row("vm-1", os_version=ON_JANUARY_BASELINE)], [], []),
        operation_latency_seconds=0.0,
    )

    def install(windows: dict[str, Any]) -> dict[str, Any]:
        started = post(
            sandbox,
            f"{VM_PATH}/vm-1/installPatches",
            {"rebootSetting": "Never", "windowsParameters": windows},
        )
        assert started.status_code == 202
        result: dict[str, Any] = requests.get(
            started.headers["Location"],
            headers={"Authorization": "Bearer t"},
            verify=str(sandbox.ca_path),
            timeout=30,
        ).json()
        return result

    def states(result: dict[str, Any]) -> list[tuple[str, str]]:
        return [(p["kbId"], p["installationState"]) for p in result["patches"]]

    other_kb = install({"classificationsToInclude": [], "kbNumbersToInclude": ["KB5062557"]})
    excluded = install(
        {
            "kbNumbersToInclude": [FEBRUARY_HOTPATCH_KB],
            "kbNumbersToExclude": [f"KB{FEBRUARY_HOTPATCH_KB}"],
        }
    )
    asked = install({"classificationsToInclude": [], "kbNumbersToInclude": [FEBRUARY_HOTPATCH_KB]})
    assert states(other_kb) == [(FEBRUARY_HOTPATCH_KB, "NotSelected")]
    assert states(excluded) == [(FEBRUARY_HOTPATCH_KB, "Excluded")]
    assert states(asked) == [(FEBRUARY_HOTPATCH_KB, "Installed")]
    log = logged(sandbox)
    assert [r.install.kbs_included if r.install else None for r in log] == [
        {"KB5062557"},
        {f"KB{FEBRUARY_HOTPATCH_KB}"},
        {f"KB{FEBRUARY_HOTPATCH_KB}"},
    ]
