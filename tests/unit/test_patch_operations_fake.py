"""The in-memory FakePatchOperations, and the domain types patch operations speak in."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hotpatch.core.models import MachineKind
from hotpatch.fakes import FakePatchOperations, RecordedCall, Scripted
from hotpatch.ports.patch_operations import (
    Classification,
    InstallParameters,
    MachineRef,
    OperationKind,
    OperationOutcome,
    OutcomeStatus,
    RebootSetting,
    RebootStatus,
)

NOW = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)
SUB = "11111111-1111-1111-1111-111111111111"
VM_1 = f"/subscriptions/{SUB}/resourceGroups/rg-1/providers/Microsoft.Compute/virtualMachines/vm-1"
VM_2 = f"/subscriptions/{SUB}/resourceGroups/rg-1/providers/Microsoft.Compute/virtualMachines/vm-2"
ARC_1 = f"/subscriptions/{SUB}/resourceGroups/rg-2/providers/Microsoft.HybridCompute/machines/arc-1"
NEVER = InstallParameters(reboot_setting=RebootSetting.NEVER)


def fake() -> FakePatchOperations:
    return FakePatchOperations(clock=lambda: NOW)


def refs(*ids: str) -> list[MachineRef]:
    return [MachineRef.parse(i) for i in ids]


# -- the fake -------------------------------------------------------------------------------------


async def test_every_machine_succeeds_unless_scripted_otherwise() -> None:
    outcomes = await fake().assess(refs(VM_1, VM_2))
    assert [(o.machine_id, o.status) for o in outcomes] == [
        (VM_1, OutcomeStatus.SUCCEEDED),
        (VM_2, OutcomeStatus.SUCCEEDED),
    ]
    assert [(o.critical_and_security, o.other, o.reboot_pending) for o in outcomes] == [
        (0, 0, False),
        (0, 0, False),
    ]


async def test_a_scripted_answer_is_played_for_its_machine_only() -> None:
    operations = fake().script(
        VM_2, OperationKind.ASSESS, Scripted(critical_and_security=2, reboot_pending=True)
    )
    first, second = await operations.assess(refs(VM_1, VM_2))
    assert (first.critical_and_security, first.reboot_pending) == (0, False)
    assert (second.critical_and_security, second.reboot_pending) == (2, True)


async def test_scripted_answers_play_in_order_and_then_the_machine_succeeds() -> None:
    operations = fake().script(
        VM_1,
        OperationKind.INSTALL,
        Scripted(OutcomeStatus.CONFLICT, error_code="OperationNotAllowed"),
        Scripted(OutcomeStatus.THROTTLED, attempts=11, throttled_answers=11),
    )
    statuses = [(await operations.install(refs(VM_1), NEVER))[0].status for _ in range(3)]
    assert statuses == [OutcomeStatus.CONFLICT, OutcomeStatus.THROTTLED, OutcomeStatus.SUCCEEDED]


async def test_an_answer_scripted_for_install_does_not_answer_an_assess() -> None:
    operations = fake().script(VM_1, OperationKind.INSTALL, Scripted(OutcomeStatus.FAILED))
    [assessed] = await operations.assess(refs(VM_1))
    assert assessed.status is OutcomeStatus.SUCCEEDED


async def test_a_failed_outcome_keeps_its_error_and_has_no_resume_token() -> None:
    answer = Scripted(OutcomeStatus.NOT_FOUND, error_code="ResourceNotFound", message="gone")
    [outcome] = await fake().script(VM_1, OperationKind.ASSESS, answer).assess(refs(VM_1))
    assert (outcome.error_code, outcome.message) == ("ResourceNotFound", "gone")
    assert outcome.resume_token is None
    assert outcome.critical_and_security is None


async def test_a_timed_out_answer_carries_a_token_and_resuming_plays_the_next_answer() -> None:
    operations = fake().script(
        VM_1,
        OperationKind.INSTALL,
        Scripted(OutcomeStatus.TIMED_OUT, attempts=2),
        Scripted(installed=1, reboot_status=RebootStatus.REQUIRED),
    )
    [running] = await operations.install(refs(VM_1), NEVER)
    assert running.resumable
    assert running.installed is None
    [finished] = await operations.resume([running])
    assert (finished.status, finished.installed, finished.reboot_status) == (
        OutcomeStatus.SUCCEEDED,
        1,
        RebootStatus.REQUIRED,
    )
    assert finished.attempts == 2
    assert not finished.resumable


@pytest.mark.parametrize(
    "answer",
    [
        Scripted(OutcomeStatus.THROTTLED, error_code="TooManyRequests", unfinished=True),
        Scripted(OutcomeStatus.ERROR, error_code="Cancelled", unfinished=True),
    ],
)
async def test_an_operation_polling_failed_on_or_cancelled_carries_a_token_as_the_real_one_does(
    answer: Scripted,
) -> None:
    operations = fake().script(VM_1, OperationKind.ASSESS, answer, Scripted(other=3))
    [unfinished] = await operations.assess(refs(VM_1))
    assert unfinished.resumable
    [finished] = await operations.resume([unfinished])
    assert (finished.status, finished.other) == (OutcomeStatus.SUCCEEDED, 3)


async def test_a_start_refused_with_throttling_or_an_error_has_no_token_as_in_the_real_one() -> (
    None
):
    operations = fake().script(
        VM_1, OperationKind.ASSESS, Scripted(OutcomeStatus.THROTTLED), Scripted(OutcomeStatus.ERROR)
    )
    [throttled] = await operations.assess(refs(VM_1))
    [refused] = await operations.assess(refs(VM_1))
    assert not throttled.resumable
    assert not refused.resumable


@pytest.mark.parametrize(
    "status",
    [
        OutcomeStatus.SUCCEEDED,
        OutcomeStatus.FAILED,
        OutcomeStatus.NOT_FOUND,
        OutcomeStatus.CONFLICT,
        OutcomeStatus.SKIPPED,
    ],
)
def test_an_answer_the_real_adapter_never_leaves_unfinished_cannot_be_scripted_so(
    status: OutcomeStatus,
) -> None:
    with pytest.raises(ValueError, match="never left unfinished"):
        Scripted(status, unfinished=True)


async def test_resuming_adds_the_throttling_met_while_polling_and_no_start_attempts() -> None:
    operations = fake().script(
        VM_1,
        OperationKind.ASSESS,
        Scripted(OutcomeStatus.TIMED_OUT, attempts=2, throttled_answers=1),
        Scripted(attempts=1, throttled_answers=2),
    )
    [running] = await operations.assess(refs(VM_1))
    [finished] = await operations.resume([running])
    assert (finished.attempts, finished.throttled_answers) == (2, 3)


async def test_resuming_a_machine_twice_in_one_batch_is_refused() -> None:
    operations = fake().script(VM_1, OperationKind.ASSESS, Scripted(OutcomeStatus.TIMED_OUT))
    [running] = await operations.assess(refs(VM_1))
    with pytest.raises(ValueError, match="vm-1 appears more than once"):
        await operations.resume([running, running])
    assert operations.operations_on(VM_1) == ["assess"]


async def test_arc_machines_are_assessed_and_installed_as_vms_are() -> None:
    operations = fake().script(ARC_1, OperationKind.INSTALL, Scripted(installed_kbs=("5075943",)))
    [assessed] = await operations.assess(refs(ARC_1))
    [installed] = await operations.install(refs(ARC_1), NEVER)
    assert (assessed.status, installed.status) == (OutcomeStatus.SUCCEEDED, OutcomeStatus.SUCCEEDED)
    assert installed.installed_kbs == ("KB5075943",)


async def test_an_install_reports_its_scripted_kbs_in_kb_form_and_counts_them() -> None:
    operations = fake().script(
        VM_1, OperationKind.INSTALL, Scripted(installed_kbs=("5075943", "KB890830"))
    )
    [outcome] = await operations.install(refs(VM_1), NEVER)
    assert outcome.installed_kbs == ("KB5075943", "KB890830")
    assert (outcome.installed, outcome.installed_kbs_complete) == (2, True)


async def test_an_install_scripted_with_no_kbs_installs_none_and_an_assess_reports_none() -> None:
    operations = fake().script(VM_1, OperationKind.ASSESS, Scripted(installed_kbs=("5075943",)))
    [installed] = await operations.install(refs(VM_1), NEVER)
    [assessed] = await operations.assess(refs(VM_1))
    assert (installed.installed, installed.installed_kbs) == (0, ())
    assert assessed.installed_kbs == ()


async def test_an_install_that_did_not_finish_reports_no_kbs_until_resumed() -> None:
    operations = fake().script(
        VM_1,
        OperationKind.INSTALL,
        Scripted(OutcomeStatus.TIMED_OUT, installed_kbs=("5075943",)),
        Scripted(installed_kbs=("5075943",)),
    )
    [running] = await operations.install(refs(VM_1), NEVER)
    [finished] = await operations.resume([running])
    assert (running.installed_kbs, finished.installed_kbs) == ((), ("KB5075943",))


def test_a_scripted_kb_that_is_no_kb_number_is_refused() -> None:
    with pytest.raises(ValueError, match="not a KB number"):
        Scripted(installed_kbs=("latest",))


async def test_the_client_request_ids_given_are_recorded_per_machine() -> None:
    operations = fake()
    await operations.install(
        refs(VM_1, VM_2), NEVER, client_request_ids={VM_1.upper(): "journal-id-1"}
    )
    assert operations.calls[-1].client_request_ids == {VM_1.lower(): "journal-id-1"}
    assert operations.client_request_id(VM_1, "install") == "journal-id-1"
    assert operations.client_request_id(VM_2, "install") is None
    assert operations.client_request_id(VM_1, "assess") is None


async def test_a_client_request_id_for_a_machine_outside_the_batch_is_refused() -> None:
    operations = fake()
    with pytest.raises(ValueError, match="not in the batch"):
        await operations.assess(refs(VM_1), client_request_ids={VM_2.lower(): "id"})
    assert operations.calls == []


@pytest.mark.parametrize("request_id", ["", "two\nlines"])
async def test_a_client_request_id_that_cannot_be_a_header_is_refused(request_id: str) -> None:
    with pytest.raises(ValueError, match="not a header value"):
        await fake().assess(refs(VM_1), client_request_ids={VM_1.lower(): request_id})


async def test_calls_are_recorded_with_their_machines_and_parameters() -> None:
    operations = fake()
    await operations.assess(refs(VM_1, VM_2))
    await operations.install(refs(VM_2), NEVER)
    assert operations.calls == [
        RecordedCall("assess", (VM_1, VM_2)),
        RecordedCall("install", (VM_2,), NEVER),
    ]
    assert operations.operations_on(VM_2) == ["assess", "install"]
    assert operations.operations_on(VM_1.upper()) == ["assess"]


async def test_on_outcome_hears_each_outcome_once() -> None:
    heard: list[OperationOutcome] = []
    outcomes = await fake().assess(refs(VM_1, ARC_1, VM_2), on_outcome=heard.append)
    assert heard == outcomes


async def test_a_failing_progress_callback_does_not_stop_the_batch() -> None:
    def broken(_: OperationOutcome) -> None:
        raise RuntimeError("the journal is down")

    operations = fake()
    outcomes = await operations.assess(refs(VM_1, VM_2), on_outcome=broken)
    assert [(o.machine_id, o.status) for o in outcomes] == [
        (VM_1, OutcomeStatus.SUCCEEDED),
        (VM_2, OutcomeStatus.SUCCEEDED),
    ]
    assert (operations.operations_on(VM_1), operations.operations_on(VM_2)) == (
        ["assess"],
        ["assess"],
    )


async def test_a_machine_named_twice_in_one_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="vm-1 appears more than once"):
        await fake().assess(refs(VM_1, VM_1.lower()))


# -- machine references ---------------------------------------------------------------------------


def test_a_vm_id_is_read_into_its_parts() -> None:
    ref = MachineRef.parse(VM_1)
    assert (ref.subscription, ref.resource_group, ref.name, ref.kind) == (
        SUB,
        "rg-1",
        "vm-1",
        MachineKind.VM,
    )
    assert ref.id == VM_1


def test_an_arc_id_in_lower_case_is_read_and_written_back_in_arm_spelling() -> None:
    ref = MachineRef.parse(ARC_1.lower())
    assert ref.kind is MachineKind.ARC
    assert ref.id == ARC_1
    assert ref.key == ARC_1.lower()


@pytest.mark.parametrize(
    "resource_id",
    [
        "",
        "vm-1",
        f"/subscriptions/{SUB}/resourceGroups/rg-1",
        f"/subscriptions/{SUB}/resourceGroups/rg-1/providers/Microsoft.Compute/disks/d-1",
        f"/subscriptions/{SUB}/resourceGroups/rg-1/providers/Microsoft.Compute/"
        "virtualMachineScaleSets/vmss-1",
        f"/subscriptions/{SUB}/resourceGroups/rg-1/providers/Microsoft.Compute/"
        "virtualMachines/vm-1/extensions/x",
        "/subscriptions//resourceGroups/rg-1/providers/Microsoft.Compute/virtualMachines/vm-1",
    ],
)
def test_an_id_that_names_no_vm_or_arc_machine_is_refused_by_name(resource_id: str) -> None:
    with pytest.raises(ValueError, match="is not the ARM id of a virtual machine") as refused:
        MachineRef.parse(resource_id)
    assert repr(resource_id) in str(refused.value)


def test_a_scale_set_cannot_be_addressed_as_a_machine() -> None:
    with pytest.raises(ValidationError, match="not scale sets"):
        MachineRef(subscription=SUB, resource_group="rg", name="ss", kind=MachineKind.SCALE_SET)


_segment = st.text(string.ascii_letters + string.digits + "-_.()", min_size=1, max_size=20)


@given(_segment, _segment, _segment, st.sampled_from([MachineKind.VM, MachineKind.ARC]))
def test_a_machine_reference_survives_its_own_id(
    subscription: str, group: str, name: str, kind: MachineKind
) -> None:
    ref = MachineRef(subscription=subscription, resource_group=group, name=name, kind=kind)
    assert MachineRef.parse(ref.id) == ref
    assert MachineRef.parse(ref.id.upper()).key == ref.key


@st.composite
def _written_ids(draw: st.DrawFn) -> tuple[str, MachineRef]:
    """A machine's id as someone may write it: in any case, a trailing slash, spaces around."""
    kind = draw(st.sampled_from([MachineKind.VM, MachineKind.ARC]))
    ref = MachineRef(
        subscription=draw(_segment), resource_group=draw(_segment), name=draw(_segment), kind=kind
    )
    text = draw(st.sampled_from([ref.id, ref.id.lower(), ref.id.upper()]))
    text += draw(st.sampled_from(["", "/"]))
    return draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", "\n"])), ref


