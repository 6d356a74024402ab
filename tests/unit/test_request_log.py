"""The sandbox's request log file: what a line holds, and how it is read back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hotpatch.sandbox.request_log import (
    REQUEST_LOG_NAME,
    LoggedInstall,
    LoggedRequest,
    RequestLog,
    install_fields,
    read_requests,
)

NOW = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)
MACHINE = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-1/providers/"
    "Microsoft.Compute/virtualMachines/vm-1"
)


def request(client_request_id: str | None = "id-1", **changes: object) -> LoggedRequest:
    fields: dict[str, object] = {
        "time": NOW,
        "method": "POST",
        "path": f"{MACHINE}/installPatches",
        "machine_id": MACHINE,
        "operation": "installPatches",
        "client_request_id": client_request_id,
        "status": 202,
        "install": LoggedInstall(reboot_setting="Never", kb_numbers_to_exclude=("5062557",)),
        **changes,
    }
    return LoggedRequest.model_validate(fields)


def test_a_logged_request_reads_back_as_it_was_written(tmp_path: Path) -> None:
    log = RequestLog(tmp_path)
    written = [request(), request("id-2", status=None, install=None)]
    for each in written:
        log.append(each)
    log.close()
    assert read_requests(tmp_path) == written


def test_a_line_is_written_in_the_wire_spelling_of_the_fields(tmp_path: Path) -> None:
    log = RequestLog(tmp_path)
    log.append(request())
    log.close()
    line = (tmp_path / REQUEST_LOG_NAME).read_text()
    assert '"clientRequestId":"id-1"' in line
    assert '"kbNumbersToExclude":["5062557"]' in line
    assert line.endswith("\n")


def test_a_log_not_written_yet_reads_as_no_requests(tmp_path: Path) -> None:
    assert read_requests(tmp_path) == []


def test_a_last_line_cut_short_is_left_out(tmp_path: Path) -> None:
    whole = request().model_dump_json(by_alias=True)
    (tmp_path / REQUEST_LOG_NAME).write_text(whole + "\n" + whole[:40])
    assert read_requests(tmp_path) == [request()]


def test_a_broken_line_before_the_last_is_an_error_naming_it(tmp_path: Path) -> None:
    whole = request().model_dump_json(by_alias=True)
    (tmp_path / REQUEST_LOG_NAME).write_text("{broken\n" + whole + "\n")
    with pytest.raises(ValueError, match=f"{REQUEST_LOG_NAME}:1: not a logged request"):
        read_requests(tmp_path)


def test_install_fields_are_read_as_sent_and_odd_values_kept_as_their_json() -> None:
    fields = install_fields(
        {
            "rebootSetting": "IfRequired",
            "maximumDuration": 7200,
            "windowsParameters": {
                "classificationsToInclude": "Security",
                "kbNumbersToInclude": ["KB5075943", 5078737],
            },
        }
    )
    assert fields == LoggedInstall(
        reboot_setting="IfRequired",
        maximum_duration="7200",
        classifications_to_include=('"Security"',),
        kb_numbers_to_include=("KB5075943", "5078737"),
    )


def test_an_install_without_windows_parameters_logs_no_filters() -> None:
    assert install_fields({"rebootSetting": "Never", "windowsParameters": None}) == LoggedInstall(
        reboot_setting="Never"
    )


def test_kbs_asked_for_compare_in_kb_form_whatever_the_spelling_sent() -> None:
    fields = LoggedInstall(
        kb_numbers_to_include=("5075943", "kb5078737"), kb_numbers_to_exclude=("KB5062557", "x")
    )
    assert fields.kbs_included == {"KB5075943", "KB5078737"}
    assert fields.kbs_excluded == {"KB5062557", "x"}


def test_a_request_is_accepted_only_with_a_success_status() -> None:
    assert [request(status=s).accepted for s in (200, 202, 400, 429, None)] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert request().machine_key == MACHINE.lower()
