"""`hotpatch catalog update`: the release catalog refreshed from Microsoft's release page."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from hotpatch import __version__
from hotpatch.core.models import Channel, OsFamily
from hotpatch.core.releases import Release, ReleaseCatalog, ReleaseCatalogFile
from hotpatch.data import RELEASES_FILE, load_release_catalog
from hotpatch.errors import (
    CatalogConflictError,
    ConfigurationError,
    DataFileError,
    ReleasePageError,
)
from hotpatch.release_page import PAGE_URL, PageRow, ReleasePage, parse_release_page

#: The page as served is a few hundred kilobytes; anything this large is not it.
SOURCE_LIMIT = 8 * 1024 * 1024
FETCH_TIMEOUT = 30.0
SHIPPED = f"hotpatch/data/{RELEASES_FILE} (shipped)"
_FIELDS = ("date", "kind", "build", "kb", "out_of_band", "channel")


@dataclass(frozen=True, slots=True)
class Conflict:
    """A page row that contradicts a catalog row: the catalog row stays as it is."""

    page: Release
    catalog: Release
    where: str
    problem: str


@dataclass(frozen=True, slots=True)
class CatalogUpdate:
    """What the page adds to the catalog, and the catalog it would write."""

    source: str
    base: str
    page: ReleasePage
    added: tuple[tuple[Release, str], ...]
    #: Catalog rows the page completes (a KB the catalog had not recorded), as completed.
    completed: tuple[tuple[Release, str], ...]
    unchanged: tuple[Release, ...]
    conflicts: tuple[Conflict, ...]
    covers_before: str | None
    covers_after: str | None
    document: dict[str, Any]

    @property
    def changes(self) -> bool:
        return bool(self.added or self.completed) or self.covers_after != self.covers_before

    def summary(self, output: Path | None = None, written: bool = False) -> dict[str, Any]:
        """The JSON report of `hotpatch catalog update --format json`."""
        return {
            "source": self.source,
            "page": self.page.canonical_url,
            "catalog": self.base,
            "output": str(output) if output else None,
            "written": written,
            "covers_through": {"before": self.covers_before, "after": self.covers_after},
            "counts": {
                "added": len(self.added),
                "completed": len(self.completed),
                "unchanged": len(self.unchanged),
                "conflicts": len(self.conflicts),
                "planned_months": self.page.planned,
                "skipped_rows": self.page.skipped,
            },
            "added": [release_json(r) | {"where": where} for r, where in self.added],
            "completed": [release_json(r) | {"where": where} for r, where in self.completed],
            "conflicts": [
                {
                    "page": release_json(c.page),
                    "catalog": release_json(c.catalog),
                    "where": c.where,
                    "problem": c.problem,
                }
                for c in self.conflicts
            ],
            "unchanged": [release_json(r) for r in self.unchanged],
        }


def release_json(release: Release) -> dict[str, Any]:
    """A catalog row as `releases.json` writes it (out_of_band only when true)."""
    row: dict[str, Any] = {
        "os": release.os.value,
        "date": release.date.isoformat(),
        "kind": release.kind.value if release.kind else None,
        "build": release.build,
        "kb": release.kb,
    }
    if release.out_of_band:
        row["out_of_band"] = True
    row["channel"] = release.channel.value
    return row


# --- reading the page --------------------------------------------------------------------


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http and https only (never to a file or another scheme)."""

    def redirect_request(  # noqa: PLR0917 (urllib's signature)
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise ReleasePageError(f"{req.full_url}: redirected to {newurl}, not http(s)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def is_url(source: str) -> bool:
    return urlsplit(source).scheme.lower() in ("http", "https")


def read_source(source: str, *, timeout: float = FETCH_TIMEOUT, limit: int = SOURCE_LIMIT) -> str:
    """The page's HTML from an http(s) URL or a file path, at most `limit` bytes."""
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        data = _fetch(source, timeout, limit)
    elif len(scheme) > 1 and not Path(source).exists():
        # ftp:, file:, data: and the like; one letter is a Windows drive, not a scheme.
        raise ReleasePageError(f"{source}: only http, https and file paths are read")
    else:
        data = _read_file(Path(source), limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ReleasePageError(
            f"{source}: not UTF-8 text (byte {error.start}: {error.reason})"
        ) from error


def _read_file(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise ReleasePageError(f"{path}: not a regular file")
            data = stream.read(limit + 1)
    except OSError as error:
        raise ReleasePageError(f"{path}: cannot read: {error.strerror or error}") from error
    if len(data) > limit:
        raise ReleasePageError(f"{path}: larger than {limit:,} bytes; not the release page")
    return data


def _fetch(url: str, timeout: float, limit: int) -> bytes:
    opener = urllib.request.build_opener(_HttpOnlyRedirects())
    request = urllib.request.Request(
        url, headers={"User-Agent": f"hotpatch/{__version__}", "Accept": "text/html"}
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > limit:
                raise ReleasePageError(f"{url}: {int(length):,} bytes, over {limit:,}")
            data: bytes = response.read(limit + 1)
    except urllib.error.HTTPError as error:
        raise ReleasePageError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise ReleasePageError(f"{url}: cannot fetch: {error.reason}") from None
    except TimeoutError:
        raise ReleasePageError(f"{url}: no answer within {timeout:g} s") from None
    except OSError as error:
        raise ReleasePageError(f"{url}: cannot fetch: {error}") from None
    if len(data) > limit:
        raise ReleasePageError(f"{url}: larger than {limit:,} bytes; not the release page")
    return data


# --- the current catalog ------------------------------------------------------------------


def load_base(candidates: Iterable[Path | None]) -> tuple[str, dict[str, Any]]:
    """The catalog in force: the first candidate file that exists, else the shipped one."""
    for path in candidates:
        if path is not None and (path.exists() or path.is_symlink()):
            load_release_catalog(path)  # an invalid catalog fails here, naming its entry
            return str(path), json.loads(path.read_text(encoding="utf-8"))
    text = resources.files("hotpatch.data").joinpath(RELEASES_FILE).read_text(encoding="utf-8")
    return SHIPPED, json.loads(text)


# --- the difference -----------------------------------------------------------------------


def _release(row: PageRow) -> Release:
    try:
        return Release(
            os=row.os,
            date=row.date,
            kind=row.kind,
            build=row.build,
            kb=row.kb,
            out_of_band=row.out_of_band,
            channel=Channel(row.channel),
        )
    except ValidationError as error:
        problem = "; ".join(item["msg"].removeprefix("Value error, ") for item in error.errors())
        raise ReleasePageError(f"{row.where}: {problem}") from None


def _differences(catalog: Release, page: Release) -> list[str]:
    return [
        f"{name}: catalog {getattr(catalog, name)!s}, page {getattr(page, name)!s}"
        for name in _FIELDS
        if getattr(catalog, name) != getattr(page, name)
    ]


def _covers_through(
    base: ReleaseCatalogFile, page: Sequence[Release], before: str | None
) -> str | None:
    """The newest month the page gives a hotpatch-track release for, for every catalog OS.

    An OS whose program has ended counts as covered once the page reaches its last month.
    Never earlier than the catalog's own horizon.
    """
    systems: set[OsFamily] = {r.os for r in base.releases} | {p.os for p in base.programs}
    ends = {p.os: p.last_month for p in base.programs}
    newest: list[str] = []
    for os_ in systems:
        months = [r.month for r in page if r.os is os_ and r.on_track and not r.out_of_band]
        if not months:
            return before
        last, end = max(months), ends.get(os_)
        if end is None or last < end:
            newest.append(last)
    if not newest:
        return before
    candidate = min(newest)
    return candidate if before is None or candidate > before else before


def plan_update(html: str, base_label: str, document: dict[str, Any], source: str) -> CatalogUpdate:
    """Read the page and compare it with the catalog `document`; nothing is written."""
    try:
        base = ReleaseCatalogFile.model_validate(document)
    except ValidationError as error:
        raise DataFileError(
            f"{base_label}: not a release catalog: {error.errors()[0]['msg']}"
        ) from None
    page = parse_release_page(html)
    existing = list(base.releases)
    by_kb = {(r.os, r.kb): i for i, r in enumerate(existing) if r.kb is not None}
    by_build = {(r.os, r.build): i for i, r in enumerate(existing)}
    monthly = {(r.os, r.channel, r.month): r for r in existing if not r.out_of_band}
    merged = list(existing)
    added: list[tuple[Release, str]] = []
    completed: list[tuple[Release, str]] = []
    unchanged: list[Release] = []
    conflicts: list[Conflict] = []
    page_releases: list[Release] = []
    for row in page.rows:
        release = _release(row)
        page_releases.append(release)
        index = by_kb.get((release.os, row.kb))
        if index is None:
            index = by_build.get((release.os, release.build))
        if index is not None:
            known = existing[index]
            if known == release:
                unchanged.append(known)
            elif known.kb is None and known.model_copy(update={"kb": release.kb}) == release:
                merged[index] = release  # the catalog had not recorded the KB; said, not silent
                completed.append((release, row.where))
            else:
                problem = "; ".join(_differences(known, release))
                conflicts.append(Conflict(release, known, row.where, problem))
            continue
        clash = monthly.get((release.os, release.channel, release.month))
        if clash is not None and not release.out_of_band:
            problem = (
                f"the catalog holds {clash.kb or 'a release'} (build {clash.build}) as the "
                f"{release.os.value} {release.channel.value}-channel release of {release.month}"
            )
            conflicts.append(Conflict(release, clash, row.where, problem))
            continue
        merged.append(release)
        added.append((release, row.where))
    before = base.covers_through
    after = _covers_through(base, page_releases, before)
    new_document = dict(document)
    sources = list(base.sources)
    if PAGE_URL not in sources:
        sources.insert(0, PAGE_URL)
    new_document["sources"] = sources
    new_document["covers_through"] = after
    merged.sort(key=lambda r: (r.os, r.date, r.channel is Channel.REGULAR, r.revision))
    new_document["releases"] = [release_json(r) for r in merged]
    if not conflicts:
        _check_loads(new_document, base_label)
    return CatalogUpdate(
        source=source,
        base=base_label,
        page=page,
        added=tuple(added),
        completed=tuple(completed),
        unchanged=tuple(unchanged),
        conflicts=tuple(conflicts),
        covers_before=before,
        covers_after=after,
        document=new_document,
    )


def _check_loads(document: dict[str, Any], base_label: str) -> None:
    """The merged catalog must load as the service loads it (a duplicate month, say)."""
    try:
        parsed = ReleaseCatalogFile.model_validate(document)
        ReleaseCatalog(parsed.releases, programs=parsed.programs)
    except (ValidationError, ValueError) as error:
        raise DataFileError(
            f"{base_label} with the page's rows would not load: {error}".splitlines()[0]
        ) from error


def conflict_message(update: CatalogUpdate) -> str:
    """One line: how many rows conflict, and the first of them."""
    first = update.conflicts[0]
    return (
        f"{len(update.conflicts)} row(s) of the page contradict {update.base}; nothing written "
        f"(first: {first.page.kb} at {first.where}: {first.problem})"
    )


def print_update(console: Console, update: CatalogUpdate, target: Path | None) -> None:
    """The difference as tables: added, completed and conflicting rows, then the counts."""
    headers = ("os", "date", "track", "kind", "build", "KB", "out of band", "read from")

    def table(title: str, rows: Iterable[tuple[Release, str]], style: str) -> None:
        grid = Table(title=title, title_style=style, title_justify="left")
        for header in headers:
            grid.add_column(header)
        for release, where in rows:
            grid.add_row(
                release.os.value,
                release.date.isoformat(),
                release.channel.value,
                release.kind.value if release.kind else "-",
                release.build,
                release.kb or "-",
                "yes" if release.out_of_band else "",
                where,
                style=style,
            )
        console.print(grid)

    if update.added:
        table(f"Added ({len(update.added)})", update.added, "green")
    if update.completed:
        table(f"KB filled in ({len(update.completed)})", update.completed, "cyan")
    if update.conflicts:
        grid = Table(title=f"Conflicts ({len(update.conflicts)})", title_style="red")
        for header in ("os", "KB", "read from", "what differs"):
            grid.add_column(header)
        for conflict in update.conflicts:
            grid.add_row(
                conflict.page.os.value,
                conflict.page.kb or "-",
                conflict.where,
                conflict.problem,
                style="red",
            )
        console.print(grid)
    page = update.page
    console.print(
        f"{len(update.added)} added, {len(update.completed)} completed, "
        f"{len(update.unchanged)} unchanged, {len(update.conflicts)} conflict(s) against "
        f"{update.base}; catalog covers through {update.covers_before or '-'} -> "
        f"{update.covers_after or '-'} ({page.planned} calendar month(s) not shipped yet, "
        f"{page.skipped} history row(s) outside the program or without a KB)",
        markup=False,
        highlight=False,
    )
    if target is not None:
        console.print(f"catalog file: {target}", markup=False, highlight=False)


# --- writing ------------------------------------------------------------------------------


def check_target(target: Path) -> None:
    """A catalog is written to a regular file (or a new one) in an existing directory."""
    if target.is_symlink():
        raise ConfigurationError(
            f"{target}: a symbolic link; name the file it points to (a link is never "
            "written through or replaced)"
        )
    if target.exists() and not target.is_file():
        raise ConfigurationError(f"{target}: not a regular file")
    if not target.parent.is_dir():
        raise ConfigurationError(f"{target.parent}: no such directory for the catalog")


def write_catalog(update: CatalogUpdate, target: Path) -> None:
    """Write the updated catalog to `target` atomically; never over a conflict or a symlink.

    The new file is written beside the target under a fresh name (created exclusively, so no
    planted link is followed), checked by loading it as the service does, then renamed over
    the target: a reader sees the old catalog or the new one, never half of one.
    """
    if update.conflicts:
        raise CatalogConflictError(conflict_message(update))
    check_target(target)
    folder = target.parent
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o644
    text = json.dumps(update.document, indent=1, ensure_ascii=False) + "\n"
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
        load_release_catalog(Path(temporary))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_directory(folder)


def _sync_directory(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename is done all the same
    finally:
        os.close(descriptor)


# --- the use case -------------------------------------------------------------------------


def update_catalog(
    source: str,
    *,
    output: Path | None,
    configured: Path | None,
    write: bool,
    timeout: float = FETCH_TIMEOUT,
) -> tuple[CatalogUpdate, Path | None, bool]:
    """Compare the page at `source` with the catalog in force; write only when asked.

    The catalog in force is `output` if it exists, else the configured catalog
    (HOTPATCH_RELEASE_CATALOG) if it exists, else the shipped one. The written file is
    `output`, else the configured path. Returns the update, the target and whether it was
    written: an update with conflicts is never written (the caller reports them).
    """
    target = output or configured
    if write and target is None:
        raise ConfigurationError(
            "--write needs a file: set HOTPATCH_RELEASE_CATALOG or pass --output FILE "
            "(the shipped catalog is never written)"
        )
    if write and target is not None:
        check_target(target)  # before anything is read: a planted link is refused outright
    base_label, document = load_base([output, configured])
    html = read_source(source, timeout=timeout)
    update = plan_update(html, base_label, document, source)
    if not write or update.conflicts:
        return update, target, False
    assert target is not None
    write_catalog(update, target)
    return update, target, True
