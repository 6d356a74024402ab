"""Benchmark: parse + evaluate a synthetic raw export of N machines on one core.

Prints machines per second for parse + evaluate, the JSON decode time of the same export as a
separate figure, and the peak memory; ends with one JSON line of the figures.

It times what `hotpatch evaluate` does once the file is decoded: `evaluate_rows` (parse, evaluate,
summarize), in a process that has switched the cyclic collector off as that one-shot command does
(`hotpatch.bulk.collector_off_for_good`). A long-lived process instead pauses the collector
around the work and, when it comes back on, pays one scan of the new records: that figure is
printed too. Parsing starts from rows as `json.loads` gives them, which is what the service
parses (rows straight from the estate generator sit differently in memory and parse slower).

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
from typing import Any

from hotpatch.bulk import collector_off_for_good
from hotpatch.core.calendar import Calendar
from hotpatch.core.policy import Policy
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from hotpatch.service import Rules, evaluate_rows

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

    collector_off_for_good()  # as `hotpatch evaluate` runs
    releases = shipped_release_catalog()
    rules = Rules(shipped_image_catalog(), releases, Calendar(releases), Policy())
    started = time.perf_counter()
    estate = generate_estate(
        EstateSpec(machines=args.machines, seed=args.seed, as_of=AS_OF), releases
    )
    encoded = json.dumps(estate.rows()).encode()
    generated = time.perf_counter() - started
    del estate

    decode_times = []
    rows: list[Any] = []
    for _ in range(args.repeat):
        rows = []  # the previous copy goes before the next is decoded
        gc.collect()
        started = time.perf_counter()
        rows = json.loads(encoded)
        decode_times.append(time.perf_counter() - started)
    print(
        f"estate: {args.machines:,} machines, {len(rows):,} rows, "
        f"{len(encoded) / 1e6:.0f} MB as JSON (generated in {generated:.1f} s)"
    )
    del encoded

    times = []
    summary = None
    catch_up = 0.0
    for _ in range(args.repeat):
        gc.collect()  # the rows (and anything older) move out of the young generation
        started = time.perf_counter()
        result = evaluate_rows(rows, rules, AS_OF)
        times.append(time.perf_counter() - started)
        summary = result.summary
        started = time.perf_counter()
        gc.collect(0)  # what re-enabling the collector would cost now: one scan of the records
        catch_up = time.perf_counter() - started
        del result
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
        "collector_catch_up_s": round(catch_up, 3),
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
    print(
        f"a long-lived process that re-enables the cyclic collector then scans the new "
        f"records once: {catch_up:.2f} s more"
    )
    print(f"peak memory (max RSS of this process): {peak_mb:.0f} MB")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
