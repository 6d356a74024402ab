"""The shipped data files, replacement files, and the errors a bad file produces."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hotpatch.core.calendar import Calendar, YearMonth
from hotpatch.core.models import MonthKind, OsFamily
from hotpatch.data import (
    load_image_catalog,
    load_release_catalog,
    shipped_image_catalog,
    shipped_release_catalog,
)
from hotpatch.errors import DataFileError
from tests.unit.published import KIND_LETTERS, OUT_OF_BAND, PUBLISHED, Published

Document = dict[str, Any]


def _row(os: str, day: str, kind: str, build: str, kb: str, **extra: Any) -> dict[str, Any]:
    return {"os": os, "date": day, "kind": kind, "build": build, "kb": kb, **extra}


def _releases() -> Document:
    """A small valid release file: two WS2022 months and one WS2025 month."""
    return {
        "$comment": "a replacement catalog",
        "releases": [
            _row("ws2022", "2024-01-09", "baseline", "20348.2227", "KB5034129"),
            _row("ws2022", "2024-02-13", "hotpatch", "20348.2277", "KB5034860"),
            _row("ws2025", "2025-01-14", "baseline", "26100.2894", "KB5050009"),
        ],
    }


def _images() -> Document:
    publisher, offer = "MicrosoftWindowsServer", "WindowsServer"
    return {
        "hotpatchable": [
            {"publisher": publisher, "offer": offer, "sku": "2025-datacenter-azure-edition"}
            | {"os": "ws2025"}
        ],
        "not_hotpatchable": [
            {
                "publisher": publisher,
                "offer": offer,
                "sku": "2022-datacenter-azure-edition",
                "os": "ws2022",
                "code": "azure_edition_desktop_2022",
                "reason": "Desktop Experience cannot be hotpatched",
            }
        ],
    }


def _write(tmp_path: Path, document: object, name: str = "data.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# --- the shipped release catalog ---------------------------------------------------------------


@pytest.mark.parametrize("row", PUBLISHED, ids=[row.id for row in PUBLISHED])
def test_the_shipped_catalog_holds_every_published_release(row: Published) -> None:
    release = shipped_release_catalog().monthly(OsFamily(row.os), row.date.strftime("%Y-%m"))
    assert release is not None, f"{row.os} {row.date} {row.kb} is missing from releases.json"
    assert (release.date, release.kind, release.build, release.kb, release.out_of_band) == (
        row.date,
        MonthKind(KIND_LETTERS[row.kind]),
        row.build,
        row.kb,
        False,
    )


def test_the_shipped_catalog_holds_the_published_out_of_band_release() -> None:
    rows = [
        r for r in shipped_release_catalog().releases if r.out_of_band and r.kb == OUT_OF_BAND.kb
    ]
    assert [(r.os.value, r.date, r.build) for r in rows] == [
        (OUT_OF_BAND.os, OUT_OF_BAND.date, OUT_OF_BAND.build)
    ]


def test_the_shipped_catalog_gives_each_kb_to_one_release() -> None:
    kbs = [release.kb for release in shipped_release_catalog().releases if release.kb]
    assert len(kbs) == len(set(kbs))


# --- replacement files ----------------------------------------------------------------------


def test_a_replacement_release_file_replaces_the_shipped_catalog(tmp_path: Path) -> None:
    catalog = load_release_catalog(_write(tmp_path, _releases()))
    assert len(catalog.releases) == 3
    calendar = Calendar(catalog)
    assert calendar.slot(OsFamily.WS2022, YearMonth(2024, 2)).kb == "KB5034860"
    # A month the replacement does not list is unknown, even though the shipped file has it.
    assert calendar.slot(OsFamily.WS2022, YearMonth(2024, 3)).kb is None


def test_a_newer_row_is_picked_up_without_a_code_change(tmp_path: Path) -> None:
    document = _releases()
    document["releases"].append(
        _row("ws2022", "2026-06-09", "unplanned_baseline", "20348.5190", "KB5099001")
    )
    calendar = Calendar(load_release_catalog(_write(tmp_path, document)))
    slot = calendar.slot(OsFamily.WS2022, YearMonth(2026, 6))
    assert (slot.kind, slot.kb, slot.build, slot.source) == (
        MonthKind.UNPLANNED_BASELINE,
        "KB5099001",
        "20348.5190",
        "catalog",
    )


def test_an_out_of_band_row_may_fall_on_any_day(tmp_path: Path) -> None:
    document = _releases()
    document["releases"].append(
        _row("ws2022", "2024-01-24", "hotpatch", "20348.2240", "KB5099002", out_of_band=True)
    )
    catalog = load_release_catalog(_write(tmp_path, document))
    monthly = catalog.monthly(OsFamily.WS2022, "2024-01")
    nearest = catalog.at_or_below(OsFamily.WS2022, 2240)
    assert monthly is not None
    assert nearest is not None
    # It is a release a build can be at, but it never becomes the month's release.
    assert (monthly.kb, nearest.kb) == ("KB5034129", "KB5099002")


def test_the_shipped_image_catalog_loads() -> None:
    catalog = shipped_image_catalog()
    match = catalog.match(
        "microsoftwindowsserver", "WINDOWSSERVER", "2025-Datacenter-Azure-Edition"
    )
    assert (match.os, match.reason) == (OsFamily.WS2025, None)


def test_a_replacement_image_file_replaces_the_shipped_catalog(tmp_path: Path) -> None:
    catalog = load_image_catalog(_write(tmp_path, _images()))
    listed = catalog.match(
        "MicrosoftWindowsServer", "WindowsServer", "2025-datacenter-azure-edition"
    )
    assert (listed.os, listed.reason) == (OsFamily.WS2025, None)
    blocked = catalog.match(
        "MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition"
    )
    assert blocked.reason is not None
    assert blocked.reason.code == "azure_edition_desktop_2022"
    # The shipped file lists -core; the replacement does not, so it is not hotpatchable here.
    core = catalog.match(
        "MicrosoftWindowsServer", "WindowsServer", "2025-datacenter-azure-edition-core"
    )
    assert core.reason is not None


# --- bad release files --------------------------------------------------------------------------

Edit = Callable[[Document], object]


def _set(field: str, value: object) -> Edit:
    def edit(document: Document) -> object:
        document["releases"][0][field] = value
        return document

    return edit


def _drop(field: str) -> Edit:
    def edit(document: Document) -> object:
        del document["releases"][0][field]
        return document

    return edit


def _duplicate_first(document: Document) -> object:
    document["releases"].append(copy.deepcopy(document["releases"][0]))
    return document


FIRST = "releases[0] (ws2022 2024-01-09"

BAD_RELEASE_FILES = [
    pytest.param(
        _set("build", "20348"), [FIRST, "build", "20348.4711"], id="build-without-revision"
    ),
    pytest.param(_set("build", "2O348.2227"), [FIRST, "build"], id="build-with-a-letter"),
    pytest.param(
        _set("kb", "5034129"), ["releases[0] (ws2022 2024-01-09", "kb"], id="kb-without-KB"
    ),
    pytest.param(_set("kb", "KB12"), [FIRST, "kb"], id="kb-too-short"),
    pytest.param(_set("kind", "cumulative"), [FIRST, "kind", "baseline"], id="unknown-kind"),
    pytest.param(_set("os", "ws2019"), ["releases[0] (ws2019 2024-01-09", "os"], id="unknown-os"),
    pytest.param(
        _set("date", "2024-13-09"), ["releases[0] (ws2022 2024-13-09", "date"], id="bad-date"
    ),
    pytest.param(
        _set("date", "2024-01-10"),
        ["releases[0] (ws2022 2024-01-10", "date 2024-01-10", "Patch Tuesday", "out_of_band"],
        id="not-patch-tuesday-and-not-out-of-band",
    ),
    pytest.param(
        _set("build", "26100.2894"),
        [FIRST, "build 26100.2894", "ws2022"],
        id="build-of-the-other-os",
    ),
    pytest.param(
        _set("build", "17763.5329"),
        [FIRST, "build 17763.5329"],
        id="build-of-no-hotpatch-os",
    ),
    pytest.param(_drop("kb"), [FIRST, "kb", "Field required"], id="missing-kb"),
    pytest.param(_set("kb_number", "KB5034129"), [FIRST, "kb_number"], id="misspelt-field"),
    pytest.param(lambda d: [d], ["(top level)"], id="top-level-is-a-list"),
    pytest.param(lambda d: {"releases": {"0": {}}}, ["releases"], id="releases-is-not-a-list"),
    pytest.param(lambda d: {}, ["releases", "Field required"], id="no-releases-key"),
]


@pytest.mark.parametrize(("edit", "fragments"), BAD_RELEASE_FILES)
def test_a_bad_release_file_names_the_file_the_entry_and_the_field(
    tmp_path: Path, edit: Edit, fragments: list[str]
) -> None:
    path = _write(tmp_path, edit(_releases()), "releases.json")
    with pytest.raises(DataFileError) as raised:
        load_release_catalog(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: "), message
    missing = [fragment for fragment in fragments if fragment not in message]
    assert missing == [], f"message {message!r} does not mention {missing}"


def test_a_duplicate_month_names_the_file_the_month_and_the_entries(tmp_path: Path) -> None:
    path = _write(tmp_path, _duplicate_first(_releases()), "releases.json")
    with pytest.raises(DataFileError) as raised:
        load_release_catalog(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: "), message
    assert "ws2022" in message, message
    assert "2024-01" in message, message
    # The duplicate is the entry releases[3]; an operator should not have to hunt for it.
    assert "releases[3]" in message, (
        f"a duplicate month should name its entry like the other errors do "
        f"(e.g. 'releases[3] (ws2022 2024-01-09 ...)'); got {message!r}"
    )


@pytest.mark.parametrize(
    ("write", "fragment"),
    [
        pytest.param(
            lambda p: p.write_text('{"releases": [', encoding="utf-8"),
            "not valid JSON at line 1",
            id="truncated-json",
        ),
        pytest.param(lambda p: p.write_text("", encoding="utf-8"), "not valid JSON", id="empty"),
        pytest.param(
            lambda p: p.write_text("releases:\n  - os: ws2022\n", encoding="utf-8"),
            "not valid JSON",
            id="yaml",
        ),
        pytest.param(
            lambda p: p.write_bytes('{"$comment": "café", "releases": []}'.encode("latin-1")),
            "not UTF-8 text (byte 17",
            id="not-utf-8",
        ),
        pytest.param(lambda p: None, "cannot read", id="missing-file"),
        pytest.param(lambda p: p.mkdir(), "cannot read", id="a-directory"),
    ],
)
def test_an_unreadable_release_file_names_the_file(
    tmp_path: Path, write: Callable[[Path], object], fragment: str
) -> None:
    path = tmp_path / "releases.json"
    write(path)
    try:
        load_release_catalog(path)
    except DataFileError as error:
        message = str(error)
    except Exception as error:
        pytest.fail(
            f"load_release_catalog raised {type(error).__name__} ({error}) instead of "
            f"DataFileError naming {path}"
        )
    else:
        pytest.fail(f"load_release_catalog accepted {path}")
    assert message.startswith(f"{path}: "), message
    assert fragment in message, message


def test_a_release_file_error_keeps_its_cause(tmp_path: Path) -> None:
    path = _write(tmp_path, _set("kind", "cumulative")(_releases()))
    with pytest.raises(DataFileError) as raised:
        load_release_catalog(path)
    assert raised.value.__cause__ is not None


# --- bad image files ----------------------------------------------------------------------------


def _image_edit(section: str, field: str, value: object) -> Edit:
    def edit(document: Document) -> object:
        document[section][0][field] = value
        return document

    return edit


def _without(section: str) -> Edit:
    def edit(document: Document) -> object:
        del document[section]
        return document

    return edit


BAD_IMAGE_FILES = [
    pytest.param(
        _without("hotpatchable"), ["hotpatchable", "Field required"], id="no-hotpatchable"
    ),
    pytest.param(
        lambda d: d | {"hotpatchable": []}, ["hotpatchable", "at least 1"], id="empty-hotpatchable"
    ),
    pytest.param(
        _image_edit("not_hotpatchable", "code", "Azure-Edition-Desktop"),
        ["not_hotpatchable[0] (ws2022 2022-datacenter-azure-edition)", "code"],
        id="code-not-snake-case",
    ),
    pytest.param(
        _image_edit("hotpatchable", "os", "ws2019"),
        ["hotpatchable[0] (ws2019 2025-datacenter-azure-edition)", "os"],
        id="unknown-os",
    ),
    pytest.param(
        _image_edit("hotpatchable", "publisher", ""),
        ["hotpatchable[0] (ws2025 2025-datacenter-azure-edition)", "publisher"],
        id="empty-publisher",
    ),
    pytest.param(
        _image_edit("hotpatchable", "skus", "x"),
        ["hotpatchable[0] (ws2025 2025-datacenter-azure-edition)", "skus"],
        id="misspelt-field",
    ),
    pytest.param(lambda d: "images", ["(top level)"], id="top-level-is-a-string"),
]


@pytest.mark.parametrize(("edit", "fragments"), BAD_IMAGE_FILES)
def test_a_bad_image_file_names_the_file_the_entry_and_the_field(
    tmp_path: Path, edit: Edit, fragments: list[str]
) -> None:
    path = _write(tmp_path, edit(_images()), "images.json")
    with pytest.raises(DataFileError) as raised:
        load_image_catalog(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: "), message
    missing = [fragment for fragment in fragments if fragment not in message]
    assert missing == [], f"message {message!r} does not mention {missing}"


@pytest.mark.parametrize(
    ("write", "fragment"),
    [
        pytest.param(
            lambda p: p.write_text("{'hotpatchable': []}", encoding="utf-8"),
            "not valid JSON",
            id="single-quotes",
        ),
        pytest.param(
            lambda p: p.write_bytes('{"$comment": "café", "hotpatchable": []}'.encode("latin-1")),
            "not UTF-8 text (byte 17",
            id="not-utf-8",
        ),
        pytest.param(lambda p: None, "cannot read", id="missing-file"),
    ],
)
def test_an_unreadable_image_file_names_the_file(
    tmp_path: Path, write: Callable[[Path], object], fragment: str
) -> None:
    path = tmp_path / "images.json"
    write(path)
    try:
        load_image_catalog(path)
    except DataFileError as error:
        message = str(error)
    except Exception as error:
        pytest.fail(
            f"load_image_catalog raised {type(error).__name__} ({error}) instead of "
            f"DataFileError naming {path}"
        )
    else:
        pytest.fail(f"load_image_catalog accepted {path}")
    assert message.startswith(f"{path}: "), message
    assert fragment in message, message
