"""Both authorization modes over a real server: API keys, and App Service app roles."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from hotpatch.api.access import principal_roles
from hotpatch.store.memory import MemoryStore
from tests.api.conftest import KEY, RecordingStarter, principal, serve, world
from tests.api.estate import SUBSCRIPTIONS, fleet, store_snapshot

READ = "Hotpatch.Read"
OPERATE = "Hotpatch.Operate"
CHECK = {"urn": "MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition-hotpatch"}


@pytest.fixture(scope="module")
def store() -> MemoryStore:
    store = MemoryStore()
    store_snapshot(store, "run-access", fleet(20))
    return store


@pytest.fixture(scope="module")
def keyed(store: MemoryStore) -> Iterator[str]:
    """`hotpatch serve`: an API key, no app roles."""
    with serve(store, api_key=KEY) as url:
        yield url


@pytest.fixture(scope="module")
def roles(store: MemoryStore) -> Iterator[str]:
    """The Function App with HOTPATCH_REQUIRE_ROLES: the host checked the key, the app the role."""
    with serve(store, world(require_roles=True), start_assessment=RecordingStarter()) as url:
        yield url


def problem(answer: httpx.Response, status: int) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    document: dict[str, object] = answer.json()
    assert document["status"] == status
    return document


# -- API keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/compliance", "/api/compliance/summary", "/api/runs", "/api/plan", "/api/nowhere"]
)
def test_without_the_api_key_every_path_but_health_is_401(keyed: str, path: str) -> None:
    answer = httpx.get(keyed + path)
    document = problem(answer, 401)
    assert "x-functions-key" in str(document["detail"])
    assert answer.headers["www-authenticate"].startswith("ApiKey")


def test_a_wrong_api_key_is_401(keyed: str) -> None:
    answer = httpx.get(keyed + "/api/compliance", headers={"x-functions-key": KEY + "x"})
    assert "not this server's" in str(problem(answer, 401)["detail"])
    post = httpx.post(keyed + "/api/images/check", json=CHECK, params={"code": "nope"})
    problem(post, 401)


def test_the_api_key_is_taken_from_the_header_or_the_code_parameter(keyed: str) -> None:
    assert httpx.get(keyed + "/api/runs", headers={"x-functions-key": KEY}).status_code == 200
    assert httpx.get(keyed + "/api/runs", params={"code": KEY}).status_code == 200
    checked = httpx.post(keyed + "/api/images/check", json=CHECK, params={"code": KEY})
    assert checked.status_code == 200


@pytest.mark.parametrize("path", ["/api/health", "/api/openapi.json"])
def test_health_and_the_openapi_document_are_open(keyed: str, path: str) -> None:
    assert httpx.get(keyed + path).status_code == 200


# -- app roles ----------------------------------------------------------------------------------


def test_with_roles_required_a_request_without_a_principal_is_401(roles: str) -> None:
    answer = httpx.get(roles + "/api/compliance")
    assert "X-MS-CLIENT-PRINCIPAL" in str(problem(answer, 401)["detail"])
    assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [
        "not base64 at all",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(b'{"claims": "roles"}').decode(),
        base64.b64encode(b'{"claims": ["roles"]}').decode(),
    ],
)
def test_a_principal_that_cannot_be_read_is_401(roles: str, header: str) -> None:
    answer = httpx.get(roles + "/api/compliance", headers={"x-ms-client-principal": header})
    assert "cannot be read" in str(problem(answer, 401)["detail"])


def test_a_reader_may_read_but_not_start_assessments(roles: str) -> None:
    reader = {"x-ms-client-principal": principal(READ)}
    assert httpx.get(roles + "/api/compliance", headers=reader).status_code == 200
    assert httpx.get(roles + "/api/compliance/summary", headers=reader).status_code == 200
    answer = httpx.post(
        roles + "/api/assessments", json={"subscriptions": [SUBSCRIPTIONS[0]]}, headers=reader
    )
    document = problem(answer, 403)
    assert document["required_role"] == OPERATE
    assert READ in str(document["detail"])


def test_an_operator_may_start_assessments_but_reads_need_the_read_role(roles: str) -> None:
    operator = {"x-ms-client-principal": principal(OPERATE)}
    answer = httpx.post(
        roles + "/api/assessments", json={"subscriptions": [SUBSCRIPTIONS[0]]}, headers=operator
    )
    assert answer.status_code == 202
    assert problem(httpx.get(roles + "/api/runs", headers=operator), 403)["required_role"] == READ


def test_a_reader_may_check_an_image_which_changes_nothing(roles: str) -> None:
    reader = {"x-ms-client-principal": principal(READ)}
    assert httpx.post(roles + "/api/images/check", json=CHECK, headers=reader).status_code == 200
    operator = {"x-ms-client-principal": principal(OPERATE)}
    answer = httpx.post(roles + "/api/images/check", json=CHECK, headers=operator)
    assert problem(answer, 403)["required_role"] == READ


def test_a_principal_with_no_app_role_is_403_for_reads_and_writes(roles: str) -> None:
    nobody = {"x-ms-client-principal": principal()}
    problem(httpx.get(roles + "/api/compliance", headers=nobody), 403)
    problem(httpx.post(roles + "/api/images/check", json=CHECK, headers=nobody), 403)


def test_roles_under_the_principals_own_role_claim_type_count(roles: str) -> None:
    header = principal(
        READ, role_claim="http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    )
    answer = httpx.get(roles + "/api/compliance", headers={"x-ms-client-principal": header})
    assert answer.status_code == 200


def test_with_roles_required_health_is_still_open(roles: str) -> None:
    assert httpx.get(roles + "/api/health").status_code == 200


def test_roles_and_an_api_key_together_need_both(store: MemoryStore) -> None:
    reader = {"x-ms-client-principal": principal(READ)}
    with serve(store, world(require_roles=True), api_key=KEY) as url:
        problem(httpx.get(url + "/api/runs", headers=reader), 401)
        problem(httpx.get(url + "/api/runs", headers={"x-functions-key": KEY}), 401)
        both = httpx.get(url + "/api/runs", headers={**reader, "x-functions-key": KEY})
        assert both.status_code == 200


def test_the_roles_of_a_principal_are_the_values_of_its_role_claims() -> None:
    assert principal_roles(principal(READ, OPERATE)) == {READ, OPERATE}
    assert principal_roles(principal()) == frozenset()
    with pytest.raises(ValueError, match="larger"):
        principal_roles("A" * 70_000)
