"""Compliance reports: stable JSON and CSV for scripts, rich tables for people."""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hotpatch.core.calendar import ReleaseSlot
from hotpatch.core.compliance import Summary
from hotpatch.core.models import STATE_PRECEDENCE, State, Verdict
from hotpatch.ports.store import JournalRecord, RunRecord, Transition, VerdictRow
from hotpatch.service import MachineHistory

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
    notice = _notice(summary)
    return csv_text(CSV_COLUMNS, (_csv_row(verdict_json(verdict), notice) for verdict in verdicts))


def _notice(summary: Summary | None) -> str | None:
    staleness = summary.catalog_staleness if summary is not None else None
    return staleness.message if staleness is not None else None


def _csv_row(row: dict[str, Any], notice: str | None) -> list[object]:
    """A machine's `verdict_json` as the cells of its CSV row."""
    reasons = row.pop("reasons")
    row["reason_codes"] = ";".join(r["code"] for r in reasons)
    row["reasons"] = " | ".join(r["message"] for r in reasons)
    row["signal_codes"] = ";".join(r["code"] for r in row.pop("signals"))
    row["catalog_notice"] = notice
    return ["" if row[c] is None else row[c] for c in CSV_COLUMNS]


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
    write_csv(buffer, columns, rows)
    return buffer.getvalue()


def write_csv(out: TextIO, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """`csv_text`, written to `out` row by row."""
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])


