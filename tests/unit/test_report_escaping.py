"""Reports carry estate text (names, tags, ids) safely: no spreadsheet formula, no terminal
control, no rich markup, and one CSV row per machine whatever the name holds."""

from __future__ import annotations

import csv
import io

import pytest
from rich.console import Console

from hotpatch.report import clean, csv_cell, csv_text, print_summary, report_csv
from hotpatch.service import Rules, evaluate_rows
from hotpatch.settings import Settings
from tests.builders import NOW, vm_row

RULES = Rules.from_settings(Settings())


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("vm-01", "vm-01"),
        ("", ""),
        (-1, -1),
        (3.5, 3.5),
    ],
)
def test_a_cell_a_spreadsheet_would_run_is_neutralised_as_owasp_advises(
    cell: object, written: object
) -> None:
    assert csv_cell(cell) == written


def test_a_field_with_a_line_break_stays_one_field_of_one_row() -> None:
    text = csv_text(("id", "name"), [("a", "two\nlines"), ("b", "=1\r\n+2")])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["id", "name"], ["a", "two\nlines"], ["b", "'=1\r\n+2"]]


def verdicts_named(name: str) -> list:  # type: ignore[type-arg]
    row = vm_row("vm-1", build="10.0.20348.2582")
    row["name"] = name
    row["tags"] = {"hotpatch-ring": name}
    return evaluate_rows([row], RULES, NOW).verdicts


def test_the_machine_csv_neutralises_names_and_tags_from_the_estate() -> None:
    verdicts = verdicts_named("=cmd|'/C calc'!A0\nsecond line")
    rows = list(csv.DictReader(io.StringIO(report_csv(verdicts))))
    assert len(rows) == 1
    assert rows[0]["name"] == "'=cmd|'/C calc'!A0\nsecond line"
    assert rows[0]["ring"] == "'=cmd|'/C calc'!A0\nsecond line"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("[bold red]boss[/]", "\\[bold red]boss\\[/]"),
        ("vm\x1b[2Jgone", "vm\\x1b[2Jgone"),
        ("bell\x07", "bell\\x07"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("plain-vm_01", "plain-vm_01"),
    ],
)
def test_estate_text_is_escaped_for_the_table(text: str, shown: str) -> None:
    assert clean(text) == shown


def test_the_table_shows_a_hostile_name_as_text_and_sends_no_control_to_the_terminal() -> None:
    name = "[blink]evil[/blink]\x1b]0;pwned\x07"
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    verdicts = verdicts_named(name)
    print_summary(console, evaluate_rows([], RULES, NOW).summary, verdicts, 5, f"of {name}")
    printed = buffer.getvalue()
    assert "\x1b" not in printed
    assert "\x07" not in printed
    assert "[blink]evil[/blink]" in printed
