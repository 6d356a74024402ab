"""Every endpoint but the compliance listing, over a real server."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from hotpatch.api import create_app
from hotpatch.api.server import serving_in_thread
from hotpatch.core.calendar import YearMonth
from hotpatch.core.eligibility import image_eligibility
from hotpatch.core.models import ImageRef, OsFamily
from hotpatch.core.plan import plan
from hotpatch.errors import StoreError
from hotpatch.plan_report import plan_json
from hotpatch.policy_file import load_policy
from hotpatch.ports.store import VerdictRow
from hotpatch.remediation import rollout_state
from hotpatch.report import calendar_json
from hotpatch.store.memory import MemoryStore
from tests.api.conftest import EXAMPLE_POLICY, KEY, RecordingStarter, serve, world
from tests.api.estate import SUBSCRIPTIONS, T0, fleet, machine, machine_id, store_snapshot


def problem_of(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    document: dict[str, Any] = answer.json()
    assert document["status"] == status
    assert {"type", "title", "detail"} <= set(document)
    return document


# -- summary ------------------------------------------------------------------------------------


def test_the_summary_counts_the_latest_snapshot_by_state_subscription_os_and_ring(
    api: httpx.Client, rows: list[VerdictRow]
) -> None:
    summary = api.get("/api/compliance/summary").json()
    assert summary["snapshot"]["run_id"] == "20260520T120000Z-sweep"
    assert summary["machines"] == len(rows)
    assert summary["eligible"] == sum(row.eligible for row in rows)
    assert summary["by_state"] == dict(Counter(row.state.value for row in rows))
    assert summary["by_subscription"] == dict(Counter(row.subscription for row in rows))
    assert summary["by_os"] == dict(Counter(row.os.value if row.os else "" for row in rows))
    assert summary["by_ring"] == dict(Counter(row.ring or "" for row in rows))


def test_the_summary_trend_lists_recent_sweeps_oldest_first(api: httpx.Client) -> None:
    trend = api.get("/api/compliance/summary").json()["trend"]
    assert [point["run_id"] for point in trend] == [
        "20260519T120000Z-sweep",
        "20260520T120000Z-sweep",
    ]
    assert trend[0]["machines"] == 10_000
    assert trend[1]["by_state"]["non_compliant"] == trend[0]["by_state"]["non_compliant"] - 1
    assert api.get("/api/compliance/summary", params={"trend": 1}).json()["trend"] == trend[1:]
    assert api.get("/api/compliance/summary", params={"trend": 0}).json()["trend"] == []


def test_before_any_sweep_the_summary_counts_nothing() -> None:
    with serve(MemoryStore(), api_key=KEY) as url:
        summary = httpx.get(
            f"{url}/api/compliance/summary", headers={"x-functions-key": KEY}
        ).json()
    assert summary["snapshot"] is None
    assert summary["machines"] == 0
    assert summary["trend"] == []


# -- one machine --------------------------------------------------------------------------------


def test_a_machine_by_its_url_encoded_arm_id_has_its_verdict_history_and_operations(
    api: httpx.Client,
) -> None:
    answer = api.get("/api/compliance/" + quote(machine_id(3), safe=""))
    assert answer.status_code == 200
    detail = answer.json()
    assert detail["machine"] == machine_id(3)
    assert detail["verdict"]["state"] == "compliant"
    assert [(t["from"], t["to"]) for t in detail["transitions"]] == [
        (None, "non_compliant"),
        ("non_compliant", "compliant"),
    ]
    assert [(op["action"], op["status"]) for op in detail["operations"]] == [
        ("install", "succeeded")
    ]
    assert "version" not in detail["operations"][0]


@pytest.mark.parametrize(
    "asked",
    [
        machine_id(3).upper(),
        quote(machine_id(3).lower(), safe=""),
        machine_id(3).lstrip("/"),
        "VM-00003",
    ],
    ids=["upper case", "lower case, encoded", "no leading slash", "by name"],
)
def test_a_machine_is_found_by_its_id_in_any_case_or_by_its_name(
    api: httpx.Client, asked: str
) -> None:
    answer = api.get(f"/api/compliance/{asked}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["machine"] == machine_id(3)


def test_a_machine_gone_from_the_latest_sweep_still_has_its_history(api: httpx.Client) -> None:
    detail = api.get("/api/compliance/" + quote(machine_id(7), safe="")).json()
    assert detail["verdict"] is None
    assert detail["transitions"][-1]["to"] is None


@pytest.mark.parametrize(
    "asked",
    [
        quote(
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/x/providers/"
            "Microsoft.Compute/virtualMachines/nowhere",
            safe="",
        ),
        "nowhere",
    ],
)
def test_a_machine_the_store_knows_nothing_of_is_a_404_problem(
    api: httpx.Client, asked: str
) -> None:
    problem = problem_of(api.get(f"/api/compliance/{asked}"), 404)
    assert problem["type"] == "urn:hotpatch:problem:not-found"


def test_a_name_shared_by_several_machines_is_a_409_listing_their_ids() -> None:
    store = MemoryStore()
    twins = [machine(1), machine(2)]
    store_snapshot(store, "run-twins", [twins[0], _named(twins[1], twins[0].name)])
    with serve(store, api_key=KEY) as url:
        answer = httpx.get(
            f"{url}/api/compliance/{twins[0].name}", headers={"x-functions-key": KEY}
        )
    problem = problem_of(answer, 409)
    assert problem["candidates"] == [machine_id(1), machine_id(2)]


def _named(row: VerdictRow, name: str) -> VerdictRow:
    from dataclasses import replace

    return replace(row, name=name)


def test_a_path_that_is_neither_an_id_nor_a_name_is_a_400(api: httpx.Client) -> None:
    problem = problem_of(api.get("/api/compliance/some/where"), 400)
    assert problem["invalid-params"][0]["name"] == "machine"


# -- calendar and images ------------------------------------------------------------------------


def test_the_calendar_is_the_rules_calendar_from_the_month_asked(api: httpx.Client) -> None:
    answer = api.get("/api/calendar", params={"os": "ws2025", "months": 6, "from": "2026-01"})
    rules = world().rules
    assert answer.json() == {
        "os": "ws2025",
        "from": "2026-01",
        "months": 6,
        "value": calendar_json(rules.calendar.months(OsFamily.WS2025, YearMonth(2026, 1), 6)),
    }


def test_the_calendar_starts_at_the_clocks_month_by_default(api: httpx.Client) -> None:
    calendar = api.get("/api/calendar", params={"os": "ws2022"}).json()
    assert calendar["from"] == "2026-05"
    assert len(calendar["value"]) == 12


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({}, "os"),
        ({"os": "ws2016"}, "os"),
        ({"os": "ws2022", "months": "0"}, "months"),
        ({"os": "ws2022", "months": "1201"}, "months"),
        ({"os": "ws2022", "from": "2026-13"}, "from"),
        ({"os": "ws2022", "from": "1999-12"}, "from"),
        ({"os": "ws2022", "from": "9990-12", "months": "2"}, "months"),
    ],
)
def test_a_bad_calendar_question_is_a_400_naming_the_parameter(
    api: httpx.Client, params: dict[str, str], name: str
) -> None:
    problem = problem_of(api.get("/api/calendar", params=params), 400)
    assert problem["invalid-params"][0]["name"] == name


@pytest.mark.parametrize(
    "body",
    [
        {"urn": "MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition-hotpatch"},
        {
            "publisher": "MicrosoftWindowsServer",
            "offer": "WindowsServer",
            "sku": "2022-datacenter-azure-edition-hotpatch",
        },
        {"urn": "MicrosoftWindowsServer:WindowsServer:2019-datacenter:latest"},
        {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server"},
    ],
)
def test_an_image_check_answers_as_the_eligibility_rules_do(
    api: httpx.Client, body: dict[str, str]
) -> None:
    answer = api.post("/api/images/check", json=body)
    assert answer.status_code == 200
    parts = (
        body["urn"].split(":") if "urn" in body else [body["publisher"], body["offer"], body["sku"]]
    )
    image = ImageRef(publisher=parts[0], offer=parts[1], sku=parts[2])
    rules = world().rules
    verdict = image_eligibility(image, rules.images, rules.policy)
    checked = answer.json()
    assert checked["eligible"] is verdict.eligible
    assert checked["os"] == (verdict.os.value if verdict.os else None)
    assert [r["code"] for r in checked["reasons"]] == [r.code for r in verdict.reasons]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "(body)"),
        ({}, "publisher"),
        ({"urn": "a:b"}, "urn"),
        ({"urn": "a:b:c", "sku": "d"}, "urn"),
        ({"publisher": "p", "offer": "o", "sku": ""}, "sku"),
        ({"publisher": "p", "offer": "o", "sku": 3}, "sku"),
        ({"publisher": "p", "offer": "o", "sku": "s", "size": "big"}, "size"),
    ],
)
def test_a_bad_image_body_is_a_400_naming_the_field(
    api: httpx.Client, body: object, field: str
) -> None:
    problem = problem_of(api.post("/api/images/check", json=body), 400)
    assert problem["invalid-params"][0]["name"] == field


def test_a_body_that_is_not_json_is_400_and_one_not_sent_as_json_is_415(
    api: httpx.Client,
) -> None:
    broken = api.post(
        "/api/images/check", content=b"{nope", headers={"content-type": "application/json"}
    )
    problem_of(broken, 400)
    plain = api.post("/api/images/check", content=b"{}", headers={"content-type": "text/plain"})
    problem_of(plain, 415)


def test_a_body_larger_than_256_kib_is_413_whether_declared_or_streamed(
    api: httpx.Client,
) -> None:
    big = b'{"urn": "' + b"x" * 300_000 + b'"}'
    declared = api.post(
        "/api/images/check", content=big, headers={"content-type": "application/json"}
    )
    problem_of(declared, 413)
    streamed = api.post(
        "/api/images/check",
        content=iter([big[:100_000], big[100_000:]]),
        headers={"content-type": "application/json"},
    )
    problem_of(streamed, 413)


# -- runs ---------------------------------------------------------------------------------------


def test_runs_are_listed_newest_first_and_by_kind(api: httpx.Client) -> None:
    every = api.get("/api/runs").json()["value"]
    assert [run["id"] for run in every] == [
        "20260520T120000Z-remediate",
        "20260520T120000Z-sweep",
        "20260519T120000Z-sweep",
    ]
    sweeps = api.get("/api/runs", params={"kind": "sweep", "limit": 1}).json()["value"]
    assert [run["id"] for run in sweeps] == ["20260520T120000Z-sweep"]


def test_a_run_by_its_id_is_its_record(api: httpx.Client) -> None:
    run = api.get("/api/runs/20260520T120000Z-remediate").json()
    assert run["kind"] == "remediation"
    assert run["outcome"] == "succeeded"
    assert run["figures"] == {"machines": 9_999}


def test_a_run_the_store_does_not_hold_is_404_and_a_malformed_id_400(api: httpx.Client) -> None:
    problem_of(api.get("/api/runs/20200101T000000Z-none"), 404)
    problem = problem_of(api.get("/api/runs/-bad"), 400)
    assert problem["invalid-params"][0]["name"] == "id"
    problem_of(api.get("/api/runs", params={"kind": "nap"}), 400)
    problem_of(api.get("/api/runs", params={"limit": "0"}), 400)


# -- the plan -----------------------------------------------------------------------------------


def test_without_a_policy_the_plan_is_report_mode_and_starts_nothing(api: httpx.Client) -> None:
    decided = api.get("/api/plan").json()
    assert decided["mode"] == "report"
    assert decided["operations"] == []
    assert decided["skipped"] == {"mode_report": 9_999}
    assert "skips" not in decided
    assert len(api.get("/api/plan", params={"skips": "true"}).json()["skips"]) == 9_999


def test_the_plan_is_the_planners_under_the_policy_file_over_the_latest_snapshot(
    fleet_store: tuple[MemoryStore, list[VerdictRow]],
) -> None:
    store, rows = fleet_store
    configured = world(remediation_policy=EXAMPLE_POLICY)
    with serve(store, configured, api_key=KEY) as url:
        answer = httpx.get(
            f"{url}/api/plan", params={"skips": "true"}, headers={"x-functions-key": KEY}
        )
    assert answer.status_code == 200
    document = answer.json()
    expected = plan_json(
        plan(rows, load_policy(EXAMPLE_POLICY), rollout_state(store), configured.rules.calendar, T0)
    )
    assert document.pop("snapshot")["run_id"] == "20260520T120000Z-sweep"
    assert document == expected
    assert document["mode"] == "remediate"
    assert document["operations"], "the fleet has machines the policy acts on"
    assert store.runs(limit=10)[0].id == "20260520T120000Z-remediate", "nothing was recorded"


def test_a_policy_file_that_cannot_be_read_is_a_503_naming_the_setting(tmp_path: Any) -> None:
    store = MemoryStore()
    broken = tmp_path / "policy.yaml"
    broken.write_text("mode: sometimes\n")
    with serve(store, world(remediation_policy=broken), api_key=KEY) as url:
        answer = httpx.get(f"{url}/api/plan", headers={"x-functions-key": KEY})
    problem = problem_of(answer, 503)
    assert "HOTPATCH_REMEDIATION_POLICY" in problem["detail"]


# -- assessments --------------------------------------------------------------------------------


def test_an_assessment_request_is_handed_to_the_starter_and_accepted_with_202(
    api: httpx.Client, starter: RecordingStarter
) -> None:
    answer = api.post(
        "/api/assessments",
        json={
            "subscriptions": [SUBSCRIPTIONS[0].upper()],
            "machines": [machine_id(5), machine_id(5).lower()],
        },
    )
    assert answer.status_code == 202
    accepted = answer.json()
    assert accepted["status"] == "accepted"
    assert accepted["id"] == f"assessment-{len(starter.asked)}"
    asked = starter.asked[-1]
    assert asked.subscriptions == (SUBSCRIPTIONS[0],)
    assert [m.id for m in asked.machines] == [machine_id(5)]
    assert accepted["machines"] == [machine_id(5)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "(body)"),
        ({"subscriptions": [], "machines": []}, "(body)"),
        ({"subscriptions": ["nope"]}, "subscriptions[0]"),
        (
            {
                "machines": [
                    "/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z"
                ]
            },
            "machines[0]",
        ),
        ({"machines": "vm-1"}, "machines"),
        ({"everything": True}, "everything"),
    ],
)
def test_a_bad_assessment_request_is_a_400_naming_the_field(
    api: httpx.Client, body: object, field: str
) -> None:
    problem = problem_of(api.post("/api/assessments", json=body), 400)
    assert problem["invalid-params"][0]["name"] == field


def test_without_an_assessment_starter_assessments_are_a_503() -> None:
    with serve(MemoryStore(), api_key=KEY) as url:
        answer = httpx.post(
            f"{url}/api/assessments",
            json={"subscriptions": [SUBSCRIPTIONS[0]]},
            headers={"x-functions-key": KEY},
        )
    problem_of(answer, 503)


# -- health, routes and failures ----------------------------------------------------------------


class CountingStore(MemoryStore):
    """A store that counts the snapshot reads it serves."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def latest_snapshot(self):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().latest_snapshot()


