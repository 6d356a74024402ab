"""Benchmark: a sandbox sweep of N machines under the Resource Graph quota.

Runs the real ResourceGraphClient through the inventory adapter against an in-process sandbox
with a quota of 15 queries per 5 s and pages of 1000 rows, then prints the wall time, the
quota-bound minimum for the same number of pages (the last page cannot be asked for before
floor((pages - 1) / 15) windows have passed), their ratio (goal <= 1.25), the 429s received
and the API calls per 1000 machines; ends with one JSON line of the figures.

    .venv/bin/python bench/sweep.py [--machines 100000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from hotpatch.bootstrap import SandboxEndpoint, sandbox_target
from hotpatch.bulk import collector_paused
from hotpatch.ports import InventoryProgress, Scope
from hotpatch.sandbox.arm import Quota
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from hotpatch.sandbox.server import SandboxConfig
from hotpatch.sandbox.session import default_as_of, running_sandbox
from hotpatch.service import Rules, sweep
from hotpatch.settings import Settings

QUOTA = Quota(15, 5.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rules = Rules.from_settings(Settings())
    as_of = default_as_of(rules.releases)
    started = time.perf_counter()
    estate = generate_estate(
        EstateSpec(machines=args.machines, subscriptions=8, seed=args.seed, as_of=as_of),
        rules.releases,
    )
    print(
        f"estate: {args.machines:,} machines, {len(estate.rows()):,} rows "
        f"(generated in {time.perf_counter() - started:.1f} s)",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as state:
        config = SandboxConfig(state_dir=Path(state), graph_quota=QUOTA, max_page_size=1000)
        started = time.perf_counter()
        with (
            running_sandbox(estate, config) as sandbox,
            sandbox_target(SandboxEndpoint(sandbox.base_url, sandbox.ca_path)) as target,
        ):
            print(f"sandbox loaded in {time.perf_counter() - started:.1f} s; sweeping…", flush=True)
            inventory = target.inventory
            del estate  # the sandbox holds its own copy; keep the heap small for the sweep

            last_page: list[float] = []

            def on_progress(update: InventoryProgress) -> None:
                last_page[:] = [time.perf_counter()]
                if update.pages % 10 == 0:
                    print(f"  page {update.pages}: {update.rows:,} rows", flush=True)

            with collector_paused():
                started = time.perf_counter()
                result = sweep(inventory, Scope(), rules, now=as_of, on_progress=on_progress)
                wall = time.perf_counter() - started
            inventory_s = last_page[0] - started if last_page else wall
            throttled = sandbox.counters().throttled

    stats = result.inventory
    pages = stats.pages
    bound = ((pages - 1) // QUOTA.limit) * QUOTA.window_seconds
    machines = result.evaluation.summary.total
    # Under one quota window of pages the quota sets no bound: the ratio is null, not NaN
    # (which is not JSON).
    ratio = round(wall / bound, 3) if bound else None
    figures = {
        "machines": machines,
        "pages": pages,
        "requests": stats.requests,
        "wall_s": round(wall, 2),
        "quota_bound_s": bound,
        "ratio_to_bound": ratio,
        "throttled_429": throttled,
        "retries": dict(stats.retries),
        "quota_waits": stats.quota_waits,
        "quota_wait_s": round(stats.quota_wait_seconds, 2),
        "evaluate_s": round(wall - inventory_s, 2),
        "inventory_s": round(inventory_s, 2),
        "api_calls_per_1000_machines": round(1000 * stats.requests / machines, 2),
        "goal_ratio": 1.25,
    }
    print(
        f"swept {machines:,} machines in {wall:.1f} s over {pages} pages "
        f"({stats.requests} requests, {stats.quota_waits} quota waits, {throttled} 429s)"
    )
    print(
        f"quota-bound minimum for {pages} pages at {QUOTA.limit} queries / "
        f"{QUOTA.window_seconds:.0f} s: {bound:.1f} s; "
        + (f"ratio {ratio:.2f} (goal <= 1.25)" if ratio is not None else "no ratio (one window)")
    )
    print(f"API calls per 1000 machines: {figures['api_calls_per_1000_machines']}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
