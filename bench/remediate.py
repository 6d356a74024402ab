"""Benchmark: patch operations through the in-process sandbox under a per-subscription write quota.

Two scenarios (`--scenario assess|rings|all`, default all):

assess: the real adapter (`ComputePatchOperations`, the real async Compute client over TLS)
assesses `--machines` VMs of a generated estate served by the sandbox, with long-running
operations of `--latency` seconds and ARM's write quota per subscription. Prints progress while
it runs, then the wall time, the quota-bound minimum, their ratio (goal <= 1.25) and the 429s
received after the first second (goal 0; counted by the client and by the sandbox).

rings: a May 2026 rollout over `--ring-machines` generated machines (VMs and Arc) tagged into
rings ring0/ring1/ring2 (10%/30%/60%), driven step by step with explicit `now`s through the
remediation use case (`hotpatch.remediation.Remediation`: plan, journal in the embedded store,
start through the adapter, follow, journal), each run over a fresh sweep of the sandbox: ring 0
in its window, ring 1 after ring 0's soak (ring 0's proven KB set), then ring 2. A phase runs
again (10 minutes later) while it still starts something: stale assessments come first, the
installs in the next run. Per run: machines installed, write requests, 429s, the sweep's and the
remediation's wall time, the bound the write quota sets for the starts it made and their ratio
(`ratio_to_bound`), peak RSS (the sandbox runs in this process too). The service's adapter
runs with its default limits (50 operations in flight, 20 per subscription), as
`hotpatch remediate` does; the sandbox's Resource Graph quota is on.

The bound: a subscription that needs n starts under a quota of L writes per W seconds needs
n / L * W seconds, plus one operation latency for the last one. The sandbox's windows are
fixed (each opens at its first write), so a client bursting at each window's start could finish
at (ceil(n / L) - 1) * W + latency: printed too, as the strict bound. Either scenario ends
with one JSON line of its figures (both: one line holding both, under their names).

    .venv/bin/python bench/remediate.py [--scenario all] [--machines 5000] [--ring-machines 10000]
        [--subscriptions 5] [--seed 7] [--latency 0.2] [--quota-limit 200] [--quota-window 20]
        [--max-concurrency 50] [--per-subscription 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any

from hotpatch.azure.compute import ComputePatchOperations, Limits, ThrottleEvent, WriteBudget
from hotpatch.azure.credentials import AsyncStaticTokenCredential
from hotpatch.azure.resource_graph import ResourceGraphInventory
from hotpatch.bootstrap import SandboxEndpoint, sandbox_target
from hotpatch.core.calendar import Calendar, YearMonth
from hotpatch.core.models import MachineKind
from hotpatch.core.plan import Mode, OperationKind, RemediationPolicy, RingPolicy, Window
from hotpatch.core.policy import Policy
from hotpatch.core.resource_types import PATCHABLE
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from hotpatch.ports import Inventory, MachineRef, OperationOutcome, PatchOperations
from hotpatch.ports.store import JournalStatus, VerdictRow
from hotpatch.remediation import Remediation
from hotpatch.sandbox.arm import Quota
from hotpatch.sandbox.estate import Estate, EstateSpec, generate_estate
from hotpatch.sandbox.server import Sandbox, SandboxConfig
from hotpatch.service import Rules, sweep
from hotpatch.store import open_store

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
    parser.add_argument("--scenario", choices=("assess", "rings", "all"), default="all")
    parser.add_argument("--machines", type=int, default=5000, help="VMs to assess (assess)")
    parser.add_argument(
        "--ring-machines", type=int, default=10_000, help="machines of the estate (rings)"
    )
    parser.add_argument("--subscriptions", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--quota-limit", type=int, default=200)
    parser.add_argument("--quota-window", type=float, default=20.0)
    parser.add_argument("--max-concurrency", type=int, default=50, help="the adapter's (assess)")
    parser.add_argument("--per-subscription", type=int, default=20, help="the adapter's (assess)")
    args = parser.parse_args()

    results: dict[str, dict[str, Any]] = {}
    if args.scenario in ("assess", "all"):
        results["assess"] = assess_scenario(args)
    if args.scenario in ("rings", "all"):
        if results:
            print()
        results["rings"] = rings_scenario(args)
    print(json.dumps(results if len(results) > 1 else next(iter(results.values()))))
    return 0


def assess_scenario(args: argparse.Namespace) -> dict[str, Any]:
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
    return result


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


# ---------------------------------------------------------------------------------------------
# The rings scenario
# ---------------------------------------------------------------------------------------------

RING_TAG = "hotpatch-ring"
#: Of every ten patchable machines, in estate order: one in ring0, three in ring1, six in ring2.
RING_OF_TENTH = ("ring0", "ring1", "ring1", "ring1", *("ring2",) * 6)
#: Each ring's window opens this many days after Patch Tuesday (May 12, 2026), at noon UTC for
#: three hours: ring 0 on the day the estate is observed, each next ring after a day's soak.
RING_WINDOWS = {"ring0": 7, "ring1": 9, "ring2": 11}
SOAK = timedelta(days=1)
#: The first run of a phase starts this long after its window opens; each further run of the
#: phase this long after the one before.
INTO_WINDOW = timedelta(minutes=30)
RUN_EVERY = timedelta(minutes=10)
#: A phase runs again while it still starts something, at most this often.
RUNS_PER_PHASE = 4
#: The caps stay out of the way: the bench measures the quota, not the blast radius.
NO_CAP = 1_000_000
#: The write routes of the sandbox (VMs and Arc machines alike).
WRITE_ROUTES = ("compute.assessPatches", "compute.installPatches")


class StepClock:
    """The rollout's time: each step's `now`, plus the real time elapsed since it was set
    (real monotonic time, so that operations finish). Shared by the sandbox and the service."""

    def __init__(self, start: datetime) -> None:
        self._at, self._origin = start, time.monotonic()

    def set(self, now: datetime) -> None:
        self._at, self._origin = now, time.monotonic()

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return self._at + timedelta(seconds=time.monotonic() - self._origin)


def ring_estate(machines: int, subscriptions: int, seed: int) -> tuple[Estate, Counter[str]]:
    """A generated estate whose patchable machines carry ring tags 10/30/60 (the generator's
    own ring tags replaced)."""
    estate = generate_estate(
        EstateSpec(machines=machines, subscriptions=subscriptions, seed=seed, as_of=AS_OF),
        shipped_release_catalog(),
    )
    rings: Counter[str] = Counter()
    patchable = {t.type for t in PATCHABLE}
    for row in estate.resources:
        kind = row.get("type")
        if isinstance(kind, str) and kind.lower() in patchable:
            ring = RING_OF_TENTH[sum(rings.values()) % len(RING_OF_TENTH)]
            row["tags"] = {**(row.get("tags") or {}), RING_TAG: ring}
            rings[ring] += 1
    return estate, rings


def ring_window(ring: str) -> Window:
    return Window(RING_WINDOWS[ring], dt_time(12, 0), "UTC", timedelta(hours=3))


def ring_policy() -> RemediationPolicy:
    """Remediate mode, three rings of a day's soak each in their own windows, no caps."""
    return RemediationPolicy(
        mode=Mode.REMEDIATE,
        rings=tuple(
            RingPolicy(
                name, soak=SOAK, max_concurrent=NO_CAP, max_per_run=NO_CAP, window=ring_window(name)
            )
            for name in RING_WINDOWS
        ),
        max_starts_per_run=NO_CAP,
        install_pending=True,
    )