def test_health_reads_nothing_from_the_store_and_names_the_snapshot_once_served() -> None:
    store = CountingStore()
    store_snapshot(store, "run-health", fleet(10))
    store.reads = 0
    with serve(store, api_key=KEY) as url:
        first = httpx.get(f"{url}/api/health").json()
        assert store.reads == 0
        httpx.get(f"{url}/api/compliance/summary", headers={"x-functions-key": KEY})
        reads = store.reads
        after = httpx.get(f"{url}/api/health").json()
        assert store.reads == reads
    assert first == {"status": "ok", "version": first["version"], "snapshot": None}
    assert after["snapshot"]["run_id"] == "run-health"


def test_an_unknown_path_is_a_404_problem_and_a_wrong_method_a_405_with_allow(
    api: httpx.Client,
) -> None:
    problem_of(api.get("/api/nowhere"), 404)
    wrong = api.delete("/api/runs")
    problem_of(wrong, 405)
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}
    problem_of(api.get("/api/assessments"), 405)


class FailingStore(MemoryStore):
    def runs(self, kind=None, limit=50):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internals at /srv/hotpatch/store.db")

    def latest_snapshot(self):  # type: ignore[no-untyped-def]
        raise StoreError("the disk is gone")


def test_an_unexpected_error_is_a_500_problem_that_says_nothing_of_the_internals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serve(FailingStore(), api_key=KEY) as url:
        answer = httpx.get(f"{url}/api/runs", headers={"x-functions-key": KEY})
    problem = problem_of(answer, 500)
    assert "secret" not in answer.text
    assert "Traceback" not in answer.text
    assert problem["type"] == "urn:hotpatch:problem:internal"
    assert any(
        "secret internals" in record.exc_text for record in caplog.records if record.exc_text
    )


