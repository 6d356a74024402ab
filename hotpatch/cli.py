"""The `hotpatch` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from hotpatch import __version__
from hotpatch.core.calendar import YearMonth
from hotpatch.core.eligibility import image_eligibility
from hotpatch.core.models import ImageRef, OsFamily
from hotpatch.errors import HotpatchError
from hotpatch.export import read_rows
from hotpatch.report import (
    calendar_json,
    print_calendar,
    print_summary,
    report_csv,
    report_json,
)
from hotpatch.service import Rules, evaluate_rows
from hotpatch.settings import Settings

EXIT_OK = 0
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line that names the problem, then exit 2 (argparse's own convention).
        self.exit(EXIT_USAGE, f"hotpatch: error: {message} (see --help)\n")


def _moment(text: str) -> datetime:
    """ISO 8601; a time without a zone is read as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time (e.g. 2026-02-20T12:00Z)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _month(text: str) -> YearMonth:
    try:
        return YearMonth.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hotpatch", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hotpatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    cal = commands.add_parser("calendar", help="baseline and hotpatch months for an OS")
    cal.add_argument("--os", required=True, choices=[o.value for o in OsFamily])
    cal.add_argument(
        "--from", dest="start", type=_month, help="first month, YYYY-MM (default: now)"
    )
    cal.add_argument("--months", type=_positive, default=12, help="how many months (default 12)")
    cal.add_argument("--format", choices=("table", "json"), default="table")

    image = commands.add_parser("check-image", help="can a marketplace image take hotpatches?")
    image.add_argument("publisher")
    image.add_argument("offer")
    image.add_argument("sku")
    image.add_argument("--format", choices=("table", "json"), default="table")

    evaluate = commands.add_parser("evaluate", help="judge every machine of a raw export")
    evaluate.add_argument(
        "--inventory", required=True, type=Path, help="Resource Graph rows (JSON)"
    )
    evaluate.add_argument(
        "--now", type=_moment, help="judge as of this instant (ISO 8601; default: the clock)"
    )
    evaluate.add_argument("--format", choices=("table", "json", "csv"), default="table")
    evaluate.add_argument(
        "--output", type=Path, help="write the json/csv report here instead of stdout"
    )
    evaluate.add_argument(
        "--limit", type=int, default=25, help="machines listed in the table (default 25)"
    )
    return parser


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Piped output keeps whole columns (rich would squeeze tables to 80 columns).
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        settings = Settings.from_env(os.environ if environ is None else environ)
        rules = Rules.from_settings(settings)
        if args.command == "calendar":
            return _calendar(args, rules, console)
        if args.command == "check-image":
            return _check_image(args, rules, console)
        return _evaluate(args, rules, console)
    except HotpatchError as error:
        print(f"hotpatch: error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _calendar(args: argparse.Namespace, rules: Rules, console: Console) -> int:
    start = args.start or YearMonth.of(datetime.now(UTC))
    slots = rules.calendar.months(OsFamily(args.os), start, args.months)
    if args.format == "json":
        _print_json(calendar_json(slots))
    else:
        print_calendar(console, args.os, slots)
    return EXIT_OK


def _check_image(args: argparse.Namespace, rules: Rules, console: Console) -> int:
    image = ImageRef(publisher=args.publisher, offer=args.offer, sku=args.sku)
    verdict = image_eligibility(image, rules.images, rules.policy)
    answer = {
        "eligible": verdict.eligible,
        "os": verdict.os.value if verdict.os else None,
        "reasons": [{"code": r.code, "message": r.message} for r in verdict.reasons],
    }
    if args.format == "json":
        _print_json(answer)
    else:
        word = "[green]eligible[/]" if verdict.eligible else "[red]not eligible[/]"
        console.print(f"{args.publisher}/{args.offer}/{args.sku}: {word} ({answer['os'] or '-'})")
        for reason in verdict.reasons:
            console.print(f"  {reason.code}: {reason.message}")
    return EXIT_OK


def _evaluate(args: argparse.Namespace, rules: Rules, console: Console) -> int:
    now = args.now or datetime.now(UTC)
    rows = read_rows(args.inventory)
    result = evaluate_rows(rows, rules, now)
    if args.format == "table":
        print_summary(
            console,
            result.summary,
            result.verdicts,
            args.limit,
            f"Compliance of {args.inventory.name} at {now:%Y-%m-%d %H:%M}Z",
        )
        return EXIT_OK
    if args.format == "json":
        document = report_json(
            result.verdicts,
            result.summary,
            now,
            rows=result.rows,
            ignored_rows=result.ignored_rows,
        )
        text = json.dumps(document, indent=1) + "\n"
    else:
        text = report_csv(result.verdicts)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        console.print(f"wrote {len(result.verdicts)} machines to {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