#: Characters a terminal acts on instead of showing: C0 and C1 controls, DEL, the line and
#: paragraph separators, and the bidirectional overrides that can make text read backwards.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """Text from the estate (names, tags, ids, messages) made safe to print in a rich table:
    markup escaped (a name like `[red]x` is shown, not styled) and controls made visible."""
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda found: ascii(found.group())[1:-1], text)
    return escape(text)


class ActionList:
    """The eligible machines that need action: how many, and the first `limit` of them (all a
    table shows, so a sweep need not keep the rest)."""

    __slots__ = ("limit", "shown", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.shown: list[Verdict] = []

    @classmethod
    def of(cls, verdicts: Iterable[Verdict], limit: int) -> ActionList:
        needing = cls(limit)
        needing.add(verdicts)
        return needing

    def add(self, verdicts: Iterable[Verdict]) -> None:
        for verdict in verdicts:
            if verdict.state is not State.COMPLIANT and verdict.eligible:
                self.total += 1
                if len(self.shown) < self.limit:
                    self.shown.append(verdict)


def print_summary(
    console: Console, summary: Summary, verdicts: Sequence[Verdict], limit: int, title: str
) -> None:
    """The compliance summary, roll-ups and the machines that need action (at most `limit`)."""
    print_summary_of(console, summary, ActionList.of(verdicts, limit), title)


def print_summary_of(console: Console, summary: Summary, needing: ActionList, title: str) -> None:
    """`print_summary` from the machines needing action a streamed sweep kept."""
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
    limit = needing.limit
    if needing.total and limit > 0:
        machines = Table(title=f"Eligible machines that need action ({needing.total})")
        for column in ("name", "state", "action", "build", "reason"):
            machines.add_column(column, overflow="fold")
        for verdict in needing.shown:
            machines.add_row(
                clean(verdict.name),
                f"[{STATE_STYLE[verdict.state]}]{verdict.state.value}[/]",
                verdict.action.value,
                clean(verdict.build or "-"),
                clean(verdict.reasons[0].message) if verdict.reasons else "",
            )
        console.print(machines)
        if needing.total > limit:
            console.print(
                f"… and {needing.total - limit} more: use --format json or csv for every machine."
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


# -- a sweep's report, streamed -------------------------------------------------------------------


class StreamedReport:
    """A sweep's machines, written out as their pages are judged, so that a report of any size
    costs the memory of one page.

    Each machine's JSON goes to a temporary file (no name on disk: nothing is left behind, even
    by a killed process); at the end `write_json` puts the report together around it exactly as
    `json.dumps(report_json(...), indent=1)` would, and `write_csv` (when asked for with
    `csv=True`) turns a second spool of compact lines into `report_csv`'s rows.
    """

    def __init__(self, directory: Path, *, csv: bool = False) -> None:
        self.machines = 0
        self._body = self._spool(directory)
        self._lines = self._spool(directory) if csv else None

    @staticmethod
    def _spool(directory: Path) -> TextIO:
        return tempfile.TemporaryFile(
            "w+", encoding="utf-8", errors="backslashreplace", newline="", dir=directory
        )

    def __enter__(self) -> StreamedReport:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def add(self, verdicts: Iterable[Verdict]) -> None:
        body = self._body
        for verdict in verdicts:
            item = verdict_json(verdict)
            # An item of the "machines" list, as indent=1 puts it two levels deep.
            body.write(",\n  " if self.machines else "\n  ")
            body.write(json.dumps(item, indent=1).replace("\n", "\n  "))
            if self._lines is not None:
                self._lines.write(json.dumps(item) + "\n")
            self.machines += 1

    def write_json(self, out: TextIO, header: dict[str, Any]) -> None:
        """The report: `header` (a `report_json` document without its machines), then them."""
        text = json.dumps({**header, "machines": []}, indent=1)
        empty = '"machines": []\n}'
        assert text.endswith(empty), "machines must be the document's last key"
        if not self.machines:
            out.write(text)
            return
        out.write(text[: -len("[]\n}")] + "[")
        self._copy(self._body, out)
        out.write("\n ]\n}")

    def write_csv(self, out: TextIO, summary: Summary) -> None:
        """The machines as `report_csv` writes them."""
        if self._lines is None:
            raise ValueError("this report was not spooled for CSV (csv=True)")
        notice = _notice(summary)
        lines = self._lines
        lines.flush()
        lines.seek(0)
        write_csv(out, CSV_COLUMNS, (_csv_row(json.loads(line), notice) for line in lines))
        lines.seek(0, io.SEEK_END)

    @staticmethod
    def _copy(spool: TextIO, out: TextIO, block: int = 1 << 20) -> None:
        spool.flush()
        spool.seek(0)
        while text := spool.read(block):
            out.write(text)
        spool.seek(0, io.SEEK_END)

    def close(self) -> None:
        self._body.close()
        if self._lines is not None:
            self._lines.close()


# -- the store: a machine's history, the runs -----------------------------------------------------


def verdict_row_json(row: VerdictRow) -> dict[str, Any]:
    """A machine's verdict as the store keeps it (`hotpatch history`)."""
    return {
        "id": row.id,
        "name": row.name,
        "state": row.state.value,
        "eligible": row.eligible,
        "action": row.action.value,
        "reasons": [{"code": r.code, "message": r.message} for r in row.reasons],
        "os": row.os.value if row.os else None,
        "subscription_id": row.subscription,
        "resource_group": row.resource_group,
        "ring": row.ring,
        "tags": dict(row.tags),
        "build": row.build,
        "release_month": row.release_month,
        "last_assessed": iso(row.last_assessed),
        "next_restart": iso(row.next_restart),
    }


def transition_json(transition: Transition) -> dict[str, Any]:
    return {
        "at": iso(transition.at),
        "from": transition.from_state.value if transition.from_state else None,
        "to": transition.to_state.value if transition.to_state else None,
        "run_id": transition.run_id,
        "reasons": list(transition.reasons),
    }


def operation_json(record: JournalRecord) -> dict[str, Any]:
    """A journalled operation, without the store's own version stamp."""
    return record.model_dump(mode="json", exclude={"version"})


def run_json(run: RunRecord) -> dict[str, Any]:
    return run.model_dump(mode="json")


def history_json(history: MachineHistory) -> dict[str, Any]:
    """`hotpatch history --format json`: `known` is false when the store has nothing of it."""
    verdict, latest = history.verdict, history.snapshot
    return {
        "machine": verdict.id if verdict is not None else history.machine_id,
        "known": history.known,
        "latest_snapshot": (
            {"run_id": latest.run_id, "taken_at": iso(latest.taken_at)} if latest else None
        ),
        "verdict": verdict_row_json(verdict) if verdict is not None else None,
        "transitions": [transition_json(t) for t in history.transitions],
        "operations": [operation_json(record) for record in history.operations],
    }


def _state_text(state: State | None) -> str:
    if state is None:
        return "[dim](not swept)[/]"
    return f"[{STATE_STYLE[state]}]{state.value}[/]"


