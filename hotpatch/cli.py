"""The `hotpatch` command: parse the arguments, call a use case, render its answer.

Every failure ends as one line on stderr and an exit code: 2 for usage, settings, local files,
a bad sandbox URL or CA file; 3 when Azure refused or failed; 130 on Ctrl-C. With
`--format json|csv` only the document goes to stdout; status and progress go to stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, TextIO

from rich.console import Console
from rich.markup import escape

from hotpatch import __version__, bootstrap, files
from hotpatch.bootstrap import SandboxEndpoint, Target, World
from hotpatch.bulk import collector_off_for_good
from hotpatch.core.calendar import YearMonth
from hotpatch.core.compliance import Summary
from hotpatch.core.eligibility import image_eligibility
from hotpatch.core.models import ImageRef, OsFamily, Verdict
from hotpatch.core.plan import Mode, RemediationPolicy
from hotpatch.errors import AzureServiceError, HotpatchError, PartialScopeError, StoreError
from hotpatch.export import Export, read_export
from hotpatch.plan_report import plan_json, print_plan, print_remediation, remediation_json
from hotpatch.policy_file import load_policy
from hotpatch.ports import InventoryProgress, MachineRef, ProgressCallback
from hotpatch.ports.store import RunKind, VerdictRow
from hotpatch.remediation import Remediation, RemediationRun
from hotpatch.report import (
    ActionList,
    StreamedReport,
    calendar_json,
    clean,
    history_json,
    iso,
    print_calendar,
    print_catalog_notice,
    print_history,
    print_runs,
    print_summary,
    print_summary_of,
    report_csv,
    report_json,
    run_json,
)
from hotpatch.service import (
    Evaluation,
    Recording,
    Rules,
    Sweep,
    assessment_targets,
    evaluate_rows,
    machine_history,
    machines_named,
    run_records,
    scope_text,
    sweep,
)
from hotpatch.settings import Settings

if TYPE_CHECKING:
    from hotpatch.ports import Store
    from hotpatch.sandbox.estate import Estate

EXIT_OK = 0
EXIT_USAGE = 2
#: Azure refused or failed (access, throttling, outage), after every retry the policy allows.
EXIT_AZURE = 3
EXIT_INTERRUPTED = 130

#: The months the calendar answers for: wide enough for any real question, narrow enough that
#: every month it looks at (the month before, the forecast after) is a real calendar month.
FIRST_MONTH = YearMonth(2000, 1)
LAST_MONTH = YearMonth(9990, 12)
#: The largest estate the sandbox generates (a million machines is about 3 GB of rows).
MAX_MACHINES = 1_000_000
MAX_SUBSCRIPTIONS = 10_000
#: Where `hotpatch serve` listens unless told otherwise, and the shortest key it takes.
LOOPBACK = "127.0.0.1"
MIN_API_KEY = 16
#: Options that describe the sandbox's estate; sweep and assess take them with --sandbox only.
ESTATE_OPTIONS = ("machines", "seed", "subscriptions", "as_of", "import_file")
ESTATE_DEFAULTS = {"machines": 2000, "seed": 1, "subscriptions": 4}


class UsageError(HotpatchError):
    """Options that do not fit together."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line that names the problem, then exit 2 (argparse's own convention).
        self.exit(EXIT_USAGE, f"hotpatch: error: {message} (see --help)\n")


# -- argument types -------------------------------------------------------------------------------


def _moment(text: str) -> datetime:
    """ISO 8601; a time without a zone is read as UTC; inside the calendar's range."""
    try:
        value = datetime.fromisoformat(text)
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time (e.g. 2026-02-20T12:00Z)"
        ) from None
    except OverflowError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is outside the calendar ({_calendar_range()})"
        ) from None
    if not FIRST_MONTH <= YearMonth.of(value) <= LAST_MONTH:
        raise argparse.ArgumentTypeError(f"{text!r} is outside the calendar ({_calendar_range()})")
    return value


def _month(text: str) -> YearMonth:
    try:
        month = YearMonth.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not FIRST_MONTH <= month <= LAST_MONTH:
        raise argparse.ArgumentTypeError(f"{text} is outside the calendar ({_calendar_range()})")
    return month


def _calendar_range() -> str:
    return f"{FIRST_MONTH} to {LAST_MONTH}"


def _whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}, got {value:,}")
        return value

    return parse


_port = _whole(0, 65535)


