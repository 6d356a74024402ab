"""The embedded store across processes: two writers at once, a sweep killed mid-snapshot, and
a full disk (a file-size limit in a child process), none of which loses an acknowledged record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hotpatch.errors import StoreError
from hotpatch.ports.store import JournalRecord, VerdictQuery
from hotpatch.store.embedded import EmbeddedStore

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)

#: Shared by the child scripts: a machine row and a journal record by number.
PRELUDE = textwrap.dedent(
    """
    import json, sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from hotpatch.core.models import Action, State
    from hotpatch.errors import StoreConflictError, StoreError
    from hotpatch.ports.store import JournalRecord, VerdictRow
    from hotpatch.store.embedded import EmbeddedStore

    T0 = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)

    def row(n, state=State.COMPLIANT):
        return VerdictRow(
            id=f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{n}",
            name=f"vm{n}", subscription="s", resource_group="rg", os=None, ring=None, tags={},
            state=state, action=Action.NONE, eligible=True, reasons=(),
        )

    def record(n, request="r"):
        return JournalRecord.start(
            row(n).id, "2026-05", "install_hotpatch", client_request_id=request, now=T0
        )

    def say(**fields):
        print(json.dumps(fields), flush=True)
    """
)


def child(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines(process: subprocess.Popen[str], timeout: float = 120) -> list[dict[str, object]]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_two_processes_write_one_store_at_once_and_each_shared_key_is_won_once(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "store.db")
    script = """
        store = EmbeddedStore(Path(sys.argv[1]))
        me = int(sys.argv[2])
        won = []
        for n in range(150):
            store.journal_start(record(1000 * (me + 1) + n))  # this process's own
            try:
                store.journal_start(record(n, request=f"p{me}"))  # both race for these
                won.append(n)
            except StoreConflictError:
                pass
        say(won=won)
        store.close()
    """
    first, second = child(script, database, "0"), child(script, database, "1")
    won = [set(lines(first)[0]["won"]), set(lines(second)[0]["won"])]  # type: ignore[call-overload]
    assert won[0].isdisjoint(won[1])
    assert won[0] | won[1] == set(range(150))
    store = EmbeddedStore(Path(database))
    try:
        keys = {record.key for record in store.journal()}
        assert len(keys) == 150 + 2 * 150
    finally:
        store.close()


def test_a_sweep_killed_mid_snapshot_leaves_latest_unchanged(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    script = """
        import time
        store = EmbeddedStore(Path(sys.argv[1]), chunk_rows=50)
        writer = store.begin_snapshot("run-1", T0)
        writer.add(row(n) for n in range(120))
        writer.commit()
        writer = store.begin_snapshot("run-2", T0 + timedelta(days=1))
        for start in range(0, 10_000, 100):
            writer.add(row(n, State.NON_COMPLIANT) for n in range(start, start + 100))
            if start == 500:
                say(writing=True)
                time.sleep(60)
    """
    process = child(script, str(database))
    assert process.stdout is not None
    assert json.loads(process.stdout.readline()) == {"writing": True}
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    store = EmbeddedStore(database, chunk_rows=50)
    try:
        latest = store.latest_snapshot()
        assert latest is not None
        assert latest.run_id == "run-1"
        page = store.latest_verdicts(VerdictQuery(), page_size=1000)
        assert len(page.rows) == 120
        assert {row.state for row in page.rows} == {"compliant"}
        writer = store.begin_snapshot("run-3", T0 + timedelta(days=2))
        writer.add(page.rows[:10])
        assert writer.commit().previous == "run-1"
    finally:
        store.close()


@pytest.mark.skipif(sys.platform == "win32", reason="file-size limits are POSIX")
def test_a_full_disk_raises_store_error_and_loses_no_record_already_written(
    tmp_path: Path,
) -> None:
    database = tmp_path / "store.db"
    script = """
        import os, resource, signal
        # With the limit reached, a write fails with EFBIG instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        store = EmbeddedStore(Path(sys.argv[1]), chunk_rows=100)
        writer = store.begin_snapshot("run-1", T0)
        writer.add(row(n) for n in range(300))
        writer.commit()
        for n in range(50):
            store.journal_start(record(n))
            say(written=record(n).key)
        biggest = max(p.stat().st_size for p in Path(sys.argv[1]).parent.rglob("*") if p.is_file())
        resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + 64 * 1024, resource.RLIM_INFINITY))
        failed = {}
        n = 50
        while "journal" not in failed and n < 100_000:
            try:
                store.journal_start(record(n).model_copy(update={"detail": "x" * 2000}))
                say(written=record(n).key)
            except StoreError as error:
                failed["journal"] = str(error)
            n += 1
        try:
            writer = store.begin_snapshot("run-2", T0 + timedelta(days=1))
            writer.add(row(n, State.PENDING) for n in range(100_000))
            writer.commit()
        except StoreError as error:
            failed["snapshot"] = str(error)
        say(failed=failed)
    """
    said = lines(child(script, str(database)))
    written = [item["written"] for item in said if "written" in item]
    failed = said[-1]["failed"]
    assert set(failed) == {"journal", "snapshot"}  # type: ignore[arg-type]
    assert len(written) > 50
    store = EmbeddedStore(database)
    try:
        kept = {record.key for record in store.journal()}
        assert set(written) <= kept
        latest = store.latest_snapshot()
        assert latest is not None
        assert latest.run_id == "run-1"
        assert latest.counts.machines == 300
        assert store.journal_start(
            JournalRecord.start(
                "/subscriptions/s/vm-after", "2026-05", "assess", client_request_id="r", now=T0
            )
        )
    finally:
        store.close()


def test_a_store_that_cannot_be_opened_says_so_as_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot be opened"):
        EmbeddedStore(blocker / "store.db")


def test_a_snapshot_left_half_written_a_day_ago_is_cleared_by_the_next_commit(
    tmp_path: Path,
) -> None:
    store = EmbeddedStore(tmp_path / "store.db")
    try:
        dead = store.snapshot_dir / "run-dead.part"
        dead.write_bytes(b"half a sweep")
        two_days_ago = time.time() - 2 * 86400
        os.utime(dead, (two_days_ago, two_days_ago))
        (store.snapshot_dir / "run-live.part").write_bytes(b"another sweep, still writing")
        writer = store.begin_snapshot("run-1", T0)
        writer.commit()
        assert not dead.exists()
        assert (store.snapshot_dir / "run-live.part").exists()
    finally:
        store.close()
