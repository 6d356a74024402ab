"""Azurite, the storage emulator, started for the tests on free loopback ports.

`.ci/run` installs it into `.azurite/` with npm; if it is missing there and npm is present this
installs it (the same pinned version). Without node or npm the tests that need it skip, saying so.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The version `.ci/run` installs (keep the two in step).
AZURITE_VERSION = "3.37.0"
ROOT = Path(__file__).resolve().parents[2]
PREFIX = ROOT / ".azurite"
#: Azurite's well-known development account (public, documented; not a secret):
#: https://learn.microsoft.com/azure/storage/common/storage-use-azurite#connection-strings
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _azurite_binary() -> Path:
    binary = PREFIX / "node_modules" / ".bin" / "azurite"
    if binary.exists():
        return binary
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Azurite needs node and npm, which are not installed: Azure store not tested")
    subprocess.run(
        [
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(PREFIX),
            f"azurite@{AZURITE_VERSION}",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return binary


@pytest.fixture(scope="session")
def azurite_connection_string() -> Iterator[str]:
    """A connection string to a fresh Azurite (blob, queue and table), stopped after the
    session."""
    if shutil.which("node") is None:
        pytest.skip("Azurite needs node, which is not installed: Azure store not tested")
    binary = _azurite_binary()
    blob, queue, table = _free_port(), _free_port(), _free_port()
    workdir = tempfile.mkdtemp(prefix="azurite-")
    log = Path(workdir) / "azurite.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(binary),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(blob),
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                str(queue),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(table),
            ],
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while not (_listening(blob) and _listening(queue) and _listening(table)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Azurite did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{blob}/{ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{queue}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{table}/{ACCOUNT};"
        )
    finally:
        # Azurite shuts down on SIGINT; it may ignore SIGTERM for a long while.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