def _image(text: str) -> ImageRef:
    """`publisher:offer:sku[:version]`, the URN `az vm create --image` takes."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(parts[:3]):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an image URN (publisher:offer:sku[:version])"
        )
    return ImageRef(publisher=parts[0], offer=parts[1], sku=parts[2])


# -- the parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hotpatch",
        description="Keep Windows Server machines in Azure on the hotpatch cycle, and say which "
        "are compliant, which are not, and why.",
        epilog="Exit codes: 0 success; 2 bad usage, setting or local file; 3 Azure refused or "
        "failed; 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"hotpatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    cal = commands.add_parser("calendar", help="baseline and hotpatch months for an OS")
    cal.add_argument("--os", required=True, choices=[o.value for o in OsFamily])
    cal.add_argument(
        "--from",
        dest="start",
        type=_month,
        help=f"first month, YYYY-MM (default: now; {_calendar_range()})",
    )
    cal.add_argument(
        "--months", type=_whole(1, 1200), default=12, help="how many months (default 12)"
    )
    cal.add_argument("--format", choices=("table", "json"), default="table")

    image = commands.add_parser(
        "check-image",
        help="can a marketplace image take hotpatches?",
        usage="hotpatch check-image [-h] [--format {table,json}] "
        "(PUBLISHER OFFER SKU | PUBLISHER:OFFER:SKU[:VERSION])",
        description="Give the image as three words, or as the URN az vm create --image takes "
        "(the version is not judged).",
    )
    image.add_argument("image", nargs="+", metavar="IMAGE", help="PUBLISHER OFFER SKU, or one URN")
    image.add_argument("--format", choices=("table", "json"), default="table")

    evaluate = commands.add_parser("evaluate", help="judge every machine of a raw export")
    evaluate.add_argument(
        "--inventory", required=True, type=Path, help="Resource Graph rows (JSON)"
    )
    evaluate.add_argument(
        "--now",
        type=_moment,
        help=f"judge as of this instant (ISO 8601; default: the clock; {_calendar_range()})",
    )
    evaluate.add_argument("--format", choices=("table", "json", "csv"), default="table")
    _output_option(evaluate)
    evaluate.add_argument(
        "--limit", type=_whole(0), default=25, help="machines listed in the table (default 25)"
    )

    sweep_parser = commands.add_parser(
        "sweep",
        help="inventory every machine in scope and judge it (Azure or the sandbox); the "
        "verdicts are kept in the store (HOTPATCH_STORE)",
    )
    _target_options(sweep_parser)
    sweep_parser.add_argument(
        "--no-store",
        action="store_true",
        help="do not record the sweep in the store (default: its verdicts become the latest "
        "snapshot and it is listed in `hotpatch runs`)",
    )
    assess_parser = commands.add_parser(
        "assess",
        help="sweep, then start patch assessments where they are due (a dry run unless --yes)",
    )
    _target_options(assess_parser)
    assess_parser.add_argument(
        "--yes", action="store_true", help="start the assessments (default: only list them)"
    )

    plan_parser = commands.add_parser(
        "plan",
        help="sweep, then show what the remediation policy would start now, and why every "
        "other machine gets nothing (starts nothing)",
    )
    _plan_options(plan_parser)
    remediate_parser = commands.add_parser(
        "remediate",
        help="sweep, plan and start the plan's assessments and installs, journalled so that a "
        "crash loses nothing (a dry run unless --yes)",
    )
    _plan_options(remediate_parser)
    remediate_parser.add_argument(
        "--yes", action="store_true", help="start the plan (default: a dry run that starts nothing)"
    )

    history = commands.add_parser(
        "history",
        help="one machine from the store: its latest verdict, state transitions and operations",
        description="A machine's verdict in the latest stored sweep, its state transitions "
        "(oldest first) and the operations journalled for it. A machine the store knows "
        "nothing of is said on stderr, with an empty history and exit 0.",
    )
    history.add_argument(
        "machine",
        metavar="MACHINE",
        help="its ARM id (any case), or its name when one machine of the latest sweep has it",
    )
    history.add_argument("--format", choices=("table", "json"), default="table")
    runs = commands.add_parser(
        "runs", help="the sweeps, plans and remediations the store recorded, newest first"
    )
    runs.add_argument("--kind", choices=[kind.value for kind in RunKind], help="only this kind")
    runs.add_argument(
        "--limit", type=_whole(1, 10_000), default=20, help="how many runs (default 20)"
    )
    runs.add_argument("--format", choices=("table", "json"), default="table")

    serve_api = commands.add_parser(
        "serve",
        help="serve the HTTP compliance API over the store (HOTPATCH_STORE) until Ctrl-C",
        description="Serve the HTTP API (the one the Function App serves) with uvicorn. Every "
        "request but /api/health and /api/openapi.json must carry the API key in the "
        "x-functions-key header or the code query parameter.",
    )
    serve_api.add_argument(
        "--host",
        default=LOOPBACK,
        help=f"address to listen on (default {LOOPBACK}; any other needs --api-key)",
    )
    serve_api.add_argument("--port", type=_port, default=0, help="port (default: a free one)")
    serve_api.add_argument(
        "--api-key",
        help=f"the key callers must send (at least {MIN_API_KEY} characters; default: a new "
        "random one, printed at start)",
    )

    sandbox = commands.add_parser("sandbox", help="the local Azure-compatible sandbox")
    sandbox_commands = sandbox.add_subparsers(
        dest="sandbox_command", required=True, parser_class=_Parser
    )
    serve = sandbox_commands.add_parser("serve", help="serve an estate over HTTPS until Ctrl-C")
    _estate_options(serve, defaults=True)
    serve.add_argument("--port", type=_port, default=0, help="port (default: a free one)")
    serve.add_argument("--state-dir", type=Path, help="where the CA certificate is written")
    serve.add_argument(
        "--no-quota", action="store_true", help="switch off the Resource Graph quota"
    )
    export = sandbox_commands.add_parser("export", help="write a generated estate as a raw export")
    _estate_options(export, defaults=True)
    export.add_argument("--output", type=Path, required=True, help="the export file to write")

    catalog = commands.add_parser("catalog", help="the release catalog")
    catalog_commands = catalog.add_subparsers(
        dest="catalog_command", required=True, parser_class=_Parser
    )
    update = catalog_commands.add_parser(
        "update",
        help="read Microsoft's Windows Server release information page; show, or --write, "
        "what it adds to the release catalog",
    )
    update.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="FILE|URL",
        help="the page: a saved copy, or "
        "https://learn.microsoft.com/windows/release-health/windows-server-release-info",
    )
    update.add_argument(
        "--write",
        action="store_true",
        help="write the catalog (default: only show the difference); never over a conflict",
    )
    update.add_argument(
        "--output", type=Path, help="the catalog file to write (default: HOTPATCH_RELEASE_CATALOG)"
    )
    update.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def _output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        type=Path,
        help="write the report (in --format, table included) to this file instead of stdout; "
        "it appears whole or not at all",
    )


def _target_options(parser: argparse.ArgumentParser) -> None:
    _where_options(parser)
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    _output_option(parser)
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=Path("hotpatch-reports"),
        help="where the full JSON report is written, in a new file each run "
        "(default ./hotpatch-reports, created if missing)",
    )
    parser.add_argument(
        "--limit", type=_whole(0), default=15, help="machines listed in the table (default 15)"
    )


def _plan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy",
        type=Path,
        help="the remediation policy file, YAML or JSON (default: HOTPATCH_REMEDIATION_POLICY; "
        "neither: report mode, nothing is started)",
    )
    _where_options(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    _output_option(parser)
    parser.add_argument(
        "--limit", type=_whole(0), default=25, help="operations listed in the table (default 25)"
    )


def _where_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--sandbox", action="store_true", help="against an in-process sandbox estate"
    )
    where.add_argument(
        "--sandbox-url", help="against a running sandbox (needs --sandbox-ca; see sandbox serve)"
    )
    parser.add_argument(
        "--sandbox-ca", type=Path, help="the running sandbox's CA certificate (--sandbox-url only)"
    )
    _estate_options(parser, defaults=False)
    parser.add_argument(
        "--now",
        type=_moment,
        help="judge as of this instant (default: the clock; with --sandbox, the estate's "
        "as-of time)",
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="succeed even when a configured subscription or management group cannot be read "
        "(default: exit 3 after reporting the rest)",
    )


def _estate_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    # For sweep and assess these describe the in-process sandbox: defaults are applied there,
    # so that giving one without --sandbox is an error rather than quietly ignored.
    only = "" if defaults else " (--sandbox only)"
    parser.add_argument(
        "--machines",
        type=_whole(1, MAX_MACHINES),
        default=ESTATE_DEFAULTS["machines"] if defaults else None,
        help=f"estate size (default 2000){only}",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=ESTATE_DEFAULTS["seed"] if defaults else None,
        help=f"estate seed (default 1){only}",
    )
    parser.add_argument(
        "--subscriptions",
        type=_whole(1, MAX_SUBSCRIPTIONS),
        default=ESTATE_DEFAULTS["subscriptions"] if defaults else None,
        help=f"estate subscriptions (default 4){only}",
    )
    parser.add_argument(
        "--as-of",
        type=_moment,
        help="the instant the estate is observed (default: a week after the newest release "
        f"in the catalog){only}",
    )
    parser.add_argument(
        "--import",
        dest="import_file",
        type=Path,
        help=f"serve this raw export instead of a generated estate{only}",
    )


# -- main -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    _tolerant_streams()
    _warnings_on_stderr()
    try:
        args = build_parser().parse_args(argv)
        settings = Settings.from_env(os.environ if environ is None else environ)
        return _run(args, settings)
    except KeyboardInterrupt as interrupt:
        detail = _one_line(interrupt) if str(interrupt) else ""
        _error(f"interrupted; {detail}" if detail else "interrupted")
        return EXIT_INTERRUPTED
    except AzureServiceError as error:
        print(f"hotpatch: azure: {_one_line(error)}", file=sys.stderr)
        return EXIT_AZURE
    except HotpatchError as error:
        _error(_one_line(error))
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say, and nowhere to say it.
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
        return EXIT_OK


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "catalog":  # before the rules: the catalog file may not exist yet
        return _catalog_update(args, settings, _stdout_console())
    if args.command == "history":  # the store's records need no catalog
        return _history(args, settings)
    if args.command == "runs":
        return _runs(args, settings)
    world = bootstrap.build(settings)
    if args.command == "calendar":
        return _calendar(args, world)
    if args.command == "check-image":
        return _check_image(args, world)
    if args.command == "sweep":
        return _sweep(args, world)
    if args.command == "assess":
        return _assess(args, world)
    if args.command in ("plan", "remediate"):
        return _remediate(args, world)
    if args.command == "sandbox":
        return _sandbox(args, world)
    if args.command == "serve":
        return _serve_api(args, world)
    return _evaluate(args, world)


def _error(message: str) -> None:
    print(f"hotpatch: error: {message}", file=sys.stderr)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _warnings_on_stderr() -> None:
    """A warning the service logs (a lease it could not give back) is one line on stderr, said
    the way the command says everything else."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("hotpatch: warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        root.addHandler(handler)


