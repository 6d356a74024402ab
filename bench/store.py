"""Benchmark: the embedded compliance store under a 100,000-machine sweep.

Prints the write throughput of a snapshot of N machines (the first sweep, where every machine
is new, and a steady-state sweep where 2% changed state), its size on disk, the time to page
through it, and the peak memory (max RSS) of a whole sweep streamed into the store. That sweep
is the service's own (`hotpatch.service.sweep` with a `Recording`, keeping no verdicts), run in
a child process over an inventory that reads the estate's pages from a file one at a time
(1000 machines a page, as Resource Graph serves them): it judges each page, adds its verdicts
to the snapshot writer, renews the lease, and commits at the end. Children measure the same
sweep without the store (the baseline), with a previous snapshot to diff against (2% of the
VMs deallocated since), and with the `hotpatch sweep` report streamed beside it as the command
writes it. The goal is under 512 MB (the smallest Flex Consumption instance). Ends with one
JSON line of the figures; asserts nothing.

    .venv/bin/python bench/store.py [--machines 100000] [--seed 7]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hotpatch import files
from hotpatch.bulk import collector_paused
from hotpatch.core.compliance import Evaluator
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import State, Verdict
from hotpatch.fakes import InMemoryInventory
from hotpatch.ports import InventoryPager, InventoryStats, RawRow, Scope
from hotpatch.ports.store import VerdictQuery, VerdictRow
from hotpatch.report import ActionList, StreamedReport, report_json
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from hotpatch.sandbox.session import default_as_of
from hotpatch.service import Recording, Rules, Sweep, sweep
from hotpatch.settings import Settings
from hotpatch.store.embedded import EmbeddedStore
from hotpatch.store.snapshots import previous_index

PAGE = 1000


def _rss_mb() -> float:
    """Peak RSS of this process. Linux keeps ru_maxrss across exec, so a child started by a
    big parent would report the parent's peak: VmHWM (this address space's own) when there."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def _judged_pages(pages: Path, rules: Rules) -> Iterator[list[VerdictRow]]:
    """The inventory's pages, one in memory at a time, judged into store rows."""
    as_of = default_as_of(rules.releases)
    evaluator = Evaluator(rules.images, rules.calendar, rules.policy, as_of)
    with pages.open(encoding="utf-8") as lines:
        for line in lines:
            with collector_paused():
                verdicts = evaluator.evaluate_all(parse_rows(json.loads(line)))
                rows = [VerdictRow.from_verdict(verdict) for verdict in verdicts]
            yield rows


def write_pages(pages: Path, machines: int, seed: int) -> None:
    """The estate's inventory, page by page, as JSON lines (in a child: it is big)."""
    rules = Rules.from_settings(Settings())
    estate = generate_estate(
        EstateSpec(
            machines=machines, subscriptions=8, seed=seed, as_of=default_as_of(rules.releases)
        ),
        rules.releases,
    )
    with pages.open("w", encoding="utf-8") as out:
        for page in InMemoryInventory(estate.rows(), PAGE).list_machines(Scope()).by_page():
            out.write(json.dumps(page) + "\n")


class PagedFile:
    """The inventory port over a file of pages (JSON lines), read one page at a time; a later
    sweep sees 2% of the VMs deallocated (`changed`)."""

    def __init__(self, pages: Path, *, changed: bool = False) -> None:
        self.pages = pages
        self.changed = changed

    def list_machines(self, scope: Scope) -> InventoryPager:
        def source(stats: InventoryStats) -> Iterator[list[RawRow]]:
            with self.pages.open(encoding="utf-8") as lines:
                for line in lines:
                    page: list[RawRow] = json.loads(line)
                    if self.changed:
                        for row in page:
                            _deallocate_some(row)
                    stats.pages += 1
                    stats.requests += 1
                    stats.rows += len(page)
                    yield page

        return InventoryPager(source)


def _deallocate_some(row: RawRow) -> None:
    if str(row.get("type", "")).casefold() != "microsoft.compute/virtualmachines":
        return
    if zlib.crc32(str(row.get("id", "")).casefold().encode()) % 50:
        return
    view = row.setdefault("properties", {}).setdefault("extended", {})
    view.setdefault("instanceView", {})["powerState"] = {"code": "PowerState/deallocated"}


