"""The sandbox is locked down: queries read only the estate, under limits; connections are bounded.

Memory figures are bounds on the server's (this process's) resident memory while a query runs;
no test asserts on wall-clock time, only on outcomes and their order.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from hotpatch.sandbox.arm import Quota, WindowQuota
from hotpatch.sandbox.query_limits import QueryLimits, StopReason, resident_bytes
from hotpatch.sandbox.server import Sandbox
from tests.integration.conftest import SUB_A, SUB_B, ManualClock, numbered_vms

pytestmark = pytest.mark.sandbox

Start = Callable[..., Sandbox]
BEARER = {"Authorization": "Bearer t"}
GRAPH = "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01"
MiB = 1024 * 1024
#: The stated bound: a runaway query may grow the server by at most this much.
MEMORY_BOUND = 1536 * MiB
BILLION_ROWS = "range x from 1 to 1000000000 step 1"
#: A query that runs far past any time limit here, in constant memory.
ENDLESS = "range x from 1 to 1000000000000 step 1 | summarize total = sum(x * x % 7)"


def post(sandbox: Sandbox, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    return requests.post(
        f"{sandbox.base_url}{path}",
        headers={**BEARER, **kwargs.pop("headers", {})},
        verify=str(sandbox.ca_path),
        timeout=kwargs.pop("timeout", 120),
        **({"json": body} if body is not None else {}),
        **kwargs,
    )


def query(sandbox: Sandbox, kql: str, **kwargs: Any) -> requests.Response:
    return post(sandbox, GRAPH, {"query": kql}, **kwargs)


def last_detail(answer: requests.Response) -> dict[str, Any]:
    detail: dict[str, Any] = answer.json()["error"]["details"][-1]
    return detail


# -- a query reads only the estate ------------------------------------------------------------

OUTSIDE_THE_ESTATE = {
    "a file that exists": "['/etc/passwd']",
    "a file that does not": "['/no/such/file']",
    "a CSV file that exists": f"['{Path(__file__).resolve().parent / 'conftest.py'}']",
    "a CSV file that does not": "['/no/such/file.csv']",
    "a glob": "['/etc/*']",
    "a URL": "['https://example.com/rows.csv']",
    "a Python name in the server": "['_log']",
    "a Python name in this test": "['BEARER']",
    "sqlite_master": "sqlite_master",
    "information_schema": "['information_schema.tables']",
    "another schema": "['main.resources']",
    "another database": "['system.main.resources']",
    "a catalog function": "['duckdb_tables()']",
    "a settings view": "['duckdb_settings']",
    "a Postgres catalog view": "['pg_settings']",
    "another cluster": "cluster('x').database('y').resources",
}


@pytest.fixture
def estate_sandbox(start_sandbox: Start) -> Sandbox:
    return start_sandbox(numbered_vms(4), graph_quota=None)


@pytest.mark.parametrize("kql", OUTSIDE_THE_ESTATE.values(), ids=OUTSIDE_THE_ESTATE.keys())
def test_a_query_outside_the_estate_gets_a_400_that_reveals_nothing(
    estate_sandbox: Sandbox, tmp_path: Path, kql: str
) -> None:
    answer = query(estate_sandbox, kql)
    assert answer.status_code == 400
    text = answer.text
    for secret in (
        str(tmp_path),
        "hotpatch-sandbox-",
        "store_",
        "/etc",
        "/no/such",
        "example.com",
        "Permission",
        "No files",
        "Did you mean",
    ):
        assert secret not in text


def test_files_that_exist_and_files_that_do_not_get_the_same_answer(
    estate_sandbox: Sandbox,
) -> None:
    cases = [v for k, v in OUTSIDE_THE_ESTATE.items() if "file" in k or k == "a glob"]
    messages = {last_detail(query(estate_sandbox, kql))["message"] for kql in cases}
    assert len(messages) == 1


def test_duckdb_runs_with_external_access_extensions_and_replacements_off_and_locked(
    estate_sandbox: Sandbox,
) -> None:
    # A trusted cursor of the store, the way the server's own code reads its settings.
    cursor = estate_sandbox.store._cursor()
    settings = dict(
        cursor.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
            "'autoinstall_known_extensions', 'autoload_known_extensions', 'lock_configuration', "
            "'python_enable_replacements', 'python_scan_all_frames')"
        ).fetchall()
    )
    assert settings == {
        "enable_external_access": "false",
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "lock_configuration": "true",
        "python_enable_replacements": "false",
        "python_scan_all_frames": "false",
    }
    with pytest.raises(Exception, match="configuration"):
        cursor.execute("SET enable_external_access = true")


def test_the_estate_tables_still_answer(estate_sandbox: Sandbox) -> None:
    answer = query(estate_sandbox, "Resources | summarize machines = count()")
    assert answer.json()["data"] == [{"machines": 4}]


def test_non_finite_numbers_come_back_as_null_in_strict_json(estate_sandbox: Sandbox) -> None:
    answer = query(estate_sandbox, "print nan = 0.0 / 0.0, inf = 1.0 / 0.0, one = 1.0")

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    body = json.loads(answer.text, parse_constant=refuse)
    assert body["data"] == [{"nan": None, "inf": None, "one": 1.0}]


def test_text_that_spells_nan_or_infinity_stays_text(estate_sandbox: Sandbox) -> None:
    answer = query(estate_sandbox, "print word = 'NaN', words = 'to Infinity', nan = 0.0 / 0.0")

    assert answer.json()["data"] == [{"word": "NaN", "words": "to Infinity", "nan": None}]


# -- every query has limits -------------------------------------------------------------------


@contextmanager
def peak_growth() -> Iterator[list[int]]:
    """Samples this process's resident memory; yields [growth] filled in on exit."""
    baseline = resident_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], resident_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    growth = [0]
    try:
        yield growth
    finally:
        done.set()
        sampler.join()
        growth[0] = peak[0] - baseline


