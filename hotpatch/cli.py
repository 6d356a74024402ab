"""The `hotpatch` command."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    ExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from hotpatch import __version__
from hotpatch.bulk import collector_off_for_good
from hotpatch.core.calendar import YearMonth
from hotpatch.core.eligibility import image_eligibility
from hotpatch.core.models import ImageRef, OsFamily
from hotpatch.errors import AzureError, HotpatchError
from hotpatch.export import read_rows
from hotpatch.report import (
    calendar_json,
    print_calendar,
    print_catalog_notice,
    print_summary,
    report_csv,
    report_json,
)
from hotpatch.service import Rules, evaluate_rows
from hotpatch.settings import Settings

EXIT_OK = 0
EXIT_USAGE = 2
#: Azure refused or failed (access, throttling, outage), after every retry the policy allows.
EXIT_AZURE = 3
EXIT_INTERRUPTED = 130


class UsageError(HotpatchError):
    """Options that do not fit together."""


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

    sweep = commands.add_parser(
        "sweep", help="inventory every machine in scope and judge it (Azure or the sandbox)"
    )
    _target_options(sweep)
    assess = commands.add_parser(
        "assess",
        help="sweep, then start patch assessments where they are due (a dry run unless --yes)",
    )
    _target_options(assess)
    assess.add_argument(
        "--yes", action="store_true", help="start the assessments (default: only list them)"
    )

    sandbox = commands.add_parser("sandbox", help="the local Azure-compatible sandbox")
    sandbox_commands = sandbox.add_subparsers(
        dest="sandbox_command", required=True, parser_class=_Parser
    )
    serve = sandbox_commands.add_parser("serve", help="serve an estate over HTTPS until Ctrl-C")
    _estate_options(serve)
    serve.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    serve.add_argument("--state-dir", type=Path, help="where the CA certificate is written")
    serve.add_argument(
        "--no-quota", action="store_true", help="switch off the Resource Graph quota"
    )
    export = sandbox_commands.add_parser("export", help="write a generated estate as a raw export")
    _estate_options(export)
    export.add_argument("--output", type=Path, required=True)

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


def _target_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--sandbox", action="store_true", help="against an in-process sandbox estate"
    )
    where.add_argument("--sandbox-url", help="against a running sandbox (hotpatch sandbox serve)")
    parser.add_argument("--sandbox-ca", type=Path, help="the running sandbox's CA certificate")
    _estate_options(parser)
    parser.add_argument(
        "--now",
        type=_moment,
        help="judge as of this instant (default: the clock; for "
        "--sandbox, the estate's as-of time)",
    )
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=Path("hotpatch-reports"),
        help="where the full JSON report is written (default ./hotpatch-reports)",
    )
    parser.add_argument("--limit", type=int, default=15, help="machines listed in the table")


def _estate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--machines", type=_positive, default=2000, help="estate size (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="estate seed (default 1)")
    parser.add_argument(
        "--subscriptions", type=_positive, default=4, help="estate subscriptions (default 4)"
    )
    parser.add_argument(
        "--as-of",
        type=_moment,
        help="the instant the estate is observed (default: a week after the newest release "
        "in the catalog)",
    )
    parser.add_argument(
        "--import", dest="import_file", type=Path, help="serve this raw export instead"
    )


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Piped output keeps whole columns (rich would squeeze tables to 80 columns).
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        settings = Settings.from_env(os.environ if environ is None else environ)
        if args.command == "catalog":  # before the rules: the catalog file may not exist yet
            return _catalog_update(args, settings, console)
        rules = Rules.from_settings(settings)
        if args.command == "calendar":
            return _calendar(args, rules, console)
        if args.command == "check-image":
            return _check_image(args, rules, console)
        if args.command == "sweep":
            return _sweep(args, settings, rules, console)
        if args.command == "assess":
            return _assess(args, settings, rules, console)
        if args.command == "sandbox":
            return _sandbox(args, rules, console)
        return _evaluate(args, rules, console)
    except AzureError as error:
        print(f"hotpatch: azure: {error}", file=sys.stderr)
        return EXIT_AZURE
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
    collector_off_for_good()  # a one-shot command over acyclic records: see hotpatch.bulk
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
        text = report_csv(result.verdicts, result.summary)
    print_catalog_notice(Console(stderr=True), result.summary)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        console.print(f"wrote {len(result.verdicts)} machines to {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a command talks: Azure, a running sandbox, or one started for the command."""

    inventory: Any
    scope: Any
    now: datetime
    #: Opens the patch operations adapter (and its credential) for the same endpoint.
    patch_operations: Callable[[], AbstractAsyncContextManager[Any]]