def window_opens(ring: str) -> datetime:
    return ring_window(ring).occurrence(YearMonth(2026, 5))[0]


@dataclass
class StepFigures:
    step: str
    now: str
    assessments: int
    installs: int
    installed: int
    outcomes: dict[str, int]
    write_requests: int
    throttled_server: int
    throttled_client: int
    busiest_subscription_starts: int
    sweep_seconds: float
    remediation_seconds: float
    bound_seconds: float | None
    ratio_to_bound: float | None
    #: A burst at each fixed window's start: (ceil(n / L) - 1) * W + latency.
    strict_bound_seconds: float | None
    peak_rss_mb: float
    rings: dict[str, str]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rings_scenario(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    estate, members = ring_estate(args.ring_machines, args.subscriptions, args.seed)
    print(
        f"estate: {len(estate.machine_ids()):,} machines in {args.subscriptions} subscriptions, "
        f"{', '.join(f'{r} {n:,}' for r, n in sorted(members.items()))} patchable; "
        f"generated in {time.perf_counter() - started:.1f} s"
    )
    quota = Quota(args.quota_limit, args.quota_window)
    config = SandboxConfig(write_quota=quota, operation_latency_seconds=args.latency)
    print(
        f"sandbox: write quota {quota.limit} per {quota.window_seconds:g} s per subscription, "
        f"Resource Graph quota on, operations take {args.latency:g} s; the service's adapter "
        "with its default limits; embedded store in a temporary directory"
    )
    releases = shipped_release_catalog()
    rules = Rules(shipped_image_catalog(), releases, Calendar(releases), Policy())
    clock = StepClock(window_opens("ring0"))
    steps: list[StepFigures] = []
    with (
        tempfile.TemporaryDirectory(prefix="hotpatch-bench-") as home,
        Sandbox(config, estate, clock=clock) as sandbox,
        sandbox_target(SandboxEndpoint(sandbox.base_url, sandbox.ca_path)) as target,
    ):
        store = open_store(str(Path(home) / "store"))
        throttles: list[ThrottleEvent] = []
        print(f"peak RSS with the sandbox serving, before the first run: {peak_rss_mb():.0f} MB")
        rss_serving = peak_rss_mb()

        @asynccontextmanager
        async def observed() -> AsyncIterator[PatchOperations]:
            async with target.patch_operations() as operations:
                try:
                    yield operations
                finally:
                    if isinstance(operations, ComputePatchOperations):
                        throttles.extend(operations.throttle_events())

        history = target.inventory  # Resource Graph's: it lists installations too
        assert isinstance(history, ResourceGraphInventory)
        remediation = Remediation(
            store=store,
            patch_operations=observed,
            installations=history,
            scope=target.scope,
            policy=ring_policy(),
            calendar=rules.calendar,
            clock=clock.now,
            who="bench@remediate",
        )
        rollout = Rollout(
            clock, sandbox, remediation, target.inventory, rules, quota, args.latency, throttles
        )
        try:
            for ring in RING_WINDOWS:
                now = window_opens(ring) + INTO_WINDOW
                for attempt in range(RUNS_PER_PHASE):
                    figures = rollout.step(f"{ring}#{attempt + 1}", now)
                    steps.append(figures)
                    if figures.assessments + figures.installs == 0:
                        break
                    now += RUN_EVERY
            proven = {
                f"{state.ring} {state.release}": f"{state.status.value}: {', '.join(state.kbs)}"
                for state in store.ring_states()
            }
        finally:
            store.close()

    busy = [s for s in steps if s.bound_seconds]
    remediation_wall = sum(s.remediation_seconds for s in busy)
    bound = sum(s.bound_seconds or 0.0 for s in busy)
    strict = sum(s.strict_bound_seconds or 0.0 for s in busy)
    installed = sum(s.installed for s in steps)
    result: dict[str, Any] = {
        "machines": len(estate.machine_ids()),
        "ring_members": dict(sorted(members.items())),
        "subscriptions": args.subscriptions,
        "installed": installed,
        "assessments": sum(s.assessments for s in steps),
        "installs": sum(s.installs for s in steps),
        "write_requests": sum(s.write_requests for s in steps),
        "throttled_server": sum(s.throttled_server for s in steps),
        "throttled_client": sum(s.throttled_client for s in steps),
        "sweep_seconds": round(sum(s.sweep_seconds for s in steps), 2),
        "remediation_seconds": round(remediation_wall, 2),
        "bound_seconds": round(bound, 2),
        "ratio_to_bound": round(remediation_wall / bound, 3) if bound else None,
        "strict_bound_seconds": round(strict, 2),
        "ratio_to_strict_bound": round(remediation_wall / strict, 3) if strict else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_mb_before_first_run": round(rss_serving, 1),
        "rings": proven,
        "steps": [asdict(s) for s in steps],
    }
    print()
    for ring, state in proven.items():
        print(f"{ring}: {state}")
    print(
        f"rings: {installed:,} machines installed, {result['assessments']:,} assessed, "
        f"{result['write_requests']:,} write requests, 429s server {result['throttled_server']} "
        f"client {result['throttled_client']}"
    )
    print(
        f"remediation wall time {remediation_wall:8.1f} s over the runs that started something "
        f"(their sweeps' {sum(x.sweep_seconds for x in busy):.1f} s not counted)"
    )
    if bound:
        print(
            f"quota-bound minimum   {bound:8.1f} s   ratio_to_bound "
            f"{remediation_wall / bound:.3f}  (goal <= 1.25)"
        )
        print(
            f"strict bound          {strict:8.1f} s   ratio {remediation_wall / strict:.3f}  "
            "(bursts at each window's start; the adapter's concurrency is not counted)"
        )
    print(f"peak RSS              {result['peak_rss_mb']:8.1f} MB (sandbox included)")
    return result


@dataclass
class Rollout:
    """One sandbox, one store, one policy; remediation runs at chosen instants."""

    clock: StepClock
    sandbox: Sandbox
    remediation: Remediation
    inventory: Inventory
    rules: Rules
    quota: Quota
    latency: float
    #: Every 429 the adapter met, appended as each session closes.
    throttles: list[ThrottleEvent]

    def step(self, name: str, now: datetime) -> StepFigures:
        """One `hotpatch remediate --now NOW --yes`: a fresh sweep, a plan, its operations."""
        self.clock.set(now)
        before = self.sandbox.counters()
        client_before = len(self.throttles)
        swept: list[float] = []

        def machines() -> list[VerdictRow]:
            began = time.perf_counter()
            result = sweep(self.inventory, self.remediation.scope, self.rules, now=self.clock.now())
            rows = [VerdictRow.from_verdict(v) for v in result.evaluation.verdicts]
            swept.append(time.perf_counter() - began)
            return rows

        began = time.perf_counter()
        done = threading.Event()
        reporter = threading.Thread(
            target=_report_progress, args=(self.sandbox, began, done), daemon=True
        )
        reporter.start()
        try:
            outcome = self.remediation.run(machines, apply=True)
        finally:
            done.set()
            reporter.join()
        wall = time.perf_counter() - began
        after = self.sandbox.counters()
        operations = outcome.plan.operations
        applied = outcome.applied
        installs = [op for op in operations if op.kind is OperationKind.INSTALL]
        installed = {
            r.key
            for r in self.remediation.store.journal(status=JournalStatus.SUCCEEDED)
            if r.run_id == outcome.run.id and r.action.startswith("install")
        }
        starts = Counter(MachineRef.parse(op.machine_id).subscription.lower() for op in operations)
        busiest = max(starts.values(), default=0)
        quota = self.quota
        bound = busiest / quota.limit * quota.window_seconds + self.latency if busiest else None
        strict = (
            (math.ceil(busiest / quota.limit) - 1) * quota.window_seconds + self.latency
            if busiest
            else None
        )
        sweep_seconds = sum(swept)
        remediation_seconds = wall - sweep_seconds
        figures = StepFigures(
            step=name,
            now=now.isoformat(),
            assessments=len(operations) - len(installs),
            installs=len(installs),
            installed=len(installed),
            outcomes=dict(applied.outcomes) if applied is not None else {},
            write_requests=sum(
                after.requests.get(r, 0) - before.requests.get(r, 0) for r in WRITE_ROUTES
            ),
            throttled_server=after.throttled - before.throttled,
            throttled_client=len(self.throttles) - client_before,
            busiest_subscription_starts=busiest,
            sweep_seconds=round(sweep_seconds, 2),
            remediation_seconds=round(remediation_seconds, 2),
            bound_seconds=round(bound, 2) if bound else None,
            ratio_to_bound=round(remediation_seconds / bound, 3) if bound else None,
            strict_bound_seconds=round(strict, 2) if strict else None,
            peak_rss_mb=round(peak_rss_mb(), 1),
            rings={r.ring: r.status for r in outcome.plan.rings},
        )
        ratio = f"{figures.ratio_to_bound:.3f}" if figures.ratio_to_bound is not None else "-"
        print(
            f"{name:8} {now:%m-%d %H:%M}Z  assess {figures.assessments:5,}  install "
            f"{figures.installs:5,}  installed {figures.installed:5,}  writes "
            f"{figures.write_requests:5,}  429s {figures.throttled_server}/"
            f"{figures.throttled_client}  sweep {sweep_seconds:5.1f} s  remediation "
            f"{remediation_seconds:6.1f} s  bound {bound or 0:6.1f} s  ratio_to_bound {ratio}  "
            f"RSS {figures.peak_rss_mb:.0f} MB  "
            f"rings {' '.join(f'{k}:{v}' for k, v in figures.rings.items())}",
            flush=True,
        )
        return figures


def _report_progress(sandbox: Sandbox, began: float, done: threading.Event) -> None:
    """Every few seconds: operations so far, and the CPU this process used meanwhile (the
    sandbox, the client and the journal share one interpreter: 100% is one core's worth)."""
    cpu, at = time.process_time(), time.perf_counter()
    while not done.wait(PROGRESS_EVERY):
        counters = sandbox.counters()
        cpu_now, now = time.process_time(), time.perf_counter()
        print(
            f"  {now - began:6.1f} s: {counters.operations_started:6,} started, "
            f"{counters.operations_finished:6,} finished, {counters.throttled} throttled, "
            f"CPU {(cpu_now - cpu) / (now - at):.0%}",
            flush=True,
        )
        cpu, at = cpu_now, now


if __name__ == "__main__":
    raise SystemExit(main())