def test_a_billion_row_range_ends_at_the_row_cap_with_memory_bounded(start_sandbox: Start) -> None:
    limits = QueryLimits(seconds=60, max_rows=100_000, memory_bytes=512 * MiB)
    sandbox = start_sandbox(numbered_vms(2), graph_quota=None, query_limits=limits)
    with peak_growth() as growth:
        answer = query(sandbox, BILLION_ROWS)
    assert answer.status_code == 400
    assert last_detail(answer)["code"] == "SandboxQueryLimit"
    assert "100,000 rows" in last_detail(answer)["message"]
    assert growth[0] < MEMORY_BOUND


def test_a_billion_row_aggregate_ends_at_the_time_limit(start_sandbox: Start) -> None:
    limits = QueryLimits(seconds=1, memory_bytes=512 * MiB)
    sandbox = start_sandbox(numbered_vms(2), graph_quota=None, query_limits=limits)
    with peak_growth() as growth:
        answer = query(sandbox, ENDLESS)
    assert answer.status_code == 400
    assert "longer than the 1 s" in last_detail(answer)["message"]
    assert sandbox.store.stopped == {StopReason.TIME: 1}
    assert growth[0] < MEMORY_BOUND


def test_a_query_that_grows_without_bound_is_stopped_by_the_memory_bound(
    start_sandbox: Start,
) -> None:
    limits = QueryLimits(seconds=120, memory_bytes=256 * MiB)
    sandbox = start_sandbox(numbered_vms(2), graph_quota=None, query_limits=limits)
    with peak_growth() as growth:
        answer = query(sandbox, f"{BILLION_ROWS} | summarize all = make_list(x)")
    assert answer.status_code == 400
    assert "more memory" in last_detail(answer)["message"]
    assert growth[0] < MEMORY_BOUND


def test_a_huge_string_is_refused_before_it_is_built(estate_sandbox: Sandbox) -> None:
    answer = query(estate_sandbox, "print s = strrep('abc', 1000000000)")
    assert answer.status_code == 400


