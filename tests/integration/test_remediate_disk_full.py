"""The disk fills up under a remediation: new starts stop, and no record already written is lost.

The run happens in a child process whose file-size limit (RLIMIT_FSIZE) is the store's size
plus a little: the kernel refuses the write that would pass it (EFBIG, with SIGXFSZ ignored),
exactly as a full disk refuses it, and SQLite answers as it answers a full disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hotpatch.ports.store import JournalStatus
from hotpatch.store.embedded import EmbeddedStore

resource = pytest.importorskip("resource", reason="RLIMIT_FSIZE is a POSIX limit")

MACHINES = 200

CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    from contextlib import asynccontextmanager
    from pathlib import Path

    from hotpatch.fakes import FakePatchOperations, InMemoryInventory
    from hotpatch.ports.inventory import Scope
    from hotpatch.remediation import Remediation
    from hotpatch.store.embedded import EmbeddedStore
    from tests.unit.test_remediation import NOW, POLICY, Clock, behind
    from hotpatch.core.calendar import Calendar
    from hotpatch.data import shipped_release_catalog

    database, room, machines = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    store = EmbeddedStore(database)
    clock = Clock()
    operations = FakePatchOperations(clock=clock)
    sent = []

    class Recorded(FakePatchOperations):
        async def install(self, machines, parameters, **options):
            sent.extend(m.id for m in machines)
            return await super().install(machines, parameters, **options)

    operations = Recorded(clock=clock)

    @asynccontextmanager
    async def opener():
        yield operations

    remediation = Remediation(
        store=store, patch_operations=opener, installations=InMemoryInventory([]),
        scope=Scope(), policy=POLICY, calendar=Calendar(shipped_release_catalog()),
        clock=clock, who="disk-full test",
    )
    # From here on the files may grow by `room` bytes at most: then the write fails, as on a
    # full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    used = sum(p.stat().st_size for p in database.parent.iterdir() if p.is_file())
    resource.setrlimit(resource.RLIMIT_FSIZE, (used + room, used + room))
    run = remediation.run(lambda: [behind(f"vm-{n:03d}") for n in range(machines)], apply=True)
    print(json.dumps({"stopped": run.applied.stopped, "sent": sent}))
    """
)


def test_a_full_disk_stops_new_starts_and_every_record_written_survives(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    EmbeddedStore(database).close()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(database), "65536", str(MACHINES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["stopped"] is not None
    assert "the journal could not be written" in result["stopped"]
    assert "full" in result["stopped"] or "large" in result["stopped"]

    store = EmbeddedStore(database)
    try:
        journal = store.journal()
    finally:
        store.close()
    # Some were journalled and sent before the disk filled; not all.
    assert 0 < len(result["sent"]) < MACHINES
    # No request went without its record, and every record written is still there.
    recorded = {r.machine_id for r in journal}
    assert set(result["sent"]) <= recorded
    assert all(r.status in {JournalStatus.STARTED, JournalStatus.SUCCEEDED} for r in journal)