@contextmanager
def _target(
    args: argparse.Namespace, settings: Settings, rules: Rules, console: Console
) -> Iterator[_Target]:
    """Everything opened for the target is closed when the command ends."""
    from hotpatch.azure.compute import ARM_ENDPOINT, ComputePatchOperations
    from hotpatch.azure.credentials import (
        AsyncStaticTokenCredential,
        StaticTokenCredential,
        async_azure_credential,
        azure_credential,
    )
    from hotpatch.azure.resource_graph import ResourceGraphInventory, resource_graph_client
    from hotpatch.ports import Scope

    with ExitStack() as stack:
        base_url: str | None = None
        ca: str | None = None
        scope = Scope(settings.subscriptions, settings.management_groups)
        now = args.now or datetime.now(UTC)
        identity = settings.managed_identity_client_id
        if args.sandbox:
            from hotpatch.sandbox.session import running_sandbox

            with console.status(f"generating a {args.machines:,}-machine estate…"):
                as_of, estate = _estate(args, rules)
            sandbox = stack.enter_context(running_sandbox(estate))
            console.print(f"sandbox: {sandbox.base_url} (CA {sandbox.ca_path})", style="dim")
            base_url, ca, scope, now = (
                sandbox.base_url,
                str(sandbox.ca_path),
                Scope(),
                args.now or as_of,
            )
        elif args.sandbox_url:
            if args.sandbox_ca is None:
                raise UsageError("--sandbox-url needs --sandbox-ca (the path serve printed)")
            if not args.sandbox_ca.is_file():
                raise UsageError(f"--sandbox-ca {args.sandbox_ca}: no such file")
            base_url, ca = args.sandbox_url, str(args.sandbox_ca)
        sandboxed = base_url is not None
        credential: Any = (
            StaticTokenCredential()
            if sandboxed
            else stack.enter_context(azure_credential(identity))
        )
        client = stack.enter_context(
            resource_graph_client(credential, base_url=base_url, connection_verify=ca)
        )

        @asynccontextmanager
        async def patch_operations() -> AsyncIterator[Any]:
            opened = AsyncStaticTokenCredential() if sandboxed else async_azure_credential(identity)
            async with (
                opened as async_credential,
                ComputePatchOperations(
                    credential=async_credential,
                    base_url=base_url or ARM_ENDPOINT,
                    connection_verify=ca or True,
                ) as operations,
            ):
                yield operations

        yield _Target(ResourceGraphInventory(client), scope, now, patch_operations)


def _sweep(args: argparse.Namespace, settings: Settings, rules: Rules, console: Console) -> int:
    with _target(args, settings, rules, console) as target:
        _run_sweep(args, target.inventory, target.scope, rules, now=target.now, console=console)
    return EXIT_OK