def print_history(console: Console, history: MachineHistory) -> None:
    """A machine's verdict in the latest snapshot, its transitions oldest first, and its
    operations."""
    verdict, latest = history.verdict, history.snapshot
    console.print(f"[bold]{clean(verdict.id if verdict is not None else history.machine_id)}[/]")
    taken = f"run {clean(latest.run_id)} as of {iso(latest.taken_at)}" if latest else ""
    if latest is None:
        console.print("No sweep is stored yet.")
    elif verdict is None:
        console.print(f"Latest snapshot ({taken}): the machine is not in it")
    else:
        console.print(
            f"Latest snapshot ({taken}): {_state_text(verdict.state)}, next action "
            f"{verdict.action.value}, {'eligible' if verdict.eligible else 'not eligible'}, "
            f"build {clean(verdict.build or '-')}, ring {clean(verdict.ring or '-')}"
        )
        for reason in verdict.reasons:
            console.print(f"  {clean(reason.code)}: {clean(reason.message)}")
    transitions, operations = history.transitions, history.operations
    if transitions:
        table = Table(title="State transitions (oldest first)", title_justify="left")
        for column in ("at (UTC)", "from", "to", "run", "reasons"):
            table.add_column(column, overflow="fold")
        for transition in transitions:
            table.add_row(
                iso(transition.at),
                _state_text(transition.from_state),
                _state_text(transition.to_state),
                clean(transition.run_id),
                clean(", ".join(transition.reasons)),
            )
        console.print(table)
    else:
        console.print("No state transitions recorded.")
    if operations:
        table = Table(title="Operations", title_justify="left")
        for column in ("started (UTC)", "action", "release", "status", "updated (UTC)", "detail"):
            table.add_column(column, overflow="fold")
        for record in operations:
            table.add_row(
                iso(record.started_at),
                clean(record.action),
                clean(record.release),
                clean(record.status.value),
                iso(record.updated_at),
                clean(record.detail or ""),
            )
        console.print(table)
    else:
        console.print("No operations journalled.")


def print_runs(console: Console, runs: Sequence[RunRecord]) -> None:
    """The runs, newest first: who ran each, when, over what, what it found, how it ended."""
    if not runs:
        return  # the caller says so, and where the store is
    table = Table(title="Runs (newest first)", title_justify="left")
    for column in ("run", "kind", "who", "started (UTC)", "took", "outcome", "scope", "figures"):
        table.add_column(column, overflow="fold")
    for run in runs:
        took = (
            f"{(run.finished_at - run.started_at).total_seconds():.1f} s"
            if run.finished_at is not None
            else "-"
        )
        table.add_row(
            clean(run.id),
            run.kind.value,
            clean(run.who),
            iso(run.started_at),
            took,
            _outcome_text(run.outcome),
            clean(run.scope),
            _figures_text(run.figures),
        )
    console.print(table)


_OUTCOME_STYLE = {"succeeded": "green", "failed": "bold red", "interrupted": "yellow"}


def _outcome_text(outcome: str | None) -> str:
    if outcome is None:
        return "[yellow]unfinished[/]"
    style = _OUTCOME_STYLE.get(outcome)
    return f"[{style}]{clean(outcome)}[/]" if style else clean(outcome)


def _figures_text(figures: dict[str, Any]) -> str:
    """A sweep's machines and states; another run's plain figures as `name=value`."""
    parts: list[str] = []
    by_state = figures.get("by_state")
    if isinstance(figures.get("machines"), int):
        parts.append(f"{figures['machines']:,} machines")
    if isinstance(by_state, dict):
        parts.extend(
            f"{count:,} {clean(str(state))}"
            for state, count in by_state.items()
            if isinstance(count, int) and count
        )
    else:
        parts.extend(
            f"{clean(str(name))}={clean(str(value))}"
            for name, value in figures.items()
            if name not in ("machines", "error") and isinstance(value, str | int | float | bool)
        )
    text = ", ".join(parts)
    error = figures.get("error")
    if error:
        text = f"{text}; [red]{clean(str(error))}[/]" if text else f"[red]{clean(str(error))}[/]"
    return text