def _tolerant_streams() -> None:
    """Text the terminal's encoding cannot carry is shown escaped, not a crash."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _stdout_console() -> Console:
    # Piped output keeps whole columns (rich would squeeze tables to 80 columns).
    return Console() if sys.stdout.isatty() else Console(width=160)


def _stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


class _Out:
    """Where a command's report goes: stdout, or (with --output) a file written whole.

    Table output to a file is rendered without colour; status lines always go to stderr.
    """

    def __init__(self, output: Path | None) -> None:
        self.output = output
        self._buffer = io.StringIO() if output is not None else None
        self.console = (
            Console(file=self._buffer, width=160, color_system=None, highlight=False)
            if self._buffer is not None
            else _stdout_console()
        )
        self.status = _stderr_console()
        self._notes: list[str] = []
        self._summary: Summary | None = None
        self._stream: Callable[[TextIO], object] | None = None

    def note(self, text: str) -> None:
        """A status line, said once the report is safely out (a failure says only itself)."""
        self._notes.append(text)

    def catalog_notice(self, summary: Summary) -> None:
        self._summary = summary

    def write(self, text: str) -> None:
        if self._buffer is not None:
            self._buffer.write(text)
        else:
            sys.stdout.write(text)

    def stream(self, write: Callable[[TextIO], object]) -> None:
        """A document too big to hold as one text: `write` writes it to stdout now, or to the
        --output file (whole or not at all) at `close`. Instead of `write`, not with it."""
        if self.output is None:
            write(sys.stdout)
        else:
            self._stream = write

    def close(self, what: str) -> None:
        if self.output is not None and self._buffer is not None:
            if self._stream is not None:
                files.write_with(self.output, self._stream)
            else:
                files.write_whole(self.output, self._buffer.getvalue())
            # The document went to the file: stdout has nothing else to carry.
            _stdout_console().print(f"wrote {what} to {escape(str(self.output))}")
        if self._summary is not None:
            print_catalog_notice(self.status, self._summary)
        for note in self._notes:
            self.status.print(
                f"hotpatch: {escape(note)}", style="yellow", highlight=False, soft_wrap=True
            )


# -- calendar, check-image, evaluate --------------------------------------------------------------


def _calendar(args: argparse.Namespace, world: World) -> int:
    start: YearMonth = args.start or YearMonth.of(world.clock())
    if start.shift(args.months - 1) > LAST_MONTH:
        raise UsageError(
            f"--from {start} --months {args.months} runs past the calendar ({_calendar_range()})"
        )
    slots = world.rules.calendar.months(OsFamily(args.os), start, args.months)
    if args.format == "json":
        _print_json(calendar_json(slots))
    else:
        print_calendar(_stdout_console(), args.os, slots)
    return EXIT_OK


def _check_image(args: argparse.Namespace, world: World) -> int:
    words: list[str] = args.image
    if len(words) == 1:
        try:
            image = _image(words[0])
        except argparse.ArgumentTypeError as error:
            raise UsageError(str(error)) from None
    elif len(words) == 3:
        image = ImageRef(publisher=words[0], offer=words[1], sku=words[2])
    else:
        raise UsageError(
            "check-image takes PUBLISHER OFFER SKU, or one URN publisher:offer:sku[:version]"
        )
    rules = world.rules
    verdict = image_eligibility(image, rules.images, rules.policy)
    answer = {
        "eligible": verdict.eligible,
        "os": verdict.os.value if verdict.os else None,
        "reasons": [{"code": r.code, "message": r.message} for r in verdict.reasons],
    }
    if args.format == "json":
        _print_json(answer)
        return EXIT_OK
    console = _stdout_console()
    word = "[green]eligible[/]" if verdict.eligible else "[red]not eligible[/]"
    name = clean(f"{image.publisher}/{image.offer}/{image.sku}")
    console.print(f"{name}: {word} ({answer['os'] or '-'})")
    for reason in verdict.reasons:
        console.print(f"  {reason.code}: {clean(reason.message)}")
    return EXIT_OK


def _evaluate(args: argparse.Namespace, world: World) -> int:
    collector_off_for_good()  # a one-shot command over acyclic records: see hotpatch.bulk
    if args.output is not None:
        files.check_output_file(args.output)
    now = args.now or world.clock()
    export = read_export(args.inventory)
    result = evaluate_rows(export.rows, world.rules, now)
    out = _Out(args.output)
    notes = _input_notes(result, export)
    if args.format == "table":
        print_summary(
            out.console,
            result.summary,
            result.verdicts,
            args.limit,
            f"Compliance of {args.inventory.name} at {now:%Y-%m-%d %H:%M}Z",
        )
        for note in notes:
            out.console.print(f"[yellow]{escape(note)}[/]")
    else:
        out.catalog_notice(result.summary)
        for note in notes:
            out.note(note)
        if args.format == "json":
            document = report_json(
                result.verdicts,
                result.summary,
                now,
                rows=result.rows,
                ignored_rows=result.ignored_rows,
                duplicate_rows=len(result.duplicates),
                incomplete_export=export.incomplete,
            )
            out.write(json.dumps(document, indent=1) + "\n")
        else:
            out.write(report_csv(result.verdicts, result.summary))
    out.close(f"{len(result.verdicts):,} machines")
    return EXIT_OK


def _input_notes(result: Evaluation, export: Export | None = None) -> list[str]:
    """What the rows held besides machines: said wherever the report is read."""
    notes = []
    if result.ignored_rows:
        notes.append(
            f"{result.ignored_rows:,} row(s) ignored: not a machine, an assessment or an "
            "installation row"
        )
    if result.duplicates:
        sample = ", ".join(result.duplicates[:3])
        more = f" and {len(result.duplicates) - 3:,} more" if len(result.duplicates) > 3 else ""
        notes.append(
            f"{len(result.duplicates):,} duplicate machine row(s) (the same id, or one differing "
            f"only by case), each judged once: {sample}{more}"
        )
    if export is not None and export.incomplete:
        notes.append(
            "the export holds a $skipToken: Resource Graph had more rows than the file holds, "
            "so machines are missing; export every page"
        )
    return notes


# -- sweep and assess -----------------------------------------------------------------------------


@contextmanager
def _target(args: argparse.Namespace, world: World, status: Console) -> Iterator[Target]:
    """The endpoint the options name, open for the command, closed after it."""
    given = [name for name in ESTATE_OPTIONS if getattr(args, name) is not None]
    if given and not args.sandbox:
        flags = ", ".join("--" + name.replace("_", "-").replace("-file", "") for name in given)
        raise UsageError(f"{flags}: only with --sandbox (they describe its generated estate)")
    if args.sandbox_ca is not None and not args.sandbox_url:
        raise UsageError("--sandbox-ca goes with --sandbox-url")
    settings = world.settings
    if args.sandbox and (settings.subscriptions or settings.management_groups):
        which = "HOTPATCH_SUBSCRIPTIONS" if settings.subscriptions else "HOTPATCH_MANAGEMENT_GROUPS"
        status.print(
            f"hotpatch: note: --sandbox ignores {which}: it sweeps its whole generated estate",
            style="yellow",
        )
    if args.sandbox:
        for name, value in ESTATE_DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        with status.status(f"generating a {args.machines:,}-machine estate…"):
            as_of, estate = _estate(args, world.rules)
        with bootstrap.in_process_sandbox(estate, as_of) as target:
            assert target.sandbox is not None
            status.print(
                f"sandbox: {target.sandbox.base_url} (CA {target.sandbox.ca_file})", style="dim"
            )
            yield target
    elif args.sandbox_url:
        if args.sandbox_ca is None:
            raise UsageError("--sandbox-url needs --sandbox-ca (the CA file serve printed)")
        if not args.sandbox_ca.is_file():
            raise UsageError(f"--sandbox-ca {args.sandbox_ca}: no such file")
        endpoint = SandboxEndpoint(_sandbox_url(args.sandbox_url), args.sandbox_ca)
        with bootstrap.sandbox_target(endpoint, scope=bootstrap.scope_of(settings)) as target:
            yield target
    else:
        with bootstrap.azure_target(settings) as target:
            yield target


def _sandbox_url(text: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        _ = parts.port  # a port that is not a number, or out of range, raises here
    except ValueError as error:
        raise UsageError(f"--sandbox-url {text!r}: {error}") from None
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise UsageError(
            f"--sandbox-url {text!r}: expected https://HOST:PORT, as sandbox serve printed it"
        )
    return text.rstrip("/")


def _sweep(args: argparse.Namespace, world: World) -> int:
    """A sweep that streams: each page's verdicts go to the report being written, to the
    store's snapshot and to the counts; only the machines the table shows are kept."""
    out = _Out(args.output)
    _check_outputs(args)
    with ExitStack() as stack:
        # The store first: a bad HOTPATCH_STORE is said before any estate is built or swept.
        store = (
            None
            if args.no_store
            else stack.enter_context(bootstrap.compliance_store(world.settings))
        )
        if store is not None:
            # Judged by the release catalog the Function App's `catalog` timer keeps in the
            # store, if it keeps one, as the Function App's own sweeps are.
            world = _catalog_in_force(world, store, out.status)
        spool = stack.enter_context(StreamedReport(args.report_dir, csv=args.format == "csv"))
        needing = ActionList(args.limit)

        def on_verdicts(verdicts: Sequence[Verdict]) -> None:
            spool.add(verdicts)
            needing.add(verdicts)

        with _target(args, world, out.status) as target:
            now = args.now or target.as_of or world.clock()
            record = None
            if store is not None:
                record = Recording(
                    store,
                    bootstrap.operator(world.settings),
                    world.clock,
                    scope=_swept_where(args, target),
                    allow_partial=args.allow_partial,
                )
            with _sweep_progress(target, out.status) as on_progress:
                result = sweep(
                    target.inventory,
                    target.scope,
                    world.rules,
                    now=now,
                    on_progress=on_progress,
                    on_verdicts=on_verdicts,
                    keep_verdicts=False,
                    record=record,
                )
        evaluation = result.evaluation
        header = report_json(
            (),
            evaluation.summary,
            now,
            sweep=result.summary(),
            duplicate_rows=len(evaluation.duplicates),
        )
        report = files.write_new_with(
            args.report_dir,
            f"sweep-{now:%Y%m%dT%H%M%SZ}",
            ".json",
            lambda file: spool.write_json(file, header),
        )
        stored = _stored_line(result)
        if args.format == "table":
            _print_sweep(args, result, report, out.console, needing)
            if stored:
                out.console.print(escape(stored[:1].upper() + stored[1:]))
        else:
            out.catalog_notice(evaluation.summary)
            for note in _input_notes(evaluation):
                out.note(note)
            out.note(f"full report: {report}")
            if stored:
                out.note(stored)
            if args.format == "json":
                out.stream(lambda file: _copy_report(report, file))
            else:
                out.stream(lambda file: spool.write_csv(file, evaluation.summary))
        out.close(f"{evaluation.summary.total:,} machines")
    _partial_scope(args, result)
    return EXIT_OK