@given(_written_ids())
def test_a_machine_id_written_in_any_case_or_with_a_trailing_slash_reads_as_its_machine(
    written: tuple[str, MachineRef],
) -> None:
    text, ref = written
    parsed = MachineRef.parse(text)
    assert (parsed.key, parsed.kind, parsed.name.lower()) == (ref.key, ref.kind, ref.name.lower())


@given(st.text(max_size=200) | _written_ids().map(lambda written: written[0]))
def test_any_text_is_either_a_machine_id_or_a_value_error(text: str) -> None:
    try:
        ref = MachineRef.parse(text)
    except ValueError:
        return
    assert ref.key == MachineRef.parse(ref.id).key


# -- install parameters ---------------------------------------------------------------------------


def test_install_parameters_default_to_critical_and_security_in_a_two_hour_window() -> None:
    assert NEVER.classifications == (Classification.CRITICAL, Classification.SECURITY)
    assert NEVER.maximum_duration == timedelta(hours=2)


@pytest.mark.parametrize(
    ("duration", "accepted"),
    [
        (timedelta(minutes=1), True),
        (timedelta(hours=3, minutes=54, seconds=59), True),
        (timedelta(hours=3, minutes=55), False),
        (timedelta(hours=4), False),
        (timedelta(0), False),
        (timedelta(minutes=-5), False),
    ],
)
def test_the_maximum_duration_must_be_positive_and_under_3h55m(
    duration: timedelta, accepted: bool
) -> None:
    if accepted:
        parameters = InstallParameters(reboot_setting="Never", maximum_duration=duration)
        assert parameters.maximum_duration == duration
    else:
        with pytest.raises(ValidationError, match="maximum_duration"):
            InstallParameters(reboot_setting="Never", maximum_duration=duration)


