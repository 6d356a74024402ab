"""Benchmark: assess N machines through the in-process sandbox under a per-subscription write quota.

The real adapter (`ComputePatchOperations`, the real async Compute client over TLS) assesses a
generated estate served by the sandbox, with long-running operations of `--latency` seconds and
ARM's write quota per subscription. Prints progress while it runs, then the wall time, the
quota-bound minimum, their ratio (goal <= 1.25) and the 429s received after the first second
(goal 0; counted by the client and by the sandbox); ends with one JSON line of the figures.

The bound: a subscription that needs n starts under a quota of L writes per W seconds needs
n / L * W seconds, plus one operation latency for the last one. The sandbox's windows are
fixed (each opens at its first write), so a client bursting at each window's start could finish
at (ceil(n / L) - 1) * W + latency: printed too, as the strict bound.

    .venv/bin/python bench/remediate.py [--machines 5000] [--subscriptions 5] [--seed 7]
        [--latency 0.2] [--quota-limit 200] [--quota-window 20]
        [--max-concurrency 50] [--per-subscription 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hotpatch.azure.compute import ComputePatchOperations, Limits, WriteBudget
from hotpatch.azure.credentials import AsyncStaticTokenCredential
from hotpatch.core.models import MachineKind
from hotpatch.data import shipped_release_catalog
from hotpatch.ports import MachineRef, OperationOutcome
from hotpatch.sandbox.arm import Quota
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from hotpatch.sandbox.server import Sandbox, SandboxConfig

#: A week after the 2026-05 release, the newest the shipped catalog knows.
AS_OF = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)
PROGRESS_EVERY = 5.0


@dataclass(frozen=True)
class RunFigures:
    wall_seconds: float
    client_429: int
    client_429_late: int
    server_429: int
    server_429_late: int
    outcomes: dict[str, int]
    requests: dict[str, int]


class EstateClock:
    """The sandbox's time: real monotonic time, a wall clock that starts at AS_OF."""

    def __init__(self) -> None:
        self._origin = time.monotonic()

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return AS_OF + timedelta(seconds=time.monotonic() - self._origin)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=5000)
    parser.add_argument("--subscriptions", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--quota-limit", type=int, default=200)
    parser.add_argument("--quota-window", type=float, default=20.0)
    parser.add_argument("--max-concurrency", type=int, default=50)
    parser.add_argument("--per-subscription", type=int, default=20)
    args = parser.parse_args()

    started = time.perf_counter()
    # --machines counts the VMs assessed: the estate is drawn larger, because a tenth of a
    # generated estate is Arc machines (no Compute API) and some entries are scale sets.
    estate = generate_estate(
        EstateSpec(
            machines=args.machines * 5 // 4,
            subscriptions=args.subscriptions,
            seed=args.seed,
            as_of=AS_OF,
        ),
        shipped_release_catalog(),
    )
    machines: list[MachineRef] = []
    for machine_id in estate.machine_ids():
        try:
            machine = MachineRef.parse(machine_id)
        except ValueError:
            continue  # Uniform scale sets: not machines patch operations address
        if machine.kind is MachineKind.VM and len(machines) < args.machines:
            machines.append(machine)
    if len(machines) < args.machines:
        raise SystemExit(f"the estate holds only {len(machines)} VMs; raise its size")
    vms = Counter(m.subscription.lower() for m in machines)
    print(
        f"estate: {len(machines):,} VMs to assess in {len(vms)} subscriptions, "
        f"generated in {time.perf_counter() - started:.1f} s"
    )

    quota = Quota(args.quota_limit, args.quota_window)
    config = SandboxConfig(
        write_quota=quota, graph_quota=None, operation_latency_seconds=args.latency
    )
    limits = Limits(
        max_concurrency=args.max_concurrency,
        per_subscription=args.per_subscription,
        write_budget=WriteBudget(quota.limit, timedelta(seconds=quota.window_seconds)),
    )
    print(
        f"sandbox: write quota {quota.limit} per {quota.window_seconds:g} s per subscription, "
        f"operations take {args.latency:g} s; adapter: {limits.max_concurrency} in flight, "
        f"{limits.per_subscription} per subscription"
    )
    with Sandbox(config, estate, clock=EstateClock()) as sandbox:
        figures = asyncio.run(run(sandbox, machines, limits))

    busiest = max(vms.values())
    bound = busiest / quota.limit * quota.window_seconds + args.latency
    strict = (math.ceil(busiest / quota.limit) - 1) * quota.window_seconds + args.latency
    wall = figures.wall_seconds
    result = {
        "machines": len(machines),
        "vms": sum(vms.values()),
        "subscriptions": len(vms),
        "busiest_subscription_starts": busiest,
        "wall_seconds": round(wall, 2),
        "bound_seconds": round(bound, 2),
        "ratio_to_bound": round(wall / bound, 3),
        "strict_bound_seconds": round(strict, 2),
        "ratio_to_strict_bound": round(wall / strict, 3),
        "throttled_after_first_second_client": figures.client_429_late,
        "throttled_after_first_second_server": figures.server_429_late,
        "throttled_total_client": figures.client_429,
        "throttled_total_server": figures.server_429,
        "outcomes": figures.outcomes,
        "requests": figures.requests,
    }
    print()
    print(f"wall time:            {wall:8.1f} s")
    print(f"quota-bound minimum:  {bound:8.1f} s   ratio {wall / bound:.3f}  (goal <= 1.25)")
    print(f"strict bound:         {strict:8.1f} s   ratio {wall / strict:.3f}")
    print(
        f"429s after 1 s:       client {figures.client_429_late}, "
        f"server {figures.server_429_late}  (goal 0; in all: client {figures.client_429}, "
        f"server {figures.server_429})"
    )
    print(f"outcomes:             {figures.outcomes}")
    print(json.dumps(result))
    return 0


async def run(sandbox: Sandbox, machines: list[MachineRef], limits: Limits) -> RunFigures:
    statuses: Counter[str] = Counter()

    def heard(outcome: OperationOutcome) -> None:
        statuses[outcome.status.value] += 1

    async with ComputePatchOperations(
        credential=AsyncStaticTokenCredential(),
        base_url=sandbox.base_url,
        connection_verify=str(sandbox.ca_path),
        limits=limits,
    ) as operations:
        began_at, began = datetime.now(UTC), time.perf_counter()
        server_at_one_second: list[int] = []

        async def progress() -> None:
            await asyncio.sleep(1.0)
            server_at_one_second.append(sandbox.counters().throttled)
            while True:
                await asyncio.sleep(PROGRESS_EVERY)
                counters = sandbox.counters()
                print(
                    f"  {time.perf_counter() - began:6.1f} s: {statuses.total():5,} of "
                    f"{len(machines):,} done, {counters.operations_started:5,} started, "
                    f"{counters.throttled} throttled",
                    flush=True,
                )

        reporter = asyncio.create_task(progress())
        try:
            outcomes = await operations.assess(machines, on_outcome=heard)
        finally:
            reporter.cancel()
        wall = time.perf_counter() - began
        events = operations.throttle_events()
    counters = sandbox.counters()
    late_after = began_at + timedelta(seconds=1)
    server_early = server_at_one_second[0] if server_at_one_second else counters.throttled
    return RunFigures(
        wall_seconds=wall,
        client_429=len(events),
        client_429_late=sum(1 for e in events if e.at > late_after),
        server_429=counters.throttled,
        server_429_late=counters.throttled - server_early,
        outcomes=dict(Counter(o.status.value for o in outcomes)),
        requests=dict(counters.requests),
    )


if __name__ == "__main__":
    raise SystemExit(main())