def _copy_report(report: Path, out: TextIO) -> None:
    with report.open(encoding=files.ENCODING) as document:
        shutil.copyfileobj(document, out)
    out.write("\n")


def _swept_where(args: argparse.Namespace, target: Target) -> str | None:
    """What a run record says was swept, when it is not Azure (whose scope says it)."""
    if args.sandbox:
        if args.import_file is not None:
            return f"in-process sandbox serving {args.import_file}"
        return f"in-process sandbox ({args.machines:,} machines, seed {args.seed})"
    if target.sandbox is not None:
        return f"sandbox {target.sandbox.base_url}: {scope_text(target.scope)}"
    return None


def _stored_line(result: Sweep) -> str | None:
    """Where the sweep was recorded (None: with --no-store)."""
    if result.run is None:
        return None
    if result.snapshot is None:
        return (
            f"run {result.run.id} {result.run.outcome}: not stored as the latest snapshot, as "
            "some scopes could not be read (--allow-partial accepts that)"
        )
    return f"stored as run {result.run.id} (hotpatch runs; hotpatch history MACHINE)"


def _assess(args: argparse.Namespace, world: World) -> int:
    out = _Out(args.output)
    _check_outputs(args)
    with ExitStack() as stack:
        # With --yes every assessment is journalled in the store before it is sent.
        store = (
            stack.enter_context(bootstrap.compliance_store(world.settings)) if args.yes else None
        )
        target = stack.enter_context(_target(args, world, out.status))
        result, report = _run_sweep(args, world, target, out)
        machines = assessment_targets(result.evaluation.verdicts)
        run = None
        outcomes: dict[str, str] = {}
        if store is not None and machines:
            run = _start_assessments(args, world, target, store, result, status=out.status)
            outcomes = _assessment_outcomes(store, run)
    document = {
        "evaluated_at": iso(result.evaluation.now),
        "report": str(report),
        "dry_run": not args.yes,
        "due": [m.id for m in machines],
        "assessments": _assessments_json(run, outcomes) if run is not None else None,
    }
    if args.format == "json":
        out.write(json.dumps(document, indent=1) + "\n")
    elif args.format == "csv":
        out.write(_assess_csv(machines, outcomes if run is not None else None))
    else:
        _print_sweep(args, result, report, out.console)
        _print_assess(args, machines, run, out.console)
    out.close(f"{len(machines):,} machines due")
    _partial_scope(args, result)
    return EXIT_OK