def test_kb_numbers_are_kept_as_digits_without_repeats() -> None:
    parameters = InstallParameters(
        reboot_setting=RebootSetting.IF_REQUIRED, kb_exclude=("KB5075943", "5075943", "kb890830")
    )
    assert parameters.kb_exclude == ("5075943", "890830")


def test_a_kb_that_is_no_number_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a KB number"):
        InstallParameters(reboot_setting=RebootSetting.NEVER, kb_include=("KB-latest",))


def test_an_unknown_classification_or_reboot_setting_is_refused() -> None:
    with pytest.raises(ValidationError, match="classifications"):
        InstallParameters(reboot_setting=RebootSetting.NEVER, classifications=("Drivers",))
    with pytest.raises(ValidationError, match="reboot_setting"):
        InstallParameters(reboot_setting="Sometimes")


@pytest.mark.parametrize("kind", [MachineKind.VM, MachineKind.ARC])
def test_install_parameters_become_the_install_patches_body(kind: MachineKind) -> None:
    from hotpatch.azure.compute import install_body

    parameters = InstallParameters(
        reboot_setting=RebootSetting.NEVER,
        classifications=(Classification.SECURITY,),
        kb_exclude=("KB5075943",),
        exclude_kbs_requiring_reboot=True,
        maximum_duration=timedelta(hours=1, minutes=30),
        max_patch_publish_date=datetime(2026, 5, 12, 17, 0, tzinfo=UTC),
    )
    body = install_body(parameters, kind).as_dict()
    assert body == {
        "maximumDuration": "PT01H30M00S",
        "rebootSetting": "Never",
        "windowsParameters": {
            "classificationsToInclude": ["Security"],
            "kbNumbersToExclude": ["5075943"],
            "excludeKbsRequiringReboot": True,
            "maxPatchPublishDate": "2026-05-12T17:00:00Z",
        },
    }