def child(mode: str, pages: Path, directory: Path, day: int) -> int:
    """One sweep in this process, through `hotpatch.service.sweep`; prints its peak memory."""
    rules = Rules.from_settings(Settings())
    as_of = default_as_of(rules.releases) + timedelta(days=day)
    inventory = PagedFile(pages, changed=day > 0)
    started = time.perf_counter()
    if mode == "baseline":
        result = sweep(inventory, Scope(), rules, now=as_of, keep_verdicts=False)
    else:
        store = EmbeddedStore(directory / "store.db", directory / "snapshots")
        record = Recording(store, "bench", lambda: datetime.now(UTC))
        if mode == "report":
            result = _sweep_with_report(inventory, rules, as_of, record, directory)
        else:
            result = sweep(inventory, Scope(), rules, now=as_of, keep_verdicts=False, record=record)
        assert result.snapshot is not None
        store.close()
    print(
        json.dumps(
            {
                "machines": result.evaluation.summary.total,
                "seconds": round(time.perf_counter() - started, 2),
                "max_rss_mb": round(_rss_mb()),
            }
        )
    )
    return 0


def _sweep_with_report(
    inventory: PagedFile, rules: Rules, as_of: datetime, record: Recording, directory: Path
) -> Sweep:
    """The sweep as `hotpatch sweep` runs it: the report streamed to a file beside the store,
    and only the machines the table shows kept."""
    with StreamedReport(directory) as report:
        needing = ActionList(15)

        def to_report(verdicts: Sequence[Verdict]) -> None:
            report.add(verdicts)
            needing.add(verdicts)

        result = sweep(
            inventory,
            Scope(),
            rules,
            now=as_of,
            on_verdicts=to_report,
            keep_verdicts=False,
            record=record,
        )
        header = report_json((), result.evaluation.summary, as_of, sweep=result.summary())
        files.write_new_with(
            directory, "sweep", ".json", lambda out: report.write_json(out, header)
        )
    return result


