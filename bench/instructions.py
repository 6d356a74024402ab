"""Benchmark: CPU instructions of one parse + evaluate + summarize, counted by valgrind.

Wall time on a shared machine moves by 10-30 % from run to run; the instructions a run executes
hardly move, so this is the figure to compare two commits by (check out each, run this in each).
It generates an estate of N machines, writes it as JSON, and runs `evaluate_rows` on the decoded
rows under `valgrind --tool=cachegrind` twice: once with the work and once without, so that
start-up, imports and decoding cancel out. Needs valgrind (`apt-get install valgrind`).

    .venv/bin/python bench/instructions.py [--machines 20000] [--seed 7] [--rows FILE]

`--rows` takes an export written elsewhere (e.g. by another commit's estate generator), to compare
commits on the very same rows. Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

#: The estate is observed a week after the 2026-05 release, as in `bench/evaluate.py`.
AS_OF = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)

#: What runs under valgrind: decode the rows, then evaluate them `runs` times (0 or 1).
_RUN = """
import json, sys
from datetime import datetime
from hotpatch.bulk import collector_off_for_good
from hotpatch.core.calendar import Calendar
from hotpatch.core.policy import Policy
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from hotpatch.service import Rules, evaluate_rows
collector_off_for_good()
releases = shipped_release_catalog()
rules = Rules(shipped_image_catalog(), releases, Calendar(releases), Policy())
as_of = datetime.fromisoformat(sys.argv[3])
rows = json.loads(open(sys.argv[1], "rb").read())
evaluate_rows(rows[:100], rules, as_of)  # imports and first-use caches, in both runs
for _ in range(int(sys.argv[2])):
    evaluate_rows(rows, rules, as_of)
"""
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _instructions(script: Path, rows: Path, runs: int) -> int:
    done = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            str(script),
            str(rows),
            str(runs),
            AS_OF.isoformat(),
        ],
        capture_output=True,
        text=True,
        check=False,
        # Dicts and sets lay out by string hashes: one seed makes runs repeat exactly.
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = _REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(
            f"bench/instructions.py: the run under valgrind failed (exit {done.returncode}):\n"
            f"{done.stderr[-2000:]}"
        )
    return int(found.group(1).replace(",", ""))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of machines")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=_positive, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows", type=Path, help="a raw export (JSON list of rows) to use instead")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("bench/instructions.py: valgrind is not installed (apt-get install valgrind)")
        return 2
    with tempfile.TemporaryDirectory(prefix="hotpatch-bench-") as folder:
        script = Path(folder, "run.py")
        script.write_text(_RUN)
        rows = args.rows
        if rows is None:
            from hotpatch.data import shipped_release_catalog
            from hotpatch.sandbox.estate import EstateSpec, generate_estate

            estate = generate_estate(
                EstateSpec(machines=args.machines, seed=args.seed, as_of=AS_OF),
                shipped_release_catalog(),
            )
            rows = Path(folder, "rows.json")
            rows.write_text(json.dumps(estate.rows()))
        try:
            decoded = json.loads(rows.read_bytes())
        except (OSError, ValueError) as error:
            print(f"bench/instructions.py: --rows {rows}: {error}", file=sys.stderr)
            return 2
        if not isinstance(decoded, list):
            print(f"bench/instructions.py: --rows {rows}: not a JSON list of rows", file=sys.stderr)
            return 2
        count = len(decoded)
        del decoded
        print(f"rows: {count:,} ({rows}); counting under valgrind (about a minute)...")
        work = _instructions(script, rows, 1) - _instructions(script, rows, 0)
    figures = {
        "machines": None if args.rows else args.machines,
        "rows": count,
        "instructions_m": round(work / 1e6),
        "instructions_per_row": round(work / count),
    }
    print(
        f"parse + evaluate + summarize: {work / 1e6:,.0f} M instructions "
        f"({work / count:,.0f} per row)"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
