"""GET /api/compliance over a real server: filters, paging by continuation token, CSV, errors."""

from __future__ import annotations

import csv
import http.client
import io
import json
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from hotpatch.api import create_app
from hotpatch.api.server import serving_in_thread
from hotpatch.core.models import OsFamily, State
from hotpatch.ports.store import VerdictRow
from hotpatch.store.memory import MemoryStore
from tests.api.conftest import KEY, MACHINES, every_page, fill, serve, world
from tests.api.estate import SUBSCRIPTIONS, fleet, machine, store_snapshot


def ids(found: list[dict[str, object]]) -> list[str]:
    return [str(item["id"]) for item in found]


def test_paging_through_10000_machines_by_continuation_token_lists_each_once_in_order(
    api: httpx.Client, rows: list[VerdictRow]
) -> None:
    assert len(rows) == MACHINES - 1  # machine 7 left the fleet before the latest sweep
    listed = every_page(api, {"top": 1000})
    assert ids(listed) == [row.id for row in rows]


@pytest.mark.parametrize("size", [1, 7, 100, 999])
def test_any_page_size_lists_the_same_machines(
    api: httpx.Client, rows: list[VerdictRow], size: int
) -> None:
    wanted = [row.id for row in rows if row.state is State.NON_COMPLIANT]
    assert ids(every_page(api, {"state": "non_compliant", "top": size})) == wanted


def test_a_page_is_100_machines_unless_top_says_otherwise(api: httpx.Client) -> None:
    page = api.get("/api/compliance").json()
    assert len(page["value"]) == 100
    assert page["snapshot"] == {
        "run_id": "20260520T120000Z-sweep",
        "taken_at": "2026-05-20T12:00:00Z",
    }


FILTERS: list[tuple[str, list[tuple[str, str]], Callable[[VerdictRow], bool]]] = [
    (
        "subscription",
        [("subscription", SUBSCRIPTIONS[1])],
        lambda r: r.subscription == SUBSCRIPTIONS[1],
    ),
    (
        "subscription, upper case",
        [("subscription", SUBSCRIPTIONS[1].upper())],
        lambda r: r.subscription == SUBSCRIPTIONS[1],
    ),
    (
        "two subscriptions",
        [("subscription", SUBSCRIPTIONS[0]), ("subscription", SUBSCRIPTIONS[2])],
        lambda r: r.subscription in (SUBSCRIPTIONS[0], SUBSCRIPTIONS[2]),
    ),
    (
        "resource group, any case",
        [("resourceGroup", "rg-data")],
        lambda r: r.resource_group == "RG-Data",
    ),
    ("state", [("state", "pending")], lambda r: r.state is State.PENDING),
    (
        "two states",
        [("state", "unknown"), ("state", "reboot_pending")],
        lambda r: r.state in (State.UNKNOWN, State.REBOOT_PENDING),
    ),
    ("os", [("os", "ws2025")], lambda r: r.os is OsFamily.WS2025),
    ("ring", [("ring", "ring1")], lambda r: r.ring == "ring1"),
    ("tag", [("tag", "env=prod")], lambda r: r.tags.get("env") == "prod"),
    (
        "two tags, both must match",
        [("tag", "env=test"), ("tag", "owner=team-a")],
        lambda r: r.tags.get("env") == "test" and r.tags.get("owner") == "team-a",
    ),
    ("eligible", [("eligible", "false")], lambda r: not r.eligible),
    (
        "reason",
        [("reason", "build_behind")],
        lambda r: "build_behind" in {x.code for x in r.reasons},
    ),
    (
        "two reasons",
        [("reason", "custom_image"), ("reason", "deallocated")],
        lambda r: bool({"custom_image", "deallocated"} & {x.code for x in r.reasons}),
    ),
    (
        "every filter at once",
        [
            ("subscription", SUBSCRIPTIONS[1]),
            ("resourceGroup", "RG-WEB"),
            ("state", "non_compliant"),
            ("os", "ws2025"),
            ("ring", "ring1"),
            ("tag", "env=prod"),
            ("eligible", "true"),
            ("reason", "missing_security_updates"),
        ],
        lambda r: (
            r.subscription == SUBSCRIPTIONS[1]
            and r.resource_group == "rg-web"
            and r.state is State.NON_COMPLIANT
            and r.os is OsFamily.WS2025
            and r.ring == "ring1"
            and r.tags.get("env") == "prod"
            and r.eligible
            and "missing_security_updates" in {x.code for x in r.reasons}
        ),
    ),
]


@pytest.mark.parametrize(("name", "params", "wanted"), FILTERS, ids=[f[0] for f in FILTERS])
def test_each_filter_lists_exactly_the_machines_that_match_it(
    api: httpx.Client,
    rows: list[VerdictRow],
    name: str,
    params: list[tuple[str, str]],
    wanted: Callable[[VerdictRow], bool],
) -> None:
    expected = [row.id for row in rows if wanted(row)]
    assert expected, f"the fleet has machines for {name}"
    assert ids(every_page(api, [*params, ("top", "500")])) == expected


