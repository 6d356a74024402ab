"""`hotpatch serve`: the API over HOTPATCH_STORE with uvicorn, a real process on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from hotpatch.store import open_store
from tests.api.estate import fleet, store_snapshot

HOTPATCH = [sys.executable, "-m", "hotpatch.cli"]


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "store"
    store = open_store(str(directory))
    store_snapshot(store, "run-served", fleet(120))
    store.close()
    return directory


def environment(store_dir: Path) -> dict[str, str]:
    return {**os.environ, "HOTPATCH_STORE": str(store_dir)}


@contextmanager
def serving(
    store_dir: Path, *options: str
) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """`hotpatch serve` running, and what it said before serving (url, key); killed after the
    block if it still runs."""
    with subprocess.Popen(
        [*HOTPATCH, "serve", *options],
        env=environment(store_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            yield process, _said(process)
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)


def _said(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    said: dict[str, str] = {}
    for line in process.stdout:
        if line.startswith("hotpatch API listening on "):
            said["url"] = line.split()[-1]
        elif line.startswith("API key: "):
            said["key"] = line.removeprefix("API key: ").strip()
        elif line.startswith("OpenAPI document: "):
            return said
    raise AssertionError("serve stopped before it was serving")


def refusal(store_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HOTPATCH, "serve", *options],
        env=environment(store_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_prints_a_new_key_and_answers_with_it_on_loopback(store_dir: Path) -> None:
    with serving(store_dir) as (_, said):
        summary = httpx.get(
            said["url"] + "/api/compliance/summary", headers={"x-functions-key": said["key"]}
        )
        refused = httpx.get(said["url"] + "/api/compliance/summary")
        health = httpx.get(said["url"] + "/api/health")
    assert said["url"].startswith("http://127.0.0.1:")
    assert len(said["key"]) >= 32
    assert summary.json()["machines"] == 120
    assert refused.status_code == 401
    assert health.status_code == 200


@pytest.mark.parametrize(("sent", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_sigterm_stops_serve_cleanly_and_ctrl_c_is_an_interruption(
    store_dir: Path, sent: signal.Signals, code: int
) -> None:
    with serving(store_dir) as (process, said):
        assert httpx.get(said["url"] + "/api/health").status_code == 200
        process.send_signal(sent)
        assert process.wait(timeout=30) == code


def test_a_key_given_is_used_and_not_printed(store_dir: Path) -> None:
    key = "a-key-of-my-own-0123456789"
    with serving(store_dir, "--api-key", key) as (_, said):
        answer = httpx.get(said["url"] + "/api/runs", headers={"x-functions-key": key})
    assert said["key"] == "as given (--api-key)"
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--host", "0.0.0.0"], "needs an --api-key of your own"),
        (["--api-key", "short"], "at least 16 characters"),
        (["--port", "70000"], "at most 65,535"),
    ],
)
def test_serve_refuses_what_it_should_not_do_in_one_line(
    store_dir: Path, options: list[str], words: str
) -> None:
    done = refusal(store_dir, *options)
    assert done.returncode == 2
    assert words in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_busy_port_is_said_in_one_line(store_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = refusal(store_dir, "--port", str(port))
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
