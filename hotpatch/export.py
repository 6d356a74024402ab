"""Read and write raw Resource Graph exports (a bare list of rows, or an object with `data`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotpatch.bulk import collector_paused
from hotpatch.errors import InputError
from hotpatch.files import check_output_file, write_with


@dataclass(frozen=True, slots=True)
class Export:
    """The rows of an export file, and whether it says Resource Graph had more to give."""

    rows: list[Any]
    #: The file carries a `$skipToken`: it is one page (or a few) of a longer answer.
    incomplete: bool = False


def read_rows(path: Path) -> list[Any]:
    """The rows of an export file; InputError with a one-line reason when it cannot be read."""
    return read_export(path).rows


def read_export(path: Path) -> Export:
    """The export file at `path`; InputError with a one-line reason when it cannot be read."""
    try:
        text = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from error
    try:
        with collector_paused():
            document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from error
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not valid JSON: not UTF-8 text ({error.reason})") from error
    except RecursionError as error:
        # No export nests deeper than a few levels; a bomb of brackets must not crash the run.
        raise InputError(f"{path}: JSON nested too deep to be an export") from error
    if isinstance(document, list):
        return Export(document)
    if isinstance(document, dict) and "data" in document:
        rows = document["data"]
        if isinstance(rows, list):
            return Export(rows, incomplete=bool(document.get("$skipToken")))
        if isinstance(rows, dict) and "columns" in rows and "rows" in rows:
            raise InputError(
                f"{path}: rows are in table format; export with resultFormat objectArray "
                "(az graph query does by default)"
            )
        raise InputError(f'{path}: "data" is {json_kind(rows)}, expected a list of rows')
    raise InputError(
        f'{path}: expected a JSON list of rows or an object with a "data" list, '
        f"found {json_kind(document)}"
    )


def json_kind(value: object) -> str:
    """How an operator would name a JSON value's kind in a message."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def write_rows(path: Path, rows: Sequence[Any]) -> None:
    """Write rows in the REST response shape, so `read_rows` and `az graph query` users agree.

    The file appears whole or not at all (see `hotpatch.files`); its folder is created.
    """
    document = {"totalRecords": len(rows), "count": len(rows), "data": list(rows)}
    check_output_file(path)
    write_with(path, lambda out: json.dump(document, out, separators=(",", ":")))
