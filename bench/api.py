"""Benchmark: the HTTP compliance API under concurrent load over N stored machines.

Sweeps a generated estate of N machines (default 100,000) into an embedded store through the
service's own sweep, starts `hotpatch serve` on it in a child process (uvicorn, one worker, an
API key), and drives it from this process over loopback with C keep-alive connections (a small
asyncio HTTP/1.1 client: it costs the server's CPU far less than httpx would on two cores).
Each query is measured beside `GET /api/health` on the same server in the same run, in rounds
that alternate them (R rounds of N requests each), so that noise from other work on the
machine falls on both:

- `GET /api/compliance?state=non_compliant&top=100`
- `GET /api/compliance?tag=env%3Dprod&top=100` (a tag filter)
- `GET /api/compliance?state=non_compliant&top=100&continuationToken=...` (a page deep in)
- `GET /api/compliance/summary`

Prints p50, p99 and requests/s of each, the server's CPU time per request (user + system, from
/proc: other work on the machine moves it far less than latency), each query's p99 against
health's (goal: within 2x, and under 20 ms), the time of the first request (the snapshot read
and indexed), the server's memory before and after it, and the load average; ends with one JSON
line. Asserts nothing.

    .venv/bin/python bench/api.py [--machines 100000] [--connections 8] [--requests 2000]
                                  [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from hotpatch.fakes import InMemoryInventory
from hotpatch.ports import Scope
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from hotpatch.sandbox.session import default_as_of
from hotpatch.service import Recording, Rules, sweep
from hotpatch.settings import Settings
from hotpatch.store import open_store

KEY = "bench-api-key-0123456789abcdef"
_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


def fill_store(directory: Path, machines: int, seed: int) -> dict[str, float]:
    """A sweep of a generated estate, recorded in the embedded store at `directory`."""
    rules = Rules.from_settings(Settings())
    as_of = default_as_of(rules.releases)
    started = time.perf_counter()
    estate = generate_estate(
        EstateSpec(machines=machines, subscriptions=8, seed=seed, as_of=as_of), rules.releases
    )
    generated = time.perf_counter()
    store = open_store(str(directory))
    result = sweep(
        InMemoryInventory(estate.rows(), 1000),
        Scope(),
        rules,
        now=as_of,
        keep_verdicts=False,
        record=Recording(store, "bench", lambda: datetime.now(UTC)),
    )
    store.close()
    assert result.snapshot is not None
    return {
        "estate_s": round(generated - started, 1),
        "sweep_into_store_s": round(time.perf_counter() - generated, 1),
        "machines": result.snapshot.counts.machines,
        "non_compliant": result.snapshot.counts.by_state.get("non_compliant", 0),
    }


def _cpu_s(pid: int) -> float:
    """The CPU time (user + system) process `pid` has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(directory: Path) -> tuple[subprocess.Popen[str], str, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "hotpatch.cli", "serve", "--api-key", KEY],
        env={**os.environ, "HOTPATCH_STORE": str(directory)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("hotpatch API listening on "):
            url = line.split()[-1]
            host, port = url.removeprefix("http://").rsplit(":", 1)
            return process, host, int(port)
    raise SystemExit("hotpatch serve did not start")


async def _get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    found = _LENGTH.search(head)
    body = await reader.readexactly(int(found.group(1))) if found else b""
    return int(head[9:12]), body


def _request(host: str, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nx-functions-key: {KEY}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()


async def one(host: str, port: int, path: str) -> tuple[int, bytes, float]:
    reader, writer = await asyncio.open_connection(host, port)
    started = time.perf_counter()
    status, body = await _get(reader, writer, _request(host, path))
    took = time.perf_counter() - started
    writer.close()
    await writer.wait_closed()
    return status, body, took


async def load(
    host: str, port: int, path: str, requests: int, connections: int
) -> tuple[list[float], float, int]:
    """`requests` GETs of `path` over `connections` keep-alive connections: the latency of
    each, the wall time, and how many were not 200."""
    request = _request(host, path)
    latencies: list[float] = []
    failures = 0
    share = [requests // connections + (i < requests % connections) for i in range(connections)]

    async def client(count: int) -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for _ in range(count):
                started = time.perf_counter()
                status, _ = await _get(reader, writer, request)
                latencies.append(time.perf_counter() - started)
                failures += status != 200
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(client(count) for count in share))
    return latencies, time.perf_counter() - started, failures


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def deep_token(host: str, port: int, pages: int) -> tuple[str, int]:
    """The continuation token `pages` pages into the non-compliant listing (or its last)."""
    token = ""
    depth = 0
    while depth < pages:
        path = "/api/compliance?state=non_compliant&top=100" + (
            f"&continuationToken={token}" if token else ""
        )
        status, body, _ = await one(host, port, path)
        assert status == 200, body[:300]
        following = json.loads(body)["continuationToken"]
        if following is None:
            break
        token = following
        depth += 1
    return token, depth


async def run(args: argparse.Namespace, host: str, port: int, pid: int) -> dict[str, object]:
    rss_idle = _rss_mb(pid)
    status, body, first = await one(host, port, "/api/compliance?state=non_compliant&top=100")
    assert status == 200, body[:300]
    rss_loaded = _rss_mb(pid)
    token, depth = await deep_token(host, port, 40)
    deep = f"/api/compliance?state=non_compliant&top=100&continuationToken={token}"
    paths = {
        "health": "/api/health",
        "state_non_compliant": "/api/compliance?state=non_compliant&top=100",
        "tag_env_prod": "/api/compliance?tag=env%3Dprod&top=100",
        f"state_page_{depth + 1}": deep,
        "summary": "/api/compliance/summary",
    }
    # Warm every path (and the connections' first requests) before measuring.
    for path in paths.values():
        await load(host, port, path, args.connections * 20, args.connections)
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    seconds: dict[str, float] = dict.fromkeys(paths, 0.0)
    server_cpu: dict[str, float] = dict.fromkeys(paths, 0.0)
    failures = 0
    for _ in range(args.rounds):
        for name, path in paths.items():
            cpu_before = _cpu_s(pid)
            taken, wall, failed = await load(host, port, path, args.requests, args.connections)
            server_cpu[name] += _cpu_s(pid) - cpu_before
            latencies[name].extend(taken)
            seconds[name] += wall
            failures += failed
    figures: dict[str, dict[str, float]] = {}
    for name, taken in latencies.items():
        figures[name] = {
            "p50_ms": round(percentile(taken, 0.50) * 1000, 2),
            "p99_ms": round(percentile(taken, 0.99) * 1000, 2),
            "mean_ms": round(statistics.fmean(taken) * 1000, 2),
            "rps": round(len(taken) / seconds[name]),
            "server_cpu_us": round(server_cpu[name] / len(taken) * 1e6),
        }
    health_p99 = figures["health"]["p99_ms"]
    for name, row in figures.items():
        if name != "health":
            row["p99_vs_health"] = round(row["p99_ms"] / health_p99, 2)
            row["goal_met"] = float(row["p99_ms"] <= 2 * health_p99 and row["p99_ms"] < 20)
    return {
        "first_request_s": round(first, 2),
        "server_rss_mb_before_index": round(rss_idle),
        "server_rss_mb_with_index": round(rss_loaded),
        "server_rss_mb_at_end": round(_rss_mb(pid)),
        "failures": failures,
        "endpoints": figures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hotpatch-bench-api-") as temporary:
        directory = Path(temporary) / "store"
        print(
            f"sweeping {args.machines:,} generated machines into {directory} ...", file=sys.stderr
        )
        stored = fill_store(directory, args.machines, args.seed)
        process, host, port = start_server(directory)
        try:
            measured = asyncio.run(run(args, host, port, process.pid))
        finally:
            process.terminate()
            process.communicate(timeout=30)
    load_after = os.getloadavg()

    endpoints: dict[str, dict[str, float]] = measured["endpoints"]  # type: ignore[assignment]
    print(
        f"{stored['machines']:,} machines ({stored['non_compliant']:,} non-compliant) stored in "
        f"{stored['sweep_into_store_s']} s; first request (read + index the snapshot): "
        f"{measured['first_request_s']} s; server RSS {measured['server_rss_mb_before_index']} MB "
        f"before, {measured['server_rss_mb_with_index']} MB with the index"
    )
    print(
        f"{args.connections} connections, {args.rounds} rounds x {args.requests} requests per "
        f"endpoint; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"({os.cpu_count()} CPUs)"
    )
    print(
        f"{'endpoint':<24} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'cpu us':>8} "
        f"{'p99/health':>11} goal"
    )
    for name, row in endpoints.items():
        ratio = f"{row['p99_vs_health']:.2f}" if "p99_vs_health" in row else "-"
        goal = "-" if name == "health" else ("met" if row["goal_met"] else "MISSED")
        print(
            f"{name:<24} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['rps']:>8.0f} "
            f"{row['server_cpu_us']:>8.0f} {ratio:>11} {goal}"
        )
    print(
        json.dumps(
            {
                "bench": "api",
                **stored,
                "connections": args.connections,
                "rounds": args.rounds,
                "requests_per_round": args.requests,
                "load_average_before": round(load_before[0], 2),
                "load_average_after": round(load_after[0], 2),
                **measured,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