def test_a_store_that_cannot_be_read_is_a_503(caplog: pytest.LogCaptureFixture) -> None:
    with serve(FailingStore(), api_key=KEY) as url:
        answer = httpx.get(f"{url}/api/compliance", headers={"x-functions-key": KEY})
    problem = problem_of(answer, 503)
    assert "the disk is gone" in problem["detail"]


def test_creating_the_app_reads_nothing_from_the_store() -> None:
    store = CountingStore()
    create_app(store, world())
    assert store.reads == 0


def test_the_app_answers_through_the_functions_asgi_middleware(
    fleet_store: tuple[MemoryStore, list[VerdictRow]],
) -> None:
    import asyncio

    import azure.functions as func

    app = create_app(fleet_store[0], world())
    middleware = func.AsgiMiddleware(app)
    request = func.HttpRequest(
        "GET",
        "https://hotpatch.azurewebsites.net/api/compliance?state=pending&top=2",
        headers={},
        body=b"",
    )
    response = asyncio.run(middleware.handle_async(request))
    assert response.status_code == 200
    page = __import__("json").loads(response.get_body())
    assert [row["state"] for row in page["value"]] == ["pending", "pending"]
    assert page["nextLink"].startswith("https://hotpatch.azurewebsites.net/api/compliance?")


def test_a_server_in_a_thread_stops_when_its_block_ends() -> None:
    app = create_app(MemoryStore(), world())
    with serving_in_thread(app) as url:
        assert httpx.get(f"{url}/api/health").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/health")
