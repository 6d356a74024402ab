"""Plans and remediation runs as people read them (rich tables) and scripts read them (JSON)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hotpatch.core.plan import Plan, RingStatus, SkipCode
from hotpatch.remediation import RemediationRun, plan_figures
from hotpatch.report import clean, iso

RING_STYLE = {
    RingStatus.WAITING: "dim",
    RingStatus.INSTALLING: "cyan",
    RingStatus.SOAKING: "blue",
    RingStatus.PROMOTED: "green",
    RingStatus.HALTED: "bold red",
}


def plan_json(decided: Plan) -> dict[str, Any]:
    """A plan as a document: every operation and every skipped machine with its reason."""
    return {"release": decided.release, **plan_figures(decided)}


def remediation_json(run: RemediationRun) -> dict[str, Any]:
    return {
        "run": run.run.id,
        "outcome": run.run.outcome,
        "dry_run": run.applied is None,
        "reconciled": run.reconciled.as_dict(),
        "applied": run.applied.as_dict() if run.applied is not None else None,
        "plan": plan_json(run.plan),
    }


def _text(value: object) -> str:
    return escape(clean(str(value)))


def print_plan(console: Console, decided: Plan, *, limit: int) -> None:
    """Rings, then the operations, then why every other machine gets none."""
    console.print(
        f"[bold]Plan[/bold] at {iso(decided.now)}: mode [bold]{decided.mode.value}[/bold], "
        f"release {_text(decided.release or '-')}"
    )
    if decided.rings:
        rings = Table(title="Rings", title_justify="left")
        for column in ("ring", "status", "KBs proven", "installs", "failures", "soak ends", "why"):
            rings.add_column(column)
        for ring in decided.rings:
            style = RING_STYLE.get(RingStatus(ring.status), "")
            rings.add_row(
                _text(ring.ring),
                f"[{style}]{ring.status}[/{style}]" if style else str(ring.status),
                _text(", ".join(ring.kbs) or "-"),
                f"{ring.succeeded}/{ring.finished}",
                str(ring.failures),
                iso(ring.soak_ends) or "-",
                _text(ring.reason),
            )
        console.print(rings)
    if decided.operations:
        operations = Table(
            title=f"Operations to start ({len(decided.operations):,})", title_justify="left"
        )
        for column in ("machine", "ring", "action", "why"):
            operations.add_column(column)
        for operation in decided.operations[:limit]:
            operations.add_row(
                _text(operation.machine_id.rsplit("/", 1)[-1]),
                _text(operation.ring or "-"),
                _text(operation.action),
                _text(operation.reason),
            )
        console.print(operations)
        if len(decided.operations) > limit:
            console.print(
                f"… and {len(decided.operations) - limit:,} more (--limit, or --format json)"
            )
    else:
        console.print("No operation to start.")
    if decided.skips:
        counts = Counter(skip.code for skip in decided.skips)
        skipped = Table(title=f"Skipped ({len(decided.skips):,})", title_justify="left")
        for column in ("why", "machines", "for example"):
            skipped.add_column(column)
        for code in SkipCode:
            if counts[code]:
                example = next(s for s in decided.skips if s.code is code)
                skipped.add_row(
                    code.value,
                    f"{counts[code]:,}",
                    _text(f"{example.machine_id.rsplit('/', 1)[-1]}: {example.message}"),
                )
        console.print(skipped)
    for notice in decided.notices:
        console.print(f"[yellow]notice:[/yellow] {_text(notice)}")


def print_remediation(console: Console, run: RemediationRun, *, limit: int) -> None:
    print_plan(console, run.plan, limit=limit)
    settled = {k: v for k, v in run.reconciled.as_dict().items() if v}
    if settled:
        console.print(
            "Earlier runs' operations: " + ", ".join(f"{k} {v}" for k, v in settled.items())
        )
    if run.applied is None:
        console.print("[bold]Dry run[/bold]: nothing was started (--yes starts the plan).")
        return
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(run.applied.outcomes.items())) or "none"
    console.print(f"Started {run.applied.started:,} operation(s); outcomes: {outcomes}")
    if run.applied.stopped:
        console.print(f"[bold red]Stopped:[/bold red] {_text(run.applied.stopped)}")