def test_a_filter_that_matches_nothing_is_one_empty_last_page(api: httpx.Client) -> None:
    page = api.get("/api/compliance", params={"tag": "env=nowhere"}).json()
    assert page["value"] == []
    assert page["continuationToken"] is None
    assert page["nextLink"] is None


def test_the_next_link_repeats_the_filters_with_the_new_token_and_never_the_key(
    api_url: str,
) -> None:
    answer = httpx.get(
        f"{api_url}/api/compliance",
        params=[("tag", "env=prod"), ("state", "compliant"), ("top", "5"), ("code", KEY)],
    )
    page = answer.json()
    link = urlsplit(page["nextLink"])
    assert link.path == "/api/compliance"
    assert parse_qsl(link.query) == [
        ("tag", "env=prod"),
        ("state", "compliant"),
        ("top", "5"),
        ("continuationToken", page["continuationToken"]),
    ]
    following = httpx.get(page["nextLink"], headers={"x-functions-key": KEY}).json()
    assert following["value"][0]["id"] not in ids(page["value"])


def test_the_next_link_quotes_what_was_sent_unquoted_and_drops_a_key_however_written(
    api_url: str,
) -> None:
    # http.client sends the query as written: a raw '"' and the key's name percent-encoded.
    address = urlsplit(api_url)
    connection = http.client.HTTPConnection(str(address.hostname), address.port, timeout=60)
    try:
        connection.request("GET", f'/api/compliance?ring=ring0&ring=a"b&top=1&%63ode={KEY}')
        page = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    link = page["nextLink"]
    assert '"' not in link
    assert KEY not in link
    assert parse_qsl(urlsplit(link).query) == [
        ("ring", "ring0"),
        ("ring", 'a"b'),
        ("top", "1"),
        ("continuationToken", page["continuationToken"]),
    ]


def test_a_token_from_an_older_snapshot_is_410_saying_start_again() -> None:
    store = MemoryStore()
    store_snapshot(store, "run-a", fleet(300))
    with (
        serve(store, api_key=KEY) as url,
        httpx.Client(base_url=url, headers={"x-functions-key": KEY}) as client,
    ):
        token = client.get("/api/compliance", params={"top": 100}).json()["continuationToken"]
        store_snapshot(store, "run-b", fleet(300))
        answer = client.get("/api/compliance", params={"top": 100, "continuationToken": token})
        assert answer.status_code == 410
        assert answer.headers["content-type"] == "application/problem+json"
        problem = answer.json()
        assert "start again from the first page" in problem["detail"]
        assert problem["invalid-params"][0]["name"] == "continuationToken"
        fresh = client.get("/api/compliance", params={"top": 100}).json()
        assert fresh["snapshot"]["run_id"] == "run-b"


def test_a_token_given_with_other_filters_is_400(api: httpx.Client) -> None:
    token = api.get("/api/compliance", params={"state": "pending", "top": 3}).json()[
        "continuationToken"
    ]
    answer = api.get(
        "/api/compliance", params={"state": "compliant", "top": 3, "continuationToken": token}
    )
    assert answer.status_code == 400
    assert "other filters" in answer.json()["detail"]


def test_the_same_filters_in_another_order_or_case_continue_the_same_listing(
    api: httpx.Client,
) -> None:
    first = api.get(
        "/api/compliance",
        params=[
            ("state", "pending"),
            ("state", "unknown"),
            ("subscription", SUBSCRIPTIONS[0]),
            ("top", "2"),
        ],
    ).json()
    following = api.get(
        "/api/compliance",
        params=[
            ("subscription", SUBSCRIPTIONS[0].upper()),
            ("state", "unknown"),
            ("state", "pending"),
            ("top", "2"),
            ("continuationToken", first["continuationToken"]),
        ],
    )
    assert following.status_code == 200


@pytest.mark.parametrize(
    "token", ["", "garbage", "eyJzIjoxfQ", "e30", "!!!", "eyJzIjoicnVuIiwiciI6LTEsImYiOiJ4In0"]
)
def test_a_token_this_api_did_not_give_is_400(api: httpx.Client, token: str) -> None:
    answer = api.get("/api/compliance", params={"continuationToken": token})
    assert answer.status_code in (400, 410)
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["invalid-params"][0]["name"] == "continuationToken"


BAD = [
    ({"state": "bogus"}, "state", "not one of"),
    ({"subscription": "not-a-guid"}, "subscription", "not a subscription id"),
    ({"top": "0"}, "top", "from 1 to 1000"),
    ({"top": "1001"}, "top", "from 1 to 1000"),
    ({"top": "ten"}, "top", "not a whole number"),
    ({"eligible": "yes"}, "eligible", "neither true nor false"),
    ({"os": "ws2019"}, "os", "not one of"),
    ({"reason": "bad_luck"}, "reason", "not one of"),
    ({"tag": "env"}, "tag", "not key=value"),
    ({"resourceGroup": "rg/x"}, "resourceGroup", "not a resource group name"),
    ({"format": "xml"}, "format", "not one of"),
    ({"states": "pending"}, "states", "not a parameter of this endpoint"),
    ([("top", "5"), ("top", "6")], "top", "more than once"),
]