def _remediate(args: argparse.Namespace, world: World) -> int:
    """`plan` and `remediate`: a sweep, then the plan; `remediate --yes` applies it."""
    out = _Out(args.output)
    if args.output is not None:
        files.check_output_file(args.output)
    # The policy first: a bad file is said before anything is swept.
    policy = load_policy(args.policy or world.settings.remediation_policy)
    apply = args.command == "remediate" and args.yes
    with ExitStack() as stack:
        store = stack.enter_context(bootstrap.compliance_store(world.settings))
        world = _catalog_in_force(world, store, out.status)
        target = stack.enter_context(_target(args, world, out.status))
        remediation = _remediation(args, world, target, store, policy, status=out.status)
        clock = remediation.clock

        def machines() -> list[VerdictRow]:
            rows: list[VerdictRow] = []
            with _sweep_progress(target, out.status) as on_progress:
                result = sweep(
                    target.inventory,
                    target.scope,
                    world.rules,
                    now=clock(),
                    on_progress=on_progress,
                    on_verdicts=lambda page: rows.extend(map(VerdictRow.from_verdict, page)),
                    keep_verdicts=False,
                )
            _partial_scope(args, result)
            return rows

        if args.command == "plan":
            decided = remediation.plan(machines())
            document = plan_json(decided)
            if args.format == "json":
                out.write(json.dumps(document, indent=1) + "\n")
            else:
                print_plan(out.console, decided, limit=args.limit)
            out.close(f"{len(decided.operations):,} operation(s) planned")
            return EXIT_OK
        run = remediation.run(machines, apply=apply, after=machines)
    if args.format == "json":
        out.write(json.dumps(remediation_json(run), indent=1) + "\n")
    else:
        print_remediation(out.console, run, limit=args.limit)
    out.close(f"run {run.run.id}")
    if run.applied is not None and run.applied.stopped:
        raise StoreError(f"remediation stopped: {run.applied.stopped}")
    return EXIT_OK


