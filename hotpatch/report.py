"""Compliance reports: stable JSON and CSV for scripts, rich tables for people."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hotpatch.core.calendar import ReleaseSlot
from hotpatch.core.compliance import Summary
from hotpatch.core.models import STATE_PRECEDENCE, State, Verdict

CSV_COLUMNS = (
    "id",
    "name",
    "kind",
    "state",
    "eligible",
    "action",
    "reason_codes",
    "os",
    "subscription_id",
    "ring",
    "build",
    "release_month",
    "releases_behind",
    "expected_build",
    "last_assessed",
    "missing_critical_security",
    "grace_ends",
    "reasons",
    "signal_codes",
    "next_restart",
    "restart_cause",
    "catalog_notice",
)

STATE_STYLE = {
    State.UNKNOWN: "magenta",
    State.NOT_ELIGIBLE: "dim",
    State.MISCONFIGURED: "yellow",
    State.ASSESSMENT_DUE: "cyan",
    State.NON_COMPLIANT: "bold red",
    State.REBOOT_PENDING: "yellow",
    State.PENDING: "blue",
    State.COMPLIANT: "green",
}


def iso(moment: datetime | None) -> str | None:
    """UTC with a Z, whatever offset the source wrote."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    """One machine, as `hotpatch evaluate --format json` and the HTTP API show it."""
    return {
        "id": verdict.id,
        "name": verdict.name,
        "kind": verdict.kind.value if verdict.kind else None,
        "state": verdict.state.value,
        "eligible": verdict.eligible,
        "action": verdict.action.value,
        "reasons": [{"code": r.code, "message": r.message} for r in verdict.reasons],
        "os": verdict.os.value if verdict.os else None,
        "subscription_id": verdict.subscription_id,
        "ring": verdict.ring,
        "build": verdict.build,
        "release_month": verdict.release_month,
        "releases_behind": verdict.releases_behind,
        "expected_build": verdict.expected_build,
        "last_assessed": iso(verdict.last_assessed),
        "missing_critical_security": verdict.missing_critical_security,
        "grace_ends": iso(verdict.grace_ends),
        "signals": [{"code": r.code, "message": r.message} for r in verdict.signals],
        "next_restart": iso(verdict.next_restart),
        "restart_cause": verdict.restart_cause,
    }


def catalog_json(summary: Summary) -> dict[str, Any]:
    """The release catalog's standing: `{stale: false}`, or when and how far it fell behind."""
    staleness = summary.catalog_staleness
    return staleness.as_dict() if staleness is not None else {"stale": False}


def report_json(
    verdicts: Sequence[Verdict], summary: Summary, evaluated_at: datetime, **extra: Any
) -> dict[str, Any]:
    return {
        "evaluated_at": iso(evaluated_at),
        **extra,
        "catalog": catalog_json(summary),
        "summary": summary.as_dict(),
        "machines": [verdict_json(v) for v in verdicts],
    }


def report_csv(verdicts: Iterable[Verdict], summary: Summary | None = None) -> str:
    """One row per machine; reasons joined so that a spreadsheet filter still works.

    A CSV has no header block, so a stale release catalog is stated on every row
    (`catalog_notice`), where a filter or a pivot still sees it.
    """
    staleness = summary.catalog_staleness if summary is not None else None
    notice = staleness.message if staleness is not None else None

    def rows() -> Iterator[list[object]]:
        for verdict in verdicts:
            row = verdict_json(verdict)
            reasons = row.pop("reasons")
            row["reason_codes"] = ";".join(r["code"] for r in reasons)
            row["reasons"] = " | ".join(r["message"] for r in reasons)
            row["signal_codes"] = ";".join(r["code"] for r in row.pop("signals"))
            row["catalog_notice"] = notice
            yield ["" if row[c] is None else row[c] for c in CSV_COLUMNS]

    return csv_text(CSV_COLUMNS, rows())


#: A cell a spreadsheet would run as a formula starts with one of these; OWASP's advice is to
#: prefix it with a single quote, which shows as text and is not executed.
#: https://owasp.org/www-community/attacks/CSV_Injection
FORMULA_STARTS = frozenset("=+-@\t\r")