def _run_child(*args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return result


def _write(store: EmbeddedStore, run_id: str, rows: list[VerdictRow], day: int) -> float:
    as_of = default_as_of(Rules.from_settings(Settings()).releases) + timedelta(days=day)
    started = time.perf_counter()
    writer = store.begin_snapshot(run_id, as_of)
    for start in range(0, len(rows), PAGE):
        writer.add(rows[start : start + PAGE])
    writer.commit()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "PAGES", "DIR", "DAY"))
    parser.add_argument("--pages", nargs=3, metavar=("FILE", "MACHINES", "SEED"))
    args = parser.parse_args()
    if args.pages:
        write_pages(Path(args.pages[0]), int(args.pages[1]), int(args.pages[2]))
        return 0
    if args.child:
        mode, pages, directory, day = args.child
        return child(mode, Path(pages), Path(directory), int(day))

    with tempfile.TemporaryDirectory() as work:
        pages = Path(work) / "pages.jsonl"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--pages", str(pages), str(args.machines), str(args.seed)],
            check=True,
        )
        print(
            f"estate: {args.machines:,} machines in pages of {PAGE} "
            f"(generated in {time.perf_counter() - started:.1f} s)",
            flush=True,
        )
        # The sweeps first, while this process is small: a child starts as a copy of it.
        sweep_dir = Path(work) / "sweep"
        baseline = _run_child("baseline", str(pages), str(sweep_dir), "0")
        first = _run_child("store", str(pages), str(sweep_dir), "0")
        second = _run_child("store", str(pages), str(sweep_dir), "1")
        reported = _run_child("report", str(pages), str(sweep_dir), "2")

        rules = Rules.from_settings(Settings())
        rows = [row for page in _judged_pages(pages, rules) for row in page]
        changed = [
            dataclasses.replace(row, state=State.PENDING) if number % 50 == 0 else row
            for number, row in enumerate(rows)
        ]

        store_dir = Path(work) / "throughput"
        store = EmbeddedStore(store_dir / "store.db", store_dir / "snapshots")
        first_s = _write(store, "first", rows, 0)
        steady_s = _write(store, "steady", changed, 1)
        snapshot_bytes = (store_dir / "snapshots" / "steady.snap").stat().st_size
        with closing(sqlite3.connect(store_dir / "store.db")) as db:
            transitions = db.execute("SELECT count(*) FROM transitions").fetchone()[0]
        started = time.perf_counter()
        page = store.latest_verdicts(page_size=PAGE)
        walked = len(page.rows)
        while page.continuation:
            page = store.latest_verdicts(page_size=PAGE, continuation=page.continuation)
            walked += len(page.rows)
        walk_s = time.perf_counter() - started
        started = time.perf_counter()
        pending = store.latest_verdicts(
            VerdictQuery(states=frozenset({State.PENDING})), page_size=PAGE
        )
        filtered_s = time.perf_counter() - started
        started = time.perf_counter()
        store.verdict(rows[-1].id)  # builds the index of the latest snapshot
        lookup_first_s = time.perf_counter() - started
        started = time.perf_counter()
        for row in rows[:: len(rows) // 100]:
            store.verdict(row.id)
        lookup_ms = (time.perf_counter() - started) / len(rows[:: len(rows) // 100]) * 1000
        latest = store.latest_snapshot()
        assert latest is not None
        tracemalloc.start()
        index = previous_index(latest, store._reader(latest))
        index_mb = tracemalloc.get_traced_memory()[0] / 1e6
        tracemalloc.stop()
        del index
        store.close()
        db_bytes = sum(p.stat().st_size for p in store_dir.glob("store.db*"))
        print(
            f"snapshot write: first sweep {len(rows) / first_s:,.0f} machines/s ({first_s:.2f} s, "
            f"every machine new), steady sweep {len(rows) / steady_s:,.0f} machines/s "
            f"({steady_s:.2f} s, 2% changed)"
        )
        print(
            f"snapshot size: {snapshot_bytes / 1e6:.1f} MB ({snapshot_bytes / len(rows):.0f} "
            f"bytes a machine); SQLite {db_bytes / 1e6:.1f} MB holding {transitions:,} transitions"
        )
        print(
            f"one machine's verdict: {lookup_first_s:.2f} s for the first (indexes the snapshot), "
            f"then {lookup_ms:.1f} ms each"
        )
        print(f"diff index of the previous snapshot: {index_mb:.1f} MB for {len(rows):,} machines")
        print(
            f"reading: every page of {walked:,} rows in {walk_s:.2f} s; the first page of "
            f"{len(pending.rows)} pending machines in {filtered_s:.2f} s"
        )

    print(
        f"peak memory of a {args.machines:,}-machine sweep (max RSS, child process): "
        f"{first['max_rss_mb']:.0f} MB into an empty store, {second['max_rss_mb']:.0f} MB with "
        f"a previous snapshot to diff against, {reported['max_rss_mb']:.0f} MB with the "
        f"report streamed too; {baseline['max_rss_mb']:.0f} MB judging the same pages without "
        "a store (goal: under 512 MB)"
    )
    figures = {
        "machines": len(rows),
        "first_write_machines_per_s": round(len(rows) / first_s),
        "steady_write_machines_per_s": round(len(rows) / steady_s),
        "snapshot_bytes_per_machine": round(snapshot_bytes / len(rows)),
        "transitions": transitions,
        "page_walk_s": round(walk_s, 2),
        "diff_index_mb": round(index_mb, 1),
        "verdict_lookup_ms": round(lookup_ms, 1),
        "sweep_first_max_rss_mb": first["max_rss_mb"],
        "sweep_steady_max_rss_mb": second["max_rss_mb"],
        "sweep_baseline_max_rss_mb": baseline["max_rss_mb"],
        "sweep_report_max_rss_mb": reported["max_rss_mb"],
        "sweep_steady_s": second["seconds"],
        "goal_max_rss_mb": 512,
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    print(
        f"load average while measuring: {figures['load_average_1m']} (the figures are wall times)"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