def _catalog_in_force(world: World, store: Store, status: Console) -> World:
    """The world with the store's refreshed release catalog, if it has one (said on stderr)."""
    in_force = bootstrap.catalog_in_force(world, store)
    if in_force.source == "store":
        status.print(
            f"Release catalog: the store's, refreshed {in_force.since:%Y-%m-%d %H:%M} UTC",
            style="dim",
            highlight=False,
        )
        return bootstrap.World(world.settings, in_force.rules, world.clock)
    return world


def _check_outputs(args: argparse.Namespace) -> None:
    """Before a sweep starts, so that no sweep is lost to a report that cannot be written."""
    files.check_report_dir(args.report_dir)
    if args.output is not None:
        files.check_output_file(args.output)


def _run_sweep(
    args: argparse.Namespace, world: World, target: Target, out: _Out
) -> tuple[Sweep, Path]:
    """Sweep with progress on stderr, then write the full report to a new file."""
    now = args.now or target.as_of or world.clock()
    with _sweep_progress(target, out.status) as on_progress:
        result = sweep(
            target.inventory, target.scope, world.rules, now=now, on_progress=on_progress
        )
    evaluation = result.evaluation
    document = report_json(
        evaluation.verdicts,
        evaluation.summary,
        now,
        sweep=result.summary(),
        duplicate_rows=len(evaluation.duplicates),
    )
    report = files.write_new(
        args.report_dir, f"sweep-{now:%Y%m%dT%H%M%SZ}", ".json", json.dumps(document, indent=1)
    )
    if args.format != "table":
        out.catalog_notice(evaluation.summary)
        for note in _input_notes(evaluation):
            out.note(note)
        out.note(f"full report: {report}")
    if args.command == "sweep":
        if args.format == "json":
            out.write(json.dumps(document, indent=1) + "\n")
        elif args.format == "csv":
            out.write(report_csv(evaluation.verdicts, evaluation.summary))
    return result, report