def csv_cell(value: object) -> object:
    """`value` for a CSV cell: a text that a spreadsheet would run as a formula is neutralised.

    Numbers are left alone (-1 is a number, not a formula); names, tags and messages come from
    the estate and are never trusted.
    """
    if type(value) is str and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A CSV document: every text cell neutralised (`csv_cell`); a field holding a separator,
    a quote or a line break is quoted (the csv module's minimal quoting), so a name with a
    newline stays one field of one row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue()


#: Characters a terminal acts on instead of showing: C0 and C1 controls, DEL, the line and
#: paragraph separators, and the bidirectional overrides that can make text read backwards.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """Text from the estate (names, tags, ids, messages) made safe to print in a rich table:
    markup escaped (a name like `[red]x` is shown, not styled) and controls made visible."""
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda found: ascii(found.group())[1:-1], text)
    return escape(text)


def print_summary(
    console: Console, summary: Summary, verdicts: Sequence[Verdict], limit: int, title: str
) -> None:
    """The compliance summary, roll-ups and the machines that need action (at most `limit`)."""
    console.print(f"[bold]{clean(title)}[/]")
    print_catalog_notice(console, summary)
    states = Table()
    states.add_column("state")
    states.add_column("machines", justify="right")
    states.add_column("share", justify="right")
    for state in STATE_PRECEDENCE:
        count = summary.by_state[state.value]
        share = f"{100 * count / summary.total:.1f}%" if summary.total else "-"
        states.add_row(f"[{STATE_STYLE[state]}]{state.value}[/]", str(count), share)
    states.add_row("[bold]total[/]", f"[bold]{summary.total}[/]", "")
    console.print(states)
    for label, groups in (
        ("by OS", summary.by_os),
        ("by ring", summary.by_ring),
        ("by subscription", summary.by_subscription),
    ):
        console.print(_group_table(label, groups))
    needing = [v for v in verdicts if v.state is not State.COMPLIANT and v.eligible]
    if needing and limit > 0:
        machines = Table(title=f"Eligible machines that need action ({len(needing)})")
        for column in ("name", "state", "action", "build", "reason"):
            machines.add_column(column, overflow="fold")
        for verdict in needing[:limit]:
            machines.add_row(
                clean(verdict.name),
                f"[{STATE_STYLE[verdict.state]}]{verdict.state.value}[/]",
                verdict.action.value,
                clean(verdict.build or "-"),
                clean(verdict.reasons[0].message) if verdict.reasons else "",
            )
        console.print(machines)
        if len(needing) > limit:
            console.print(
                f"… and {len(needing) - limit} more: use --format json or csv for every machine."
            )


def print_catalog_notice(console: Console, summary: Summary) -> None:
    """A stale release catalog, said before anything that depends on it."""
    if summary.catalog_staleness is not None:
        message = clean(summary.catalog_staleness.message)
        console.print(f"[bold yellow]Stale release catalog:[/] {message}")


def _group_table(label: str, groups: dict[str, dict[str, int]]) -> Table:
    table = Table(title=label, title_justify="left")
    table.add_column(label.removeprefix("by "))
    present = [s for s in STATE_PRECEDENCE if any(s.value in counts for counts in groups.values())]
    for state in present:
        table.add_column(state.value, justify="right")
    table.add_column("total", justify="right")
    for key, counts in groups.items():
        table.add_row(
            clean(key), *(str(counts.get(s.value, 0)) for s in present), str(sum(counts.values()))
        )
    return table


def calendar_json(slots: Iterable[ReleaseSlot]) -> list[dict[str, Any]]:
    return [
        {
            "month": str(slot.month),
            "kind": slot.kind.value,
            "patch_tuesday": slot.patch_tuesday.isoformat(),
            "release_utc": iso(slot.release_utc),
            "kb": slot.kb,
            "build": slot.build,
            "restart": slot.restart,
            "status": slot.status,
        }
        for slot in slots
    ]


#: What a calendar shows in place of a KB Microsoft has not given the catalog.
SLOT_STATUS_TEXT = {
    "published": "",
    "not_in_catalog": "not published yet",
    "beyond_catalog": "beyond the catalog (update it)",
    "outside_program": "outside the hotpatch program",
}


def print_calendar(console: Console, os_name: str, slots: Sequence[ReleaseSlot]) -> None:
    table = Table(title=f"Hotpatch calendar: {os_name}", title_justify="left")
    for column in ("month", "kind", "patch tuesday", "release (UTC)", "KB", "build", "restart"):
        table.add_column(column)
    for row, slot in zip(calendar_json(slots), slots, strict=True):
        style = "bold" if slot.restart else ""
        table.add_row(
            row["month"],
            "-"
            if slot.status == "outside_program"
            else f"[{style}]{row['kind']}[/]"
            if style
            else row["kind"],
            row["patch_tuesday"],
            row["release_utc"],
            row["kb"] or SLOT_STATUS_TEXT[slot.status],
            row["build"] or "-",
            "yes" if slot.restart else "no",
        )
    console.print(table)
