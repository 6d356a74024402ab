"""`hotpatch catalog update`: the release catalog refreshed from Microsoft's release page."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import hotpatch.data
from hotpatch.catalog_update import SHIPPED, load_base, plan_update, read_source, update_catalog
from hotpatch.cli import main
from hotpatch.core.calendar import YearMonth
from hotpatch.core.models import Channel, OsFamily
from hotpatch.data import load_release_catalog
from hotpatch.errors import ReleasePageError
from hotpatch.export import write_rows
from tests.builders import assessment_row, vm_id, vm_row

PAGES = Path(__file__).parent.parent / "fixtures" / "release-info"
OLD_PAGE = str(PAGES / "through-2026-05.html")  # what the shipped catalog holds, and more
NEW_PAGE = str(PAGES / "through-2026-07.html")  # June and July 2026 releases besides
WS2025_AZURE_EDITION = ("MicrosoftWindowsServer", "WindowsServer", "2025-datacenter-azure-edition")


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, catalog: Path | None = None
) -> tuple[int, str, str]:
    environ = {"HOTPATCH_RELEASE_CATALOG": str(catalog)} if catalog else {}
    code = main(list(argv), environ=environ)
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("hotpatch: error:")]
    assert len(errors) == 1, err
    return errors[0]


# --- showing and writing ------------------------------------------------------------------


def test_without_write_it_shows_the_difference_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    catalog = tmp_path / "releases.json"
    code, out, err = run(capsys, "catalog", "update", "--from", NEW_PAGE, catalog=catalog)
    assert code == 0
    assert "KB5990725" in out  # the WS2025 baseline of July 2026, new on the page
    assert "covers through 2026-05 -> 2026-07" in out
    assert "run again with --write" in err
    assert not catalog.exists()


def test_write_creates_the_operator_catalog_from_the_page(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    catalog = tmp_path / "releases.json"
    code, _, err = run(capsys, "catalog", "update", "--from", NEW_PAGE, "--write", catalog=catalog)
    assert code == 0, err
    assert f"wrote {catalog}" in err
    loaded = load_release_catalog(catalog)
    assert loaded.covers_through == YearMonth(2026, 7)
    july = loaded.monthly(OsFamily.WS2025, "2026-07")
    assert july is not None
    assert (july.kb, july.build, july.kind) == ("KB5990725", "26100.33150", "baseline")
    regular = loaded.exact(OsFamily.WS2022, 5250)
    assert regular is not None
    assert (regular.kb, regular.channel, regular.kind) == ("KB5990623", Channel.REGULAR, None)
    # The program dates and the notes travel along; the page's address is a source.
    document = json.loads(catalog.read_text(encoding="utf-8"))
    assert {p["os"] for p in document["programs"]} == {"ws2022", "ws2025"}
    assert "$comment" in document
    assert document["sources"][0] == (
        "https://learn.microsoft.com/windows/release-health/windows-server-release-info"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["releases.json"]  # no temporary left


def test_updating_again_from_the_same_page_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    catalog = tmp_path / "releases.json"
    assert run(capsys, "catalog", "update", "--from", NEW_PAGE, "--write", catalog=catalog)[0] == 0
    before = catalog.read_bytes()
    code, out, _ = run(
        capsys,
        "catalog",
        "update",
        "--from",
        NEW_PAGE,
        "--write",
        "--format",
        "json",
        catalog=catalog,
    )
    assert code == 0
    counts = json.loads(out)["counts"]
    assert (counts["added"], counts["completed"], counts["conflicts"]) == (0, 0, 0)
    assert counts["unchanged"] > 0
    assert catalog.read_bytes() == before


def test_json_output_is_only_the_document_with_counts_and_rows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    catalog = tmp_path / "releases.json"
    # An operator catalog that had not recorded the KBs of four regular updates.
    shipped = json.loads((Path(hotpatch.data.__file__).parent / "releases.json").read_text())
    for row in shipped["releases"]:
        if row["build"] in {"20348.4773", "20348.4893", "26100.32370", "26100.32522"}:
            row["kb"] = None
    catalog.write_text(json.dumps(shipped), encoding="utf-8")
    code, out, err = run(
        capsys, "catalog", "update", "--from", NEW_PAGE, "--format", "json", catalog=catalog
    )
    assert code == 0
    document = json.loads(out)  # nothing but the document on stdout
    assert document["written"] is False
    assert document["covers_through"] == {"before": "2026-05", "after": "2026-07"}
    counts = document["counts"]
    assert counts["added"] == len(document["added"])
    assert counts["unchanged"] == len(document["unchanged"])
    assert counts["conflicts"] == len(document["conflicts"]) == 0
    # The four missing KBs are filled, and said.
    assert sorted(row["kb"] for row in document["completed"]) == [
        "KB5075899",
        "KB5075906",
        "KB5078740",
        "KB5078766",
    ]
    assert "hotpatch: reading" in err


def test_the_horizon_never_moves_backwards(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    catalog = tmp_path / "releases.json"
    assert run(capsys, "catalog", "update", "--from", NEW_PAGE, "--write", catalog=catalog)[0] == 0
    code, out, _ = run(
        capsys,
        "catalog",
        "update",
        "--from",
        OLD_PAGE,
        "--write",
        "--format",
        "json",
        catalog=catalog,
    )
    assert code == 0
    assert json.loads(out)["covers_through"] == {"before": "2026-07", "after": "2026-07"}
    assert load_release_catalog(catalog).covers_through == YearMonth(2026, 7)


@pytest.mark.parametrize(
    ("ws2022_last_month", "covers_through"),
    [
        (None, "2026-05"),  # WS2022 has no June or July release on this page: held back
        ("2026-05", "2026-07"),  # WS2022's program ended in May: it holds nothing back
    ],
)
def test_an_os_whose_program_ended_does_not_hold_the_horizon_back(
    ws2022_last_month: str | None, covers_through: str
) -> None:
    lines = Path(NEW_PAGE).read_text(encoding="utf-8").splitlines()
    page = "\n".join(
        line
        for line in lines
        if not any(b in line for b in ("20348.5190", "20348.5250", "20348.53"))
    )
    label, document = load_base([])
    assert label == SHIPPED
    for program in document["programs"]:
        if program["os"] == "ws2022":
            program["last_month"] = ws2022_last_month
    update = plan_update(page, label, document, "test page")
    assert (update.covers_before, update.covers_after) == ("2026-05", covers_through)


def test_output_names_the_file_to_write_when_no_catalog_is_configured(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "mine.json"
    code, _, _ = run(
        capsys, "catalog", "update", "--from", OLD_PAGE, "--write", "--output", str(target)
    )
    assert code == 0
    assert load_release_catalog(target).covers_through == YearMonth(2026, 5)


def test_write_without_a_file_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "catalog", "update", "--from", NEW_PAGE, "--write")
    assert code == 2
    assert "HOTPATCH_RELEASE_CATALOG or pass --output" in _one_error_line(err)


# --- nothing half-read, nothing silently changed -------------------------------------------


def test_a_conflict_with_an_existing_row_is_reported_and_nothing_is_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    catalog = tmp_path / "releases.json"
    assert run(capsys, "catalog", "update", "--from", OLD_PAGE, "--write", catalog=catalog)[0] == 0
    before = catalog.read_bytes()
    conflict = str(PAGES / "conflict.html")
    code, out, err = run(
        capsys,
        "catalog",
        "update",
        "--from",
        conflict,
        "--write",
        "--format",
        "json",
        catalog=catalog,
    )
    assert code == 2
    line = _one_error_line(err)
    assert "1 row(s) of the page contradict" in line
    assert "KB5087423" in line
    assert "build: catalog 26100.32772, page 26100.32774" in line
    (reported,) = json.loads(out)["conflicts"]
    assert reported["catalog"]["build"] == "26100.32772"
    assert reported["page"]["build"] == "26100.32774"
    assert catalog.read_bytes() == before


def test_a_conflict_with_the_shipped_catalog_is_reported_in_the_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    catalog = tmp_path / "releases.json"
    code, out, err = run(
        capsys,
        "catalog",
        "update",
        "--from",
        str(PAGES / "conflict.html"),
        "--write",
        catalog=catalog,
    )
    assert code == 2
    assert "Conflicts (1)" in out
    assert "shipped" in _one_error_line(err)
    assert not catalog.exists()


def test_a_changed_layout_is_refused_naming_the_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    catalog = tmp_path / "releases.json"
    changed = str(PAGES / "changed-layout.html")
    code, out, err = run(capsys, "catalog", "update", "--from", changed, "--write", catalog=catalog)
    assert code == 2
    assert out == ""
    line = _one_error_line(err)
    assert "hotpatch calendar › Windows Server 2025 (OS build 26100) › Calendar year 2026" in line
    assert "no column 'Type'" in line
    assert not catalog.exists()


def test_an_invalid_configured_catalog_is_named_and_left_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    catalog = tmp_path / "releases.json"
    catalog.write_text('{"releases": [{"os": "ws2022"}]}', encoding="utf-8")
    code, _, err = run(capsys, "catalog", "update", "--from", NEW_PAGE, "--write", catalog=catalog)
    assert code == 2
    assert str(catalog) in _one_error_line(err)
    assert catalog.read_text(encoding="utf-8") == '{"releases": [{"os": "ws2022"}]}'


def test_a_symbolic_link_in_place_of_the_catalog_is_not_followed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    assert (
        run(capsys, "catalog", "update", "--from", OLD_PAGE, "--write", catalog=elsewhere)[0] == 0
    )
    kept = elsewhere.read_bytes()
    catalog = tmp_path / "releases.json"
    catalog.symlink_to(elsewhere)
    code, _, err = run(capsys, "catalog", "update", "--from", NEW_PAGE, "--write", catalog=catalog)
    assert code == 2
    assert "a symbolic link" in _one_error_line(err)
    assert elsewhere.read_bytes() == kept
    assert catalog.is_symlink()


def test_a_missing_page_file_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "catalog", "update", "--from", "/nonexistent/page.html")
    assert code == 2
    assert "/nonexistent/page.html: cannot read" in _one_error_line(err)


@pytest.mark.parametrize("source", ["ftp://example.com/page.html", "file:///etc/passwd"])
def test_only_http_https_and_file_paths_are_read(source: str) -> None:
    with pytest.raises(ReleasePageError, match="only http, https and file paths"):
        read_source(source)


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.html"
    big.write_bytes(b"<html>" + b" " * 2048)
    with pytest.raises(ReleasePageError, match="larger than 1,024 bytes"):
        read_source(str(big), limit=1024)


# --- over http ----------------------------------------------------------------------------


class _Pages(BaseHTTPRequestHandler):
    """Serves the test pages; /to-ftp and /to-file redirect away from http."""

    def do_GET(self) -> None:
        away = {"/to-ftp": "ftp://example.com/page.html", "/to-file": "file:///etc/passwd"}
        if self.path in away:
            self.send_response(302)
            self.send_header("Location", away[self.path])
            self.end_headers()
            return
        page = PAGES / self.path.lstrip("/")
        if self.path.count("/") != 1 or not page.is_file():
            self.send_error(404)
            return
        body = page.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_the_page_is_fetched_over_http(server: str, tmp_path: Path) -> None:
    update, target, written = update_catalog(
        f"{server}/through-2026-07.html",
        output=tmp_path / "releases.json",
        configured=None,
        write=True,
    )
    assert written
    assert target == tmp_path / "releases.json"
    assert update.covers_after == "2026-07"


def test_an_http_error_is_one_clear_error(server: str) -> None:
    with pytest.raises(ReleasePageError, match="HTTP 404"):
        read_source(f"{server}/missing.html")


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/to-ftp", "redirected to ftp://example.com/page.html, not http"),
        ("/to-file", "HTTP 302"),  # urllib itself refuses a redirect to a file
    ],
)
def test_a_redirect_away_from_http_is_refused(server: str, path: str, words: str) -> None:
    with pytest.raises(ReleasePageError, match=words):
        read_source(f"{server}{path}")


def test_a_response_over_the_size_limit_is_refused(server: str) -> None:
    with pytest.raises(ReleasePageError, match="over 1,024"):
        read_source(f"{server}/through-2026-07.html", limit=1024)


# --- the updated catalog judges machines ---------------------------------------------------


def test_a_machine_on_a_build_only_the_new_page_lists_is_judged_on_its_release(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A year past the shipped catalog, a WS2025 VM on the June 2026 hotpatch (26100.32950,
    listed only by the new page) is beyond the shipped catalog; after `catalog update --write`
    it is placed on its release."""
    now = datetime(2027, 5, 20, 12, 0, tzinfo=UTC)
    name = "vm-june"
    export = tmp_path / "export.json"
    write_rows(
        export,
        [
            vm_row(name, image=WS2025_AZURE_EDITION, build="10.0.26100.32950"),
            assessment_row(vm_id(name), assessed=datetime(2027, 5, 20, 3, 0, tzinfo=UTC)),
        ],
    )
    evaluate = ("evaluate", "--inventory", str(export), "--now", now.isoformat())

    code, out, _ = run(capsys, *evaluate, "--format", "json")
    assert code == 0
    (before,) = json.loads(out)["machines"]
    assert "build_not_in_catalog" in [r["code"] for r in before["reasons"]]

    catalog = tmp_path / "releases.json"
    assert run(capsys, "catalog", "update", "--from", NEW_PAGE, "--write", catalog=catalog)[0] == 0
    code, out, _ = run(capsys, *evaluate, "--format", "json", catalog=catalog)
    assert code == 0
    report = json.loads(out)
    (after,) = report["machines"]
    assert "build_not_in_catalog" not in [r["code"] for r in after["reasons"]]
    assert after["release_month"] == "2026-06"
    # Still a year past the updated catalog's horizon: the notice stays, measured from July.
    assert report["catalog"]["stale"] is True
    assert os.fspath(catalog) not in out  # the report is about machines, not files