def test_a_publish_date_without_a_zone_is_read_as_utc() -> None:
    parameters = InstallParameters(
        reboot_setting=RebootSetting.NEVER, max_patch_publish_date=datetime(2026, 5, 12)
    )
    assert parameters.max_patch_publish_date == datetime(2026, 5, 12, tzinfo=UTC)


def finished_install(machine_id: str, **fields: object) -> OperationOutcome:
    return OperationOutcome.model_validate(
        {
            "machine_id": machine_id,
            "operation": OperationKind.INSTALL,
            "status": OutcomeStatus.SUCCEEDED,
            "started": NOW,
            "finished": NOW,
            **fields,
        }
    )


def test_installed_kbs_are_kept_in_kb_form_once_each() -> None:
    outcome = finished_install(
        VM_1, installed=2, installed_kbs=("5075943", "kb5075943", "KB890830")
    )
    assert outcome.installed_kbs == ("KB5075943", "KB890830")
    assert outcome.installed_kbs_complete


def test_installed_kbs_are_incomplete_when_the_result_counted_more_than_it_listed() -> None:
    # Azure Arc's install result counts installed patches without listing them.
    outcome = finished_install(ARC_1, installed=1)
    assert (outcome.installed_kbs, outcome.installed_kbs_complete) == ((), False)


