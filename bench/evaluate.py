"""Benchmark: parse + evaluate a synthetic raw export of N machines on one core.

Prints machines per second for parse + evaluate, the JSON decode time of the same export as a
separate figure, and the peak memory; ends with one JSON line of the figures.

    .venv/bin/python bench/evaluate.py [--machines 100000] [--seed 7] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from datetime import UTC, datetime

from hotpatch.bulk import collector_paused
from hotpatch.core.calendar import Calendar
from hotpatch.core.compliance import Evaluator, summarize
from hotpatch.core.inventory import parse_rows
from hotpatch.core.policy import Policy
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from hotpatch.sandbox.estate import EstateSpec, generate_estate

#: The estate is observed a week after the 2026-05 release, the newest the catalog knows.
AS_OF = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the goal says

    releases = shipped_release_catalog()
    started = time.perf_counter()
    estate = generate_estate(
        EstateSpec(machines=args.machines, seed=args.seed, as_of=AS_OF), releases
    )
    rows = estate.rows()
    generated = time.perf_counter() - started
    encoded = json.dumps(rows).encode()
    print(
        f"estate: {args.machines:,} machines, {len(rows):,} rows, "
        f"{len(encoded) / 1e6:.0f} MB as JSON (generated in {generated:.1f} s)"
    )

    decode_times = []
    for _ in range(args.repeat):
        gc.collect()
        started = time.perf_counter()
        with collector_paused():  # as hotpatch.export.read_rows does
            decoded = json.loads(encoded)
        decode_times.append(time.perf_counter() - started)
        del decoded
    del encoded

    evaluator = Evaluator(shipped_image_catalog(), Calendar(releases), Policy(), AS_OF)
    times = []
    summary = None
    for _ in range(args.repeat):
        gc.collect()
        started = time.perf_counter()
        with collector_paused():  # as hotpatch.service does
            inventory = parse_rows(rows)
            verdicts = Evaluator(
                evaluator.images, evaluator.calendar, evaluator.policy, AS_OF
            ).evaluate_all(inventory)
            summary = summarize(verdicts)
        times.append(time.perf_counter() - started)
        del inventory, verdicts
    assert summary is not None
    assert summary.total > 0

    best = min(times)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "machines": args.machines,
        "rows": len(rows),
        "parse_evaluate_s": round(best, 3),
        "parse_evaluate_median_s": round(statistics.median(times), 3),
        "machines_per_s": round(args.machines / best),
        "json_decode_s": round(min(decode_times), 3),
        "peak_rss_mb": round(peak_mb),
        "goal_s": 2.0,
        "by_state": summary.by_state,
    }
    print(
        f"parse + evaluate + summarize: best {best:.2f} s of {args.repeat} runs, "
        f"median {statistics.median(times):.2f} s"
    )
    print(f"throughput: {figures['machines_per_s']:,} machines/s on one core (goal: under 2 s)")
    print(f"JSON decode of the same export (reading a file): {min(decode_times):.2f} s")
    print(f"peak memory (max RSS of this process): {peak_mb:.0f} MB")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