def run_in_thread(work: Callable[[], Any], finished: list[str], name: str) -> threading.Thread:
    def run() -> None:
        work()
        finished.append(name)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until(condition: Callable[[], bool], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_light_query_answers_while_heavy_ones_run(start_sandbox: Start) -> None:
    limits = QueryLimits(seconds=30, memory_bytes=512 * MiB, threads=1)
    sandbox = start_sandbox(numbered_vms(4), graph_quota=None, query_limits=limits, query_workers=3)
    heavy = ENDLESS
    finished: list[str] = []
    answers: dict[str, int] = {}

    def ask(name: str, kql: str) -> Callable[[], None]:
        return lambda: answers.__setitem__(name, query(sandbox, kql).status_code)

    heavies = [run_in_thread(ask(f"heavy-{i}", heavy), finished, f"heavy-{i}") for i in range(2)]
    assert wait_until(lambda: sandbox.store.running_queries == 2)
    light = run_in_thread(ask("light", "Resources | count"), finished, "light")
    light.join()
    assert answers["light"] == 200
    assert finished[0] == "light"
    for thread in heavies:
        thread.join()
    assert answers["heavy-0"] == answers["heavy-1"] == 400


def test_a_heavy_query_holds_a_light_one_no_longer_than_its_time_limit(
    start_sandbox: Start,
) -> None:
    limits = QueryLimits(seconds=2, memory_bytes=512 * MiB, threads=1)
    sandbox = start_sandbox(numbered_vms(4), graph_quota=None, query_limits=limits, query_workers=1)
    finished: list[str] = []
    answers: dict[str, int] = {}
    heavy = run_in_thread(
        lambda: answers.__setitem__("heavy", query(sandbox, ENDLESS).status_code),
        finished,
        "heavy",
    )
    assert wait_until(lambda: sandbox.store.running_queries == 1)
    light = run_in_thread(
        lambda: answers.__setitem__("light", query(sandbox, "Resources | count").status_code),
        finished,
        "light",
    )
    heavy.join()
    light.join()
    # The only worker was the heavy query's until its time limit stopped it; then the light
    # one ran and answered.
    assert answers == {"heavy": 400, "light": 200}
    assert sorted(finished) == ["heavy", "light"]
    assert sandbox.store.stopped == {StopReason.TIME: 1}


def test_a_query_whose_client_goes_away_is_stopped(start_sandbox: Start) -> None:
    limits = QueryLimits(seconds=600, memory_bytes=512 * MiB, threads=1)
    sandbox = start_sandbox(numbered_vms(2), graph_quota=None, query_limits=limits)
    with pytest.raises(requests.exceptions.ReadTimeout):
        query(sandbox, ENDLESS, timeout=(10, 1))
    assert wait_until(lambda: sandbox.store.stopped.get(StopReason.CLIENT_GONE) == 1)
    assert sandbox.store.running_queries == 0


# -- connections ------------------------------------------------------------------------------


def test_a_body_over_the_limit_gets_413_with_an_arm_error(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(2), graph_quota=None, max_body_bytes=64 * 1024)
    answer = post(sandbox, GRAPH, {"query": "Resources | count", "pad": "x" * 100_000})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "RequestEntityTooLarge"


@pytest.mark.parametrize("depth", [33, 1_000, 200_000])
def test_json_nested_too_deep_gets_400_never_500(estate_sandbox: Sandbox, depth: int) -> None:
    body = '{"query": "Resources", "options": ' + "[" * depth + "]" * depth + "}"
    answer = post(
        estate_sandbox,
        GRAPH,
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "InvalidRequestContent"


def test_an_install_body_nested_too_deep_gets_400(estate_sandbox: Sandbox) -> None:
    path = (
        f"/subscriptions/{SUB_A}/resourceGroups/rg-hotpatch/providers/Microsoft.Compute/"
        "virtualMachines/vm-00000/installPatches?api-version=2025-04-01"
    )
    nested = '{"rebootSetting": "Never", "windowsParameters": ' + "{" * 5000 + "}" * 5000 + "}"
    answer = post(
        estate_sandbox, path, data=nested.encode(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400


def raise_descriptor_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_a_thousand_stalled_connections_do_not_stop_a_normal_client(start_sandbox: Start) -> None:
    raise_descriptor_limit(4096)
    sandbox = start_sandbox(
        numbered_vms(4), graph_quota=None, max_connections=64, header_seconds=60
    )
    host, port = sandbox.config.host, int(sandbox.base_url.rsplit(":", 1)[1])
    stalled: list[socket.socket] = []
    try:
        # Connections that never start TLS...
        for _ in range(1000):
            stalled.append(socket.create_connection((host, port), timeout=10))
        # ...and a few that shake hands and then send half a request.
        context = ssl.create_default_context(cafile=str(sandbox.ca_path))
        for _ in range(20):
            raw = socket.create_connection((host, port), timeout=10)
            secure = context.wrap_socket(raw, server_hostname=host)
            secure.sendall(b"POST /providers/Microsoft.ResourceGraph/resources HTTP/1.1\r\n")
            stalled.append(secure)
        answer = query(sandbox, "Resources | summarize machines = count()")
        assert answer.status_code == 200
        assert answer.json()["data"] == [{"machines": 4}]
        assert sandbox.open_connections <= 64
    finally:
        for connection in stalled:
            connection.close()


def test_a_connection_that_never_finishes_its_headers_is_closed(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(2), graph_quota=None, header_seconds=0.5)
    host, port = sandbox.config.host, int(sandbox.base_url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(sandbox.ca_path))
    with (
        socket.create_connection((host, port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=host) as secure,
    ):
        secure.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        # The server closes it: the read ends (empty or reset) instead of waiting forever.
        try:
            ended = secure.recv(1024)
        except (ConnectionResetError, ssl.SSLError):
            ended = b""
        assert b"200" not in ended


# -- quotas, files, operations ----------------------------------------------------------------


def test_the_quota_map_drops_expired_windows_and_stays_bounded() -> None:
    now = [0.0]
    quota = WindowQuota(Quota(2, 5.0), lambda: now[0], max_keys=100)
    for index in range(1_000):
        quota.take(f"token-{index}")
    assert len(quota) == 100
    now[0] += 5.0
    quota.take("after-the-window")
    assert len(quota) == 1


def test_past_the_cap_the_oldest_window_makes_room_and_the_others_keep_their_count() -> None:
    now = [0.0]
    quota = WindowQuota(Quota(1, 5.0), lambda: now[0], max_keys=2)
    assert quota.take("oldest").allowed
    assert not quota.take("oldest").allowed
    assert quota.take("second").allowed
    assert quota.take("third").allowed  # "oldest" makes room
    assert not quota.take("third").allowed
    assert quota.take("oldest").allowed  # a fresh window
    assert len(quota) == 2


def test_the_ca_file_is_written_without_following_a_symlink(
    tmp_path: Path, clock: ManualClock
) -> None:
    from hotpatch.sandbox.server import SandboxConfig

    state = tmp_path / "state"
    state.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (state / "ca.pem").symlink_to(victim)
    with Sandbox(SandboxConfig(state_dir=state), numbered_vms(1), clock=clock) as sandbox:
        assert not sandbox.ca_path.is_symlink()
        assert sandbox.ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert victim.read_text() == "keep me"


def start_assessment(sandbox: Sandbox) -> str:
    path = (
        f"/subscriptions/{SUB_A}/resourceGroups/rg-hotpatch/providers/Microsoft.Compute/"
        "virtualMachines/vm-00000/assessPatches?api-version=2025-04-01"
    )
    started = post(sandbox, path)
    assert started.status_code == 202
    return str(started.headers["Location"])


@pytest.mark.parametrize(
    "wrong",
    [
        (f"/subscriptions/{SUB_A}/", f"/subscriptions/{SUB_B}/"),
        ("/locations/westeurope/", "/locations/eastus/"),
        ("/providers/Microsoft.Compute/", "/providers/Microsoft.HybridCompute/"),
    ],
    ids=["another subscription", "another location", "another provider"],
)
def test_an_operation_is_found_only_at_its_own_url(
    start_sandbox: Start, wrong: tuple[str, str]
) -> None:
    sandbox = start_sandbox(numbered_vms(2), graph_quota=None)
    location = start_assessment(sandbox)
    elsewhere = location.replace(*wrong)
    assert elsewhere != location
    answer = requests.get(elsewhere, headers=BEARER, verify=str(sandbox.ca_path), timeout=30)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "OperationNotFound"
    own = requests.get(location, headers=BEARER, verify=str(sandbox.ca_path), timeout=30)
    assert own.status_code in (200, 202)


@pytest.mark.parametrize("duration", ["PT4H1M", "PT5H", "P1D", "P99999999999D"])
def test_a_maximum_duration_over_four_hours_is_refused_as_azure_refuses_it(
    estate_sandbox: Sandbox, duration: str
) -> None:
    path = (
        f"/subscriptions/{SUB_A}/resourceGroups/rg-hotpatch/providers/Microsoft.Compute/"
        "virtualMachines/vm-00000/installPatches?api-version=2025-04-01"
    )
    answer = post(
        estate_sandbox,
        path,
        {
            "maximumDuration": duration,
            "rebootSetting": "IfRequired",
            "windowsParameters": {"classificationsToInclude": ["Security"]},
        },
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "InvalidParameter"
    assert "maximumDuration" in answer.json()["error"]["message"]


def test_the_server_never_answers_500_to_odd_input(estate_sandbox: Sandbox) -> None:
    odd_bodies: list[bytes] = [
        b"\xff\xfe not utf-8",
        b'{"query": "Resources", "options": {"$skipToken": "' + b"W" * 5000 + b'"}}',
        b'{"query": "Resources", "options": {"$top": 1e309}}',
        b"[" * 10 + b"]" * 10,
        os.urandom(512),
    ]
    for body in odd_bodies:
        answer = post(
            estate_sandbox, GRAPH, data=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code < 500
