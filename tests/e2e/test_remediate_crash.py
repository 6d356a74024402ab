"""`hotpatch remediate` killed outright (SIGKILL) mid-run, and run again.

Killed before a request left, while its operations were running, or while their outcomes were
being written: the next run settles the journal against Azure (the sandbox), and in the end
every machine was asked to install the release exactly once, none is forgotten, and the
journal and the sandbox's request log agree request by request.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hotpatch.ports.store import JournalRecord, JournalStatus
from hotpatch.sandbox.arm import Quota
from hotpatch.sandbox.estate import Estate
from hotpatch.sandbox.request_log import LoggedRequest, read_requests
from hotpatch.sandbox.server import Sandbox, SandboxConfig
from hotpatch.store import open_store
from tests.integration.conftest import ManualClock, vm_row

pytestmark = pytest.mark.sandbox

HOTPATCH = Path(sys.executable).with_name("hotpatch")
#: The day after May 2026's Patch Tuesday, inside the window.
NOW = datetime(2026, 5, 13, 0, 30, tzinfo=UTC)
MACHINES = 6
POLICY = """
mode: remediate
install_pending: true
rings:
  - name: ring0
    max_concurrent: 100
default_window: {offset_days: 1, start: "00:00", time_zone: UTC, duration: 3h}
"""


def _estate() -> Estate:
    rows = []
    for n in range(MACHINES):
        row = vm_row(f"vm-{n}", os_version="10.0.20348.5020")  # the April 2026 baseline
        row["tags"] = {"hotpatch-ring": "ring0"}
        rows.append(row)
    return Estate(rows, [], [])


class Scene:
    """A sandbox that paces writes (three a second) and runs installs for three seconds, a
    store, and the command run against them."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.clock = ManualClock(now_at=NOW)
        self.policy = home / "policy.yaml"
        self.policy.write_text(POLICY, encoding="utf-8")
        self.store_dir = home / "store"
        config = SandboxConfig(
            state_dir=home / "sandbox",
            write_quota=Quota(3, 1.0),
            operation_latency_seconds=3.0,
            operation_retry_after_seconds=1,
        )
        self.sandbox = Sandbox(config, _estate(), clock=self.clock).start()

    def command(self, now: datetime) -> list[str]:
        return [
            str(HOTPATCH),
            "remediate",
            "--policy",
            str(self.policy),
            "--sandbox-url",
            self.sandbox.base_url,
            "--sandbox-ca",
            str(self.sandbox.ca_path),
            "--now",
            now.isoformat(),
            "--yes",
            "--format",
            "json",
        ]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPATCH_")}
        return {**env, "HOTPATCH_STORE": str(self.store_dir)}

    def run(self, now: datetime) -> subprocess.CompletedProcess[str]:
        self.clock.now_at = now
        return subprocess.run(
            self.command(now),
            env=self.environment(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def run_and_kill(self, now: datetime, when: Callable[[Scene], bool]) -> None:
        """Start the command and SIGKILL it the moment `when` holds (checked every 20 ms)."""
        self.clock.now_at = now
        process = subprocess.Popen(
            self.command(now),
            env=self.environment(),
            cwd=self.home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        try:
            while not when(self):
                if process.poll() is not None:
                    pytest.fail(f"the run ended before the kill point: {process.stderr.read()}")  # type: ignore[union-attr]
                if time.monotonic() > deadline:
                    pytest.fail("the kill point was never reached")
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait(timeout=30)
            if process.stderr is not None:
                process.stderr.close()
        assert process.returncode == -signal.SIGKILL

    def journal(self) -> list[JournalRecord]:
        if not self.store_dir.exists():
            return []
        store = open_store(str(self.store_dir))
        try:
            return [r for r in store.journal() if r.action.startswith("install")]
        finally:
            store.close()

    def installs(self) -> list[LoggedRequest]:
        return [
            r
            for r in read_requests(self.sandbox.state_dir)
            if r.operation == "installPatches" and r.accepted
        ]


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    made = Scene(tmp_path)
    try:
        # The machines are assessed first (nothing is installed on a machine never assessed).
        assessed = made.run(NOW - timedelta(minutes=10))
        assert assessed.returncode == 0, assessed.stderr
        assert made.installs() == []
        yield made
    finally:
        made.sandbox.stop()


def before_the_requests(scene: Scene) -> bool:
    """Installs are journalled and some of their requests have not left yet (writes are paced)."""
    started = [r for r in scene.journal() if r.status is JournalStatus.STARTED]
    return len(started) > len(scene.installs()) > 0


def while_they_run(scene: Scene) -> bool:
    """Every request was accepted and none has finished."""
    return len(scene.installs()) == MACHINES and all(
        r.status is JournalStatus.STARTED for r in scene.journal()
    )


def while_outcomes_are_written(scene: Scene) -> bool:
    """Some outcomes are journalled, not all."""
    done = [r for r in scene.journal() if r.status is JournalStatus.SUCCEEDED]
    return 0 < len(done) < MACHINES


@pytest.mark.parametrize(
    ("kill_point", "some_sent_again"),
    [(before_the_requests, True), (while_they_run, False), (while_outcomes_are_written, False)],
    ids=["before the request", "while polling", "while journalling outcomes"],
)
def test_a_run_killed_mid_way_and_run_again_installs_each_machine_once_and_forgets_none(
    scene: Scene, kill_point: Callable[[Scene], bool], some_sent_again: bool
) -> None:
    scene.run_and_kill(NOW, kill_point)

    # An hour later (past the 30 minutes after which an unseen request is known to be lost),
    # and again while the journal still holds operations the sandbox was running when it looked.
    for hours in range(1, 4):
        again = scene.run(NOW + timedelta(hours=hours))
        assert again.returncode == 0, again.stderr
        if all(r.settled for r in scene.journal()):
            break

    requests = Counter(r.machine_key for r in scene.installs())
    assert len(requests) == MACHINES
    assert set(requests.values()) == {1}, f"a machine was asked twice: {requests}"
    journal = {r.machine_id.casefold(): r for r in scene.journal()}
    assert {r.status for r in journal.values()} == {JournalStatus.SUCCEEDED}
    # Only requests that never left are sent again, under their journalled key and id.
    assert any(r.requests == 2 for r in journal.values()) is some_sent_again
    # The journal and the request log agree: each record's id is its request's.
    assert {key: record.client_request_id for key, record in journal.items()} == {
        r.machine_key: r.client_request_id for r in scene.installs()
    }