@contextmanager
def _sweep_progress(target: Target, status: Console) -> Iterator[ProgressCallback]:
    """A progress bar of the inventory on stderr (none when stderr is not a terminal)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("inventory of {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} rows, page {task.fields[pages]}"),
        TimeElapsedColumn(),
        console=status,
        transient=True,
        disable=not status.is_terminal,  # a log file gets no bar, nor its blank lines
    )
    with progress:
        task = progress.add_task(escape(target.scope.describe()), total=None, pages=0)

        def on_progress(update: InventoryProgress) -> None:
            progress.update(
                task, completed=update.rows, total=update.total_records, pages=update.pages
            )

        yield on_progress


def _print_sweep(
    args: argparse.Namespace,
    result: Sweep,
    report: Path,
    console: Console,
    needing: ActionList | None = None,
) -> None:
    evaluation = result.evaluation
    print_summary_of(
        console,
        evaluation.summary,
        needing or ActionList.of(evaluation.verdicts, args.limit),
        f"Compliance of {result.scope} at {evaluation.now:%Y-%m-%d %H:%M}Z",
    )
    for note in _input_notes(evaluation):
        console.print(f"[yellow]{escape(note)}[/]")
    stats = result.inventory
    retries = ", ".join(f"{n} {kind}" for kind, n in sorted(stats.retries.items())) or "none"
    console.print(
        f"Swept {evaluation.summary.total:,} machines in {result.seconds:.1f} s: "
        f"{stats.pages} page(s), {stats.requests} request(s), retries: {retries}, "
        f"quota waits: {stats.quota_waits} ({stats.quota_wait_seconds:.1f} s)"
    )
    if stats.skipped_scopes:
        console.print(
            f"[yellow]Skipped (not readable): {escape(', '.join(stats.skipped_scopes))}[/]"
        )
    console.print(f"Full report: {escape(str(report))}")


def _partial_scope(args: argparse.Namespace, result: Sweep) -> None:
    skipped = result.inventory.skipped_scopes
    if skipped and not args.allow_partial:
        raise PartialScopeError(
            f"could not read {len(skipped)} scope(s): {', '.join(skipped)}; the report covers "
            "the rest (--allow-partial accepts that)"
        )


def _start_assessments(
    args: argparse.Namespace,
    world: World,
    target: Target,
    store: Store,
    result: Sweep,
    *,
    status: Console,
) -> RemediationRun:
    """Every assessment due, through the journal: an assess-only remediation of this sweep's
    machines (no ring, no window: an assessment changes nothing on a machine)."""
    rows = [VerdictRow.from_verdict(v) for v in result.evaluation.verdicts]
    policy = RemediationPolicy(mode=Mode.ASSESS, max_starts_per_run=max(1, len(rows)))
    remediation = _remediation(args, world, target, store, policy, status=status)
    try:
        return remediation.run(lambda: rows, apply=True)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            "every assessment started is in the store's journal; the next assess or remediate "
            "settles them"
        ) from None


def _remediation(
    args: argparse.Namespace,
    world: World,
    target: Target,
    store: Store,
    policy: RemediationPolicy,
    *,
    status: Console,
) -> Remediation:
    """The use case as of `--now` (or the sandbox estate's instant), else the clock."""
    now = args.now or target.as_of
    return bootstrap.remediation(
        world,
        target,
        store,
        policy,
        clock=bootstrap.rehearsal_clock(now) if now is not None else world.clock,
        on_progress=lambda line: status.print(escape(line), style="dim", soft_wrap=True),
    )


def _assessment_outcomes(store: Store, run: RemediationRun) -> dict[str, str]:
    """Machine key -> how its assessment of this run stands in the journal."""
    return {
        record.machine_id.casefold(): record.status.value
        for record in store.journal()
        if record.run_id == run.run.id
    }


def _assessments_json(run: RemediationRun, outcomes: dict[str, str]) -> dict[str, object]:
    counts = Counter(outcomes.values())
    return {
        "run": run.run.id,
        "outcomes": dict(sorted(counts.items())),
        "open": counts["started"] + counts["accepted"],
        "stopped": run.applied.stopped if run.applied is not None else None,
    }


def _print_assess(
    args: argparse.Namespace,
    machines: Sequence[MachineRef],
    run: RemediationRun | None,
    console: Console,
) -> None:
    if not machines:
        console.print("No machine needs an assessment.")
        return
    if run is None:
        console.print(
            f"[bold]Dry run:[/] {len(machines)} machine(s) need an assessment "
            "(never assessed, stale or failed). Nothing was started; run again with --yes."
        )
        for machine in machines[: args.limit]:
            console.print(f"  would assess {clean(machine.id)}")
        if len(machines) > args.limit:
            console.print(f"  … and {len(machines) - args.limit} more")
        return
    applied = run.applied
    outcomes = applied.outcomes if applied is not None else Counter[str]()
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items()))
    console.print(f"Assessments: {counts or 'none finished'}")
    excluded = sum(1 for skip in run.plan.skips if skip.code.value == "excluded")
    if excluded:
        console.print(f"{excluded} machine(s) tagged to be left alone were not assessed.")
    console.print(
        f"Journalled as run {escape(run.run.id)} in the store (`hotpatch history MACHINE` "
        "shows each machine's operations)."
    )


def _assess_csv(machines: Sequence[MachineRef], outcomes: dict[str, str] | None) -> str:
    from hotpatch.report import csv_text

    rows = [
        [
            m.id,
            "assess",
            "not_started" if outcomes is None else outcomes.get(m.key, "not_started"),
        ]
        for m in machines
    ]
    return csv_text(("id", "action", "outcome"), rows)


# -- the store: history and runs ------------------------------------------------------------------


def _history(args: argparse.Namespace, settings: Settings) -> int:
    asked = args.machine.strip().rstrip("/")
    with bootstrap.compliance_store(settings) as store:
        machine = _machine_id(store, asked)
        history = machine_history(store, machine)
    if args.format == "json":
        _print_json(history_json(history))
    else:
        print_history(_stdout_console(), history)
    if not history.known:
        empty = "" if history.snapshot is not None else "; no sweep is stored yet"
        _note(
            f"the store holds no verdict, transition or operation of {asked}{empty} ({STORE_HINT})"
        )
    return EXIT_OK


#: Where an empty answer may come from: the store the settings name.
STORE_HINT = "HOTPATCH_STORE names the store; by default .hotpatch/store in this directory"


def _machine_id(store: Store, asked: str) -> str:
    """An ARM id as given (the store compares ids without regard to case), or the id of the one
    machine of the latest snapshot with that name."""
    if asked.casefold().startswith("/subscriptions/"):
        return asked
    if "/" in asked or not asked:
        raise UsageError(
            f"MACHINE {asked!r}: give an ARM id (/subscriptions/…/virtualMachines/NAME) or a "
            "machine name"
        )
    named = machines_named(store, asked)
    if len(named) > 1:
        ids = ", ".join(row.id for row in named[:3])
        more = f" and {len(named) - 3} more" if len(named) > 3 else ""
        raise UsageError(
            f"{len(named)} machines of the latest sweep are named {asked!r}; give the ARM id "
            f"of one: {ids}{more}"
        )
    return named[0].id if named else asked


def _runs(args: argparse.Namespace, settings: Settings) -> int:
    kind = RunKind(args.kind) if args.kind else None
    with bootstrap.compliance_store(settings) as store:
        runs = run_records(store, kind, args.limit)
    if args.format == "json":
        _print_json({"runs": [run_json(run) for run in runs]})
    else:
        print_runs(_stdout_console(), runs)
    if not runs:
        _note(f"the store holds no {kind.value + ' ' if kind else ''}run yet ({STORE_HINT})")
    return EXIT_OK


def _note(text: str) -> None:
    _stderr_console().print(
        f"hotpatch: {escape(text)}", style="yellow", highlight=False, soft_wrap=True
    )


# -- the sandbox ----------------------------------------------------------------------------------