def _assess(args: argparse.Namespace, settings: Settings, rules: Rules, console: Console) -> int:
    from hotpatch.service import assessment_targets

    with _target(args, settings, rules, console) as target:
        swept = _run_sweep(
            args, target.inventory, target.scope, rules, now=target.now, console=console
        )
        machines = assessment_targets(swept.evaluation.verdicts)
        if not machines:
            console.print("No machine needs an assessment.")
            return EXIT_OK
        if not args.yes:
            console.print(
                f"[bold]Dry run:[/] {len(machines)} machine(s) need an assessment "
                "(never assessed, stale or failed). Nothing was started; run again with --yes."
            )
            for machine in machines[: args.limit]:
                console.print(f"  would assess {machine.id}")
            if len(machines) > args.limit:
                console.print(f"  … and {len(machines) - args.limit} more")
            return EXIT_OK

        args.report_dir.mkdir(parents=True, exist_ok=True)
        journal = args.report_dir / (
            f"assess-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}.jsonl"
        )
        counts: Counter[str] = Counter()
        resumable = 0

        async def assess(on_outcome: Callable[[Any], None]) -> Any:
            async with target.patch_operations() as operations:
                return await operations.assess(machines, on_outcome=on_outcome)

        # One line per outcome, written as it comes: an interrupted run keeps what it learnt,
        # including the resume tokens of operations still running.
        with journal.open("x", encoding="utf-8") as lines:

            def record(outcome: Any) -> None:
                nonlocal resumable
                lines.write(outcome.model_dump_json() + "\n")
                lines.flush()
                counts[outcome.status.value] += 1
                resumable += bool(outcome.resumable)

            try:
                _with_progress(
                    console, f"assessing {len(machines)} machine(s)", len(machines), assess, record
                )
            except KeyboardInterrupt:
                console.print(f"[yellow]Interrupted; outcomes so far are in {journal}[/]")
                return EXIT_INTERRUPTED
    console.print(
        "Assessments: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    )
    if resumable:
        console.print(
            f"[yellow]{resumable} operation(s) still running; their resume tokens are in "
            f"{journal}[/]"
        )
    console.print(f"Outcomes: {journal}")
    return EXIT_OK


def _with_progress(
    console: Console,
    label: str,
    total: int,
    run: Callable[[Callable[[Any], None]], Any],
    each: Callable[[Any], None],
) -> Any:
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task(label, total=total)

        def heard(item: Any) -> None:
            each(item)
            progress.advance(task)

        return asyncio.run(run(heard))


def _run_sweep(
    args: argparse.Namespace,
    inventory: Any,
    scope: Any,
    rules: Rules,
    *,
    now: datetime,
    console: Console,
) -> Any:
    """Sweep, write the full report, print what the format asks for; returns the Sweep."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from hotpatch.ports import InventoryProgress
    from hotpatch.service import sweep

    progress = Progress(
        TextColumn("inventory of {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} rows, page {task.fields[pages]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task(scope.describe(), total=None, pages=0)

        def on_progress(update: InventoryProgress) -> None:
            progress.update(
                task, completed=update.rows, total=update.total_records, pages=update.pages
            )

        result = sweep(inventory, scope, rules, now=now, on_progress=on_progress)
    evaluation = result.evaluation
    document = report_json(evaluation.verdicts, evaluation.summary, now, sweep=result.summary())
    args.report_dir.mkdir(parents=True, exist_ok=True)
    report = args.report_dir / f"sweep-{now:%Y%m%dT%H%M%SZ}.json"
    report.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    if args.format in {"json", "csv"}:
        print_catalog_notice(Console(stderr=True), evaluation.summary)
    if args.format == "json":
        sys.stdout.write(json.dumps(document, indent=1) + "\n")
        return result
    if args.format == "csv":
        sys.stdout.write(report_csv(evaluation.verdicts, evaluation.summary))
        return result
    print_summary(
        console,
        evaluation.summary,
        evaluation.verdicts,
        args.limit,
        f"Compliance of {result.scope} at {now:%Y-%m-%d %H:%M}Z",
    )
    stats = result.inventory
    retries = ", ".join(f"{n} {kind}" for kind, n in sorted(stats.retries.items())) or "none"
    console.print(
        f"Swept {evaluation.summary.total:,} machines in {result.seconds:.1f} s: "
        f"{stats.pages} page(s), {stats.requests} request(s), retries: {retries}, "
        f"quota waits: {stats.quota_waits} ({stats.quota_wait_seconds:.1f} s)"
    )
    if stats.skipped_scopes:
        console.print(f"[yellow]Skipped (not readable): {', '.join(stats.skipped_scopes)}[/]")
    console.print(f"Full report: {report}")
    return result


def _estate(args: argparse.Namespace, rules: Rules) -> tuple[datetime, Any]:
    """The estate the --machines/--seed/--as-of/--import options describe, and its as-of."""
    from hotpatch.sandbox.session import default_as_of, sandbox_estate

    as_of = args.as_of or default_as_of(rules.releases)
    estate = sandbox_estate(
        rules.releases,
        machines=args.machines,
        seed=args.seed,
        as_of=as_of,
        subscriptions=args.subscriptions,
        export=args.import_file,
    )
    return as_of, estate


def _sandbox(args: argparse.Namespace, rules: Rules, console: Console) -> int:
    from hotpatch.export import write_rows

    as_of, estate = _estate(args, rules)
    if args.sandbox_command == "export":
        write_rows(args.output, estate.rows())
        console.print(
            f"wrote {len(estate.machine_ids()):,} machines ({len(estate.rows()):,} rows, "
            f"as of {as_of:%Y-%m-%dT%H:%MZ}) to {args.output}"
        )
        return EXIT_OK
    from hotpatch.sandbox.server import SandboxConfig, serve_forever

    config = SandboxConfig(port=args.port, state_dir=args.state_dir)
    if args.no_quota:
        config = replace(config, graph_quota=None)
    console.print(
        f"serving {len(estate.machine_ids()):,} machines as of {as_of:%Y-%m-%dT%H:%MZ}; "
        "sweep it with: hotpatch sweep --sandbox-url URL --sandbox-ca CA --now "
        f"{as_of:%Y-%m-%dT%H:%MZ}"
    )
    serve_forever(config, estate)
    return EXIT_OK


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


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
