"""Output files: checked before the work that fills them, written whole or not at all.

A report is written to a temporary file beside its target and moved into place only when
complete, so an interrupted or failed write leaves nothing half-written behind; a new report
is linked into place (never over an existing file), so two runs never overwrite each other.
Text that the encoding cannot carry (a lone surrogate from an export) is written escaped.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from hotpatch.errors import OutputError

ENCODING = "utf-8"
#: Lone surrogates (JSON allows "\ud800") cannot be encoded: they are written as `\ud800`.
ENCODING_ERRORS = "backslashreplace"


def check_output_file(path: Path, option: str = "--output") -> None:
    """OutputError unless `path` can be written: not a directory; its folder is created."""
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a directory; give a file name")
    if path.exists() and not path.is_file():
        return  # a device or a pipe (/dev/stdout): written in place
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{option} {path}: cannot create {parent}: {_reason(error)}") from error
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: directory {parent} is not writable")


def check_report_dir(directory: Path, option: str = "--report-dir") -> None:
    """Create the directory if need be and prove a file can be written in it (not full, not
    read-only), before a sweep whose report would otherwise be lost at its end."""
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{option} {directory}: not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise OutputError(f"{option} {directory}: cannot write there: {_reason(error)}") from error


def write_whole(path: Path, text: str, option: str = "--output") -> None:
    """Write `text` to `path`, replacing it only once the new content is complete."""
    write_with(path, lambda out: out.write(text), option)


def write_with(path: Path, write: Callable[[TextIO], object], option: str = "--output") -> None:
    """Let `write` fill a temporary file beside `path`, then move it into place."""
    if path.exists() and not path.is_file():
        _write_in_place(path, write, option)
        return
    temporary = _temporary(path, write, option)
    try:
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"{option} {path}: cannot write: {_reason(error)}") from error


def write_new(directory: Path, stem: str, suffix: str, text: str) -> Path:
    """Write `text` to a new file `<stem>-<random><suffix>` in `directory`; never over another."""
    return write_new_with(directory, stem, suffix, lambda out: out.write(text))


def write_new_with(
    directory: Path, stem: str, suffix: str, write: Callable[[TextIO], object]
) -> Path:
    """Let `write` fill a new file `<stem>-<random><suffix>` in `directory` (through a temporary
    file, so a report too big to hold in memory is still whole or absent); never over another."""
    for _ in range(8):
        path = directory / f"{stem}-{secrets.token_hex(3)}{suffix}"
        temporary = _temporary(path, write, "report")
        try:
            os.link(temporary, path)
        except FileExistsError:
            continue
        except OSError as error:
            raise OutputError(f"report {path}: cannot write: {_reason(error)}") from error
        finally:
            temporary.unlink(missing_ok=True)
        return path
    raise OutputError(f"report directory {directory}: no free report name")  # pragma: no cover


def new_path(directory: Path, stem: str, suffix: str) -> Path:
    """A name for a file another run will not choose (the caller creates it with mode "x")."""
    return directory / f"{stem}-{secrets.token_hex(3)}{suffix}"


def _temporary(path: Path, write: Callable[[TextIO], object], option: str) -> Path:
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as error:  # a folder that cannot hold files (/proc), read-only or full
        raise OutputError(f"{option} {path}: cannot write: {_reason(error)}") from error
    temporary = Path(name)
    try:
        with open(handle, "w", encoding=ENCODING, errors=ENCODING_ERRORS, newline="") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644 & ~_umask())
    except BaseException as error:
        # Ctrl-C included: nothing half-written stays behind.
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OutputError(f"{option} {path}: cannot write: {_reason(error)}") from error
        raise
    return temporary


def _write_in_place(path: Path, write: Callable[[TextIO], object], option: str) -> None:
    try:
        with path.open("w", encoding=ENCODING, errors=ENCODING_ERRORS, newline="") as out:
            write(out)
    except OSError as error:
        raise OutputError(f"{option} {path}: cannot write: {_reason(error)}") from error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