def _estate(args: argparse.Namespace, rules: Rules) -> tuple[datetime, Estate]:
    """The estate the --machines/--seed/--as-of/--import options describe, and its as-of."""
    from hotpatch.sandbox.session import default_as_of, sandbox_estate

    as_of: datetime = args.as_of or default_as_of(rules.releases)
    try:
        estate = sandbox_estate(
            rules.releases,
            machines=args.machines,
            seed=args.seed,
            as_of=as_of,
            subscriptions=args.subscriptions,
            export=args.import_file,
        )
    except ValueError as error:
        # The generator refuses what it cannot honestly build (an as-of before the catalog).
        raise UsageError(f"cannot build the estate: {_one_line(error)}") from error
    return as_of, estate


def _sandbox(args: argparse.Namespace, world: World) -> int:
    status = _stderr_console()
    if args.sandbox_command == "export":
        from hotpatch.export import write_rows

        files.check_output_file(args.output)
        as_of, estate = _estate(args, world.rules)
        write_rows(args.output, estate.rows())
        status.print(
            f"wrote {len(estate.machine_ids()):,} machines ({len(estate.rows()):,} rows, "
            f"as of {as_of:%Y-%m-%dT%H:%MZ}) to {escape(str(args.output))}"
        )
        return EXIT_OK
    return _serve(args, world, status)


def _serve(args: argparse.Namespace, world: World, status: Console) -> int:
    from hotpatch.sandbox.server import SandboxConfig
    from hotpatch.sandbox.session import running_sandbox

    state_dir: Path | None = args.state_dir
    if state_dir is not None:
        if state_dir.exists() and not state_dir.is_dir():
            raise UsageError(f"--state-dir {state_dir}: not a directory")
        files.check_report_dir(state_dir, "--state-dir")
    as_of, estate = _estate(args, world.rules)
    config = SandboxConfig(port=args.port, state_dir=state_dir)
    if args.no_quota:
        config = replace(config, graph_quota=None)
    stop = threading.Event()
    previous = _on_sigterm(lambda *_: stop.set())
    try:
        with ExitStack() as stack:
            try:
                sandbox = stack.enter_context(running_sandbox(estate, config))
            except (RuntimeError, OSError) as error:
                # A busy or forbidden port, an unwritable state directory: not an outage.
                said = _one_line(error)
                prefix = (
                    ""
                    if said.startswith("the sandbox could not start")
                    else "the sandbox could not start: "
                )
                raise UsageError(prefix + said) from error
            stdout = sys.stdout
            _say(stdout, f"hotpatch sandbox listening on {sandbox.base_url}")
            _say(stdout, f"CA certificate: {sandbox.ca_path}")
            _say(
                stdout,
                f"serving {len(estate.machine_ids()):,} machines as of {as_of:%Y-%m-%dT%H:%MZ}; "
                "sweep it with:",
            )
            _say(
                stdout,
                f"  hotpatch sweep --sandbox-url {sandbox.base_url} --sandbox-ca "
                f"{_quoted(str(sandbox.ca_path))} --now {as_of:%Y-%m-%dT%H:%MZ}",
            )
            while not stop.wait(1.0):
                pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


# -- the HTTP API ---------------------------------------------------------------------------------


def _serve_api(args: argparse.Namespace, world: World) -> int:
    """The HTTP API over the store, with uvicorn, until SIGINT (exit 130) or SIGTERM (exit 0)."""
    import secrets

    from hotpatch.api import create_app
    from hotpatch.api.server import base_url, bind, is_loopback, serve

    if args.api_key is None and not is_loopback(args.host):
        raise UsageError(
            f"--host {args.host}: listening beyond this machine needs an --api-key of your "
            "own (and the API speaks plain HTTP: put TLS in front of it)"
        )
    if args.api_key is not None and len(args.api_key.strip()) < MIN_API_KEY:
        raise UsageError(f"--api-key: at least {MIN_API_KEY} characters")
    key: str = args.api_key.strip() if args.api_key is not None else secrets.token_urlsafe(32)
    with bootstrap.compliance_store(world.settings) as store:
        try:
            sock = bind(args.host, args.port)
        except OSError as error:
            raise UsageError(
                f"cannot listen on {args.host}:{args.port}: {error.strerror or error}"
            ) from error
        url = base_url(sock)
        stdout = sys.stdout
        _say(stdout, f"hotpatch API listening on {url}")
        _say(stdout, "API key: " + ("as given (--api-key)" if args.api_key else key))
        shown = "$HOTPATCH_API_KEY" if args.api_key else key
        _say(stdout, f"  curl -H 'x-functions-key: {shown}' {url}/api/compliance/summary")
        _say(stdout, f"OpenAPI document: {url}/api/openapi.json")
        # uvicorn stops gracefully on SIGINT and SIGTERM, then raises the signal again: Ctrl-C
        # becomes KeyboardInterrupt (exit 130), and SIGTERM, handled here, a clean exit 0.
        previous = _on_sigterm(lambda *_: None)
        try:
            serve(create_app(store, world, api_key=key), sock)
        finally:
            sock.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def _on_sigterm(
    handler: Callable[[int, FrameType | None], None],
) -> Callable[[int, FrameType | None], object] | int | None:
    # SIGTERM (a service manager, `docker stop`) stops the sandbox as cleanly as Ctrl-C.
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def _say(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()


def _quoted(path: str) -> str:
    import shlex

    return shlex.quote(path)


# -- catalog update -------------------------------------------------------------------------------


def _catalog_update(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from hotpatch.catalog_update import conflict_message, print_update, update_catalog

    print(f"hotpatch: reading {args.source}", file=sys.stderr)
    update, target, written = update_catalog(
        args.source, output=args.output, configured=settings.release_catalog, write=args.write
    )
    if args.format == "json":
        _print_json(update.summary(target, written))
    else:
        print_update(console, update, target)
    if update.conflicts:
        print(f"hotpatch: error: {conflict_message(update)}", file=sys.stderr)
        return EXIT_USAGE
    if written:
        print(f"hotpatch: wrote {target}", file=sys.stderr)
    elif update.changes:
        print("hotpatch: nothing written; run again with --write", file=sys.stderr)
    return EXIT_OK


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
