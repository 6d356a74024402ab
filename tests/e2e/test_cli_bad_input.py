"""Bad input through the real `hotpatch` command: one line on stderr naming the problem, the
documented exit code, never a traceback, and never a half-written file left behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.builders import vm_row

HOTPATCH = Path(sys.executable).with_name("hotpatch")
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-export.json"
NOW = "2026-05-19T12:00Z"
#: A well-formed certificate that signs nothing the test talks to.
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def hotpatch(
    *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HOTPATCH_")}
    return subprocess.run(
        [str(HOTPATCH), *argv],
        env={**environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Case:
    """One bad input: the command line (with {tmp} for the test's directory), what it names."""

    argv: tuple[str, ...]
    code: int
    names: str
    env: dict[str, str] = field(default_factory=dict)
    #: Prepares files in the test's directory before the run.
    setup: Callable[[Path], None] | None = None


def _file(name: str, text: str | bytes) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        path = tmp / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")

    return make


def _dir(name: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).mkdir()


EVALUATE = ("evaluate", "--inventory", str(SAMPLE), "--now", NOW)
SWEEP = ("sweep", "--sandbox", "--machines", "20", "--report-dir", "{tmp}/reports")

CASES = {
    # --now, --from and --months outside the calendar's range
    "now before the calendar": Case(
        ("evaluate", "--inventory", str(SAMPLE), "--now", "0001-01-01"), 2, "outside the calendar"
    ),
    "now after the calendar": Case(
        ("evaluate", "--inventory", str(SAMPLE), "--now", "9999-12-31T23:59"),
        2,
        "outside the calendar",
    ),
    "now whose offset overflows": Case(
        ("evaluate", "--inventory", str(SAMPLE), "--now", "9999-12-31T23:59-05:00"),
        2,
        "outside the calendar",
    ),
    "now that is not a time": Case(
        ("evaluate", "--inventory", str(SAMPLE), "--now", "yesterday"), 2, "not an ISO-8601 time"
    ),
    "from after the calendar": Case(
        ("calendar", "--os", "ws2022", "--from", "9999-12"), 2, "outside the calendar"
    ),
    "from and months past the calendar": Case(
        ("calendar", "--os", "ws2022", "--from", "9990-06", "--months", "12"),
        2,
        "runs past the calendar",
    ),
    "months beyond reason": Case(
        ("calendar", "--os", "ws2022", "--months", "999999999"), 2, "--months: must be at most"
    ),
    # settings too large for their type, or not what they claim to be
    "a setting too large for its type": Case(
        EVALUATE,
        2,
        "HOTPATCH_ASSESSMENT_MAX_AGE_HOURS",
        env={"HOTPATCH_ASSESSMENT_MAX_AGE_HOURS": "99999999999999999999"},
    ),
    "a subscription that is not a GUID": Case(
        SWEEP, 2, "'prod' is not a subscription id", env={"HOTPATCH_SUBSCRIPTIONS": "prod"}
    ),
    "a management group that is not an id": Case(
        SWEEP,
        2,
        "HOTPATCH_MANAGEMENT_GROUPS",
        env={"HOTPATCH_MANAGEMENT_GROUPS": "root/child"},
    ),
    # --output and --report-dir that are directories, missing or full
    "output that is a directory": Case(
        (*EVALUATE, "--format", "json", "--output", "{tmp}/out"),
        2,
        "is a directory",
        setup=_dir("out"),
    ),
    "output under a file": Case(
        (*EVALUATE, "--format", "json", "--output", "{tmp}/file/out.json"),
        2,
        "cannot create",
        setup=_file("file", "x"),
    ),
    "output on a full disk": Case(
        (*EVALUATE, "--format", "csv", "--output", "/dev/full"), 2, "No space left on device"
    ),
    "output in a folder that holds no files": Case(
        (*EVALUATE, "--format", "json", "--output", "/proc/hotpatch-report.json"), 2, "cannot write"
    ),
    "export in a folder that holds no files": Case(
        ("sandbox", "export", "--machines", "5", "--output", "/proc/hotpatch-export.json"),
        2,
        "cannot write",
    ),
    "export on a full disk": Case(
        ("sandbox", "export", "--machines", "5", "--output", "/dev/full"),
        2,
        "No space left on device",
    ),
    "sweep output that is a directory": Case(
        (*SWEEP, "--format", "json", "--output", "{tmp}/out"),
        2,
        "is a directory",
        setup=_dir("out"),
    ),
    "report dir that is a file": Case(
        ("sweep", "--sandbox", "--machines", "20", "--report-dir", "{tmp}/file"),
        2,
        "--report-dir",
        setup=_file("file", "x"),
    ),
    "report dir on a device": Case(
        ("sweep", "--sandbox", "--machines", "20", "--report-dir", "/dev/full"),
        2,
        "not a directory",
    ),
    # the sandbox: ports, state directory, as-of, estate options, URL and CA
    "a port out of range": Case(("sandbox", "serve", "--port", "70000"), 2, "--port"),
    "a negative port": Case(("sandbox", "serve", "--port", "-1"), 2, "--port"),
    "a state dir that is a file": Case(
        ("sandbox", "serve", "--machines", "5", "--state-dir", "{tmp}/file"),
        2,
        "--state-dir",
        setup=_file("file", "x"),
    ),
    "an as-of before the catalog": Case(
        ("sandbox", "export", "--as-of", "2000-01-01", "--output", "{tmp}/x.json"),
        2,
        "precedes every release",
    ),
    "estate options without --sandbox": Case(
        ("sweep", "--machines", "5"), 2, "--machines: only with --sandbox"
    ),
    "a sandbox URL that is not https": Case(
        ("sweep", "--sandbox-url", "http://127.0.0.1:1", "--sandbox-ca", "{tmp}/ca.pem"),
        2,
        "expected https://HOST:PORT",
        setup=_file("ca.pem", PEM),
    ),
    "a sandbox URL with a bad port": Case(
        ("sweep", "--sandbox-url", "https://127.0.0.1:99999", "--sandbox-ca", "{tmp}/ca.pem"),
        2,
        "--sandbox-url",
        setup=_file("ca.pem", PEM),
    ),
    "a missing CA file": Case(
        ("sweep", "--sandbox-url", "https://127.0.0.1:1", "--sandbox-ca", "{tmp}/none.pem"),
        2,
        "no such file",
    ),
    "a CA file that is no certificate": Case(
        ("sweep", "--sandbox-url", "https://127.0.0.1:1", "--sandbox-ca", "{tmp}/ca.pem"),
        2,
        "not a PEM certificate",
        setup=_file("ca.pem", "hello"),
    ),
    "a CA file that does not parse": Case(
        ("sweep", "--sandbox-url", "https://127.0.0.1:1", "--sandbox-ca", "{tmp}/ca.pem"),
        2,
        "not a usable certificate",
        setup=_file("ca.pem", PEM),
    ),
    # input files
    "an export that is not there": Case(
        ("evaluate", "--inventory", "{tmp}/none.json"), 2, "cannot read"
    ),
    "JSON nested too deep": Case(
        ("evaluate", "--inventory", "{tmp}/deep.json"),
        2,
        "nested too deep",
        setup=_file("deep.json", "[" * 100_000 + "]" * 100_000),
    ),
    "an export that is not UTF-8": Case(
        ("evaluate", "--inventory", "{tmp}/latin.json"),
        2,
        "not UTF-8",
        setup=_file("latin.json", b'[{"name": "caf\xe9"}]'),
    ),
    "an image that is not a URN": Case(("check-image", "a:b"), 2, "not an image URN"),
    "an image with two words": Case(("check-image", "a", "b"), 2, "PUBLISHER OFFER SKU"),
}


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_bad_input_is_one_line_on_stderr_with_the_documented_exit_code(
    case: Case, tmp_path: Path
) -> None:
    if case.setup is not None:
        case.setup(tmp_path)
    argv = [part.replace("{tmp}", str(tmp_path)) for part in case.argv]
    done = hotpatch(*argv, env=case.env, cwd=tmp_path)
    line = one_line(done.stderr)
    assert done.returncode == case.code, done.stderr
    assert line.startswith("hotpatch: ")
    assert case.names in line
    # Nothing was half-written: no temporary file, no report, no output.
    assert not list(tmp_path.rglob("*.part"))
    assert not list(tmp_path.rglob("sweep-*.json"))


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_serving_on_a_busy_port_says_so_in_one_line(busy_port: int, tmp_path: Path) -> None:
    done = hotpatch("sandbox", "serve", "--machines", "5", "--port", str(busy_port), cwd=tmp_path)
    assert done.returncode == 2
    assert "address already in use" in one_line(done.stderr)


def export_of(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_text_that_cannot_be_encoded_is_written_escaped_not_a_crash(tmp_path: Path) -> None:
    # An ASCII terminal cannot show "é"; a lone surrogate is valid JSON but no valid UTF-8.
    # An old build: the machine needs action, so the table lists it by name.
    accented = export_of(tmp_path, [vm_row("vm-caf\u00e9", build="10.0.20348.2582")])
    done = hotpatch(
        "evaluate", "--inventory", str(accented), "--now", NOW, env={"PYTHONIOENCODING": "ascii"}
    )
    assert done.returncode == 0, done.stderr
    assert "vm-caf\\xe9" in done.stdout
    surrogate = vm_row("vm-odd", build="10.0.20348.2582")
    surrogate["tags"] = {"hotpatch-ring": "ring-\ud800"}
    odd = export_of(tmp_path, [surrogate])
    written = tmp_path / "report.csv"
    for output in ((), ("--output", str(written))):
        done = hotpatch(
            "evaluate", "--inventory", str(odd), "--now", NOW, "--format", "csv", *output
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    assert "vm-odd" in written.read_text(encoding="utf-8")


def test_the_same_machine_twice_is_one_machine_and_the_duplicate_is_said(tmp_path: Path) -> None:
    row = vm_row("vm-twice")
    shouted = {**row, "id": str(row["id"]).upper()}
    path = export_of(tmp_path, [row, shouted])
    done = hotpatch("evaluate", "--inventory", str(path), "--now", NOW, "--format", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["summary"]["total"] == 1
    assert document["duplicate_rows"] == 1
    table = hotpatch("evaluate", "--inventory", str(path), "--now", NOW)
    assert "duplicate machine row" in table.stdout


def test_an_export_with_a_skip_token_and_ignored_rows_says_so_in_the_table(tmp_path: Path) -> None:
    path = tmp_path / "page.json"
    document = {"data": [vm_row("vm-1"), {"type": "microsoft.network/networkinterfaces"}]}
    path.write_text(json.dumps({**document, "$skipToken": "ew0KICAiJGlkIjogIjEiDQp9"}))
    done = hotpatch("evaluate", "--inventory", str(path), "--now", NOW)
    assert done.returncode == 0, done.stderr
    assert "$skipToken" in done.stdout
    assert "1 row(s) ignored" in done.stdout
    as_json = json.loads(
        hotpatch("evaluate", "--inventory", str(path), "--now", NOW, "--format", "json").stdout
    )
    assert as_json["incomplete_export"] is True


def interrupt_when(process: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)


def test_ctrl_c_stops_the_sandbox_with_130_and_one_line(tmp_path: Path) -> None:
    out = tmp_path / "serve.out"
    with out.open("w") as sink:
        process = subprocess.Popen(
            [str(HOTPATCH), "sandbox", "serve", "--machines", "20", "--state-dir", str(tmp_path)],
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
        )
        interrupt_when(process, lambda: "hotpatch sweep --sandbox-url" in out.read_text())
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert one_line(stderr) == "hotpatch: error: interrupted"
    printed = out.read_text()
    url = printed.split("listening on ")[1].split()[0]
    assert f"--sandbox-url {url} --sandbox-ca {tmp_path / 'ca.pem'} --now" in printed


def test_ctrl_c_during_a_sweep_leaves_no_report_and_no_output(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    process = subprocess.Popen(
        [
            str(HOTPATCH),
            "sweep",
            "--sandbox",
            "--machines",
            "20000",
            "--format",
            "json",
            "--output",
            str(output),
            "--report-dir",
            str(tmp_path / "reports"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupted once it is under way (the sandbox it started is said), however loaded the
    # machine is: a fixed delay could land before the command started, or after it ended.
    assert process.stderr is not None
    first = process.stderr.readline()
    assert first.startswith("sandbox: "), first
    process.send_signal(signal.SIGINT)
    stdout, rest = process.communicate(timeout=120)
    stderr = first + rest
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "hotpatch: error: interrupted"
    assert stdout == ""
    assert not output.exists()
    assert not list(tmp_path.rglob("*.json"))
    assert not list(tmp_path.rglob("*.part"))