def test_an_installed_kb_that_is_no_kb_number_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a KB number"):
        finished_install(VM_1, installed=1, installed_kbs=("latest",))


def test_an_outcome_round_trips_through_json_for_the_journal() -> None:
    outcome = OperationOutcome(
        machine_id=VM_1,
        operation=OperationKind.INSTALL,
        status=OutcomeStatus.TIMED_OUT,
        started=NOW,
        finished=NOW + timedelta(minutes=5),
        attempts=3,
        resume_token="token",
        installed_kbs=("KB5075943",),
    )
    again = OperationOutcome.model_validate_json(outcome.model_dump_json())
    assert again == outcome
    assert (again.retries, again.resumable, again.machine) == (2, True, MachineRef.parse(VM_1))


@pytest.mark.parametrize("written", ["KB5075943", "kb5075943", " 5075943 "])
def test_an_install_takes_a_kb_however_it_is_written_and_sends_its_digits(written: str) -> None:
    parameters = InstallParameters(reboot_setting="Never", kb_exclude=(written,))
    assert parameters.kb_exclude == ("5075943",)


@pytest.mark.parametrize("written", ["KB٥٠٧٥٩٤٣", "５０７５９４３", "KB123", "Q5075943"])
def test_an_install_refuses_a_kb_azure_would_never_report(written: str) -> None:
    with pytest.raises(ValidationError, match="is not a KB number"):
        InstallParameters(reboot_setting="Never", kb_exclude=(written,))