@pytest.mark.parametrize(("params", "name", "words"), BAD)
def test_a_bad_filter_is_a_400_problem_naming_the_parameter_and_why(
    api: httpx.Client, params: object, name: str, words: str
) -> None:
    answer = api.get("/api/compliance", params=params)  # type: ignore[arg-type]
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == "urn:hotpatch:problem:bad-parameter"
    assert problem["status"] == 400
    assert problem["title"]
    assert problem["instance"] == "/api/compliance"
    (invalid,) = problem["invalid-params"]
    assert invalid["name"] == name
    assert words in invalid["reason"]


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_lists_the_same_machines_as_json_with_the_next_token_in_headers(
    api: httpx.Client,
) -> None:
    params = {"tag": "env=prod", "top": 50}
    as_json = api.get("/api/compliance", params=params).json()
    answer = api.get("/api/compliance", params={**params, "format": "csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    table = read_csv(answer.text)
    assert [row["id"] for row in table] == ids(as_json["value"])
    token = answer.headers["x-continuation-token"]
    assert answer.headers["link"].endswith('>; rel="next"')
    following = api.get(
        "/api/compliance", params={**params, "format": "csv", "continuationToken": token}
    )
    second = read_csv(following.text)
    assert second[0]["id"] not in {row["id"] for row in table}


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_neutralised() -> None:
    store = MemoryStore()
    hostile = [
        _renamed(machine(1), name='=HYPERLINK("http://x")', tags={"note": "+cmd|' /C calc'!A0"}),
        _renamed(machine(2), name="@SUM(A1)", tags={"-owner": "x"}),
    ]
    store_snapshot(store, "run-csv", hostile)
    with serve(store, api_key=KEY) as url:
        answer = httpx.get(
            f"{url}/api/compliance", params={"format": "csv"}, headers={"x-functions-key": KEY}
        )
    table = read_csv(answer.text)
    assert [row["name"] for row in table] == ['\'=HYPERLINK("http://x")', "'@SUM(A1)"]
    assert table[0]["tags"] == "note=+cmd|' /C calc'!A0"  # starts with a letter: a text
    assert table[1]["tags"] == "'-owner=x"
    assert not any(cell and cell[0] in "=+-@" for row in table for cell in row.values())


def _renamed(row: VerdictRow, *, name: str, tags: dict[str, str]) -> VerdictRow:
    from dataclasses import replace

    return replace(row, name=name, tags=tags)


def test_before_any_sweep_is_stored_a_page_is_empty_and_names_no_snapshot() -> None:
    with serve(MemoryStore(), api_key=KEY) as url:
        answer = httpx.get(f"{url}/api/compliance", headers={"x-functions-key": KEY})
    assert answer.json() == {
        "snapshot": None,
        "value": [],
        "continuationToken": None,
        "nextLink": None,
    }


def test_a_newer_sweep_is_served_once_the_pointer_moves() -> None:
    store = MemoryStore()
    fill(store, 50)
    with (
        serve(store, api_key=KEY) as url,
        httpx.Client(base_url=url, headers={"x-functions-key": KEY}) as client,
    ):
        before = client.get("/api/compliance", params={"top": 1000}).json()
        store_snapshot(store, "20260521T120000Z-sweep", fleet(20))
        after = client.get("/api/compliance", params={"top": 1000}).json()
    assert before["snapshot"]["run_id"] == "20260520T120000Z-sweep"
    assert len(before["value"]) == 49
    assert after["snapshot"]["run_id"] == "20260521T120000Z-sweep"
    assert len(after["value"]) == 20


def test_a_token_from_a_sweep_another_instance_already_serves_is_followed() -> None:
    store = MemoryStore()
    store_snapshot(store, "run-a", fleet(300))
    lagging = create_app(store, world(), api_key=KEY, refresh_seconds=3600)
    headers = {"x-functions-key": KEY}
    with serving_in_thread(lagging) as behind:
        assert (
            httpx.get(f"{behind}/api/compliance", headers=headers).json()["snapshot"]["run_id"]
            == "run-a"
        )
        store_snapshot(store, "run-b", fleet(300))
        with serve(store, api_key=KEY) as ahead:
            token = httpx.get(
                f"{ahead}/api/compliance", params={"top": 100}, headers=headers
            ).json()["continuationToken"]
        answer = httpx.get(
            f"{behind}/api/compliance",
            params={"top": 100, "continuationToken": token},
            headers=headers,
        )
    assert answer.status_code == 200
    assert answer.json()["snapshot"]["run_id"] == "run-b"
    assert answer.json()["value"][0]["name"] == "vm-00100"
