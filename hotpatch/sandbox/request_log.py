"""The sandbox's request log: every assess or install request it answered, one JSON line each.

The sandbox appends to `<state_dir>/requests.jsonl` every write request on the Compute and
HybridCompute `assessPatches`/`installPatches` routes, accepted or refused, with the status it
answered, the caller's `x-ms-client-request-id` and, for installs, the body's filters as sent.
Each line is flushed as it is written, so a test (or an operator rehearsing a month) can read
what the service asked of "Azure" even after the service was killed mid-run: which KBs were
requested or excluded, and whether a machine was asked to install twice.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = [
    "REQUEST_LOG_NAME",
    "LoggedInstall",
    "LoggedRequest",
    "RequestLog",
    "install_fields",
    "read_requests",
]

REQUEST_LOG_NAME = "requests.jsonl"
_KB = re.compile(r"^(?:KB)?(\d{4,8})$", re.IGNORECASE | re.ASCII)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class LoggedInstall(_Record):
    """An install body's parameters as the caller sent them (None or empty when absent, and
    when the body could not be read)."""

    reboot_setting: str | None = None
    maximum_duration: str | None = None
    classifications_to_include: tuple[str, ...] = ()
    kb_numbers_to_include: tuple[str, ...] = ()
    kb_numbers_to_exclude: tuple[str, ...] = ()
    max_patch_publish_date: str | None = None

    @property
    def kbs_included(self) -> frozenset[str]:
        """`kbNumbersToInclude` in "KB5075943" form, whichever spelling was sent."""
        return _kb_names(self.kb_numbers_to_include)

    @property
    def kbs_excluded(self) -> frozenset[str]:
        """`kbNumbersToExclude` in "KB5075943" form, whichever spelling was sent."""
        return _kb_names(self.kb_numbers_to_exclude)


class LoggedRequest(_Record):
    """One assess or install request and the sandbox's answer."""

    #: When the sandbox answered, by its clock.
    time: datetime
    method: str
    #: The path as the caller wrote it (query string left out).
    path: str
    #: The machine's ARM id as the path spells it.
    machine_id: str
    #: "assessPatches" or "installPatches".
    operation: str
    client_request_id: str | None = None
    #: The HTTP status answered; None when the connection was dropped without an answer.
    status: int | None = None
    #: The install's parameters; None for an assess, or an install whose body was unreadable.
    install: LoggedInstall | None = None

    @property
    def machine_key(self) -> str:
        """The machine id to compare by (ARM ids compare without regard to case)."""
        return self.machine_id.lower()

    @property
    def accepted(self) -> bool:
        """The sandbox took the request on (it started an operation)."""
        return self.status is not None and 200 <= self.status < 300


def install_fields(body: Mapping[str, Any]) -> LoggedInstall:
    """The logged parameters of an `installPatches` body, read leniently: a field of the wrong
    type is kept as its JSON text, so the log shows what was sent."""
    windows = body.get("windowsParameters")
    windows = windows if isinstance(windows, Mapping) else {}
    return LoggedInstall(
        reboot_setting=_text(body.get("rebootSetting")),
        maximum_duration=_text(body.get("maximumDuration")),
        classifications_to_include=_texts(windows.get("classificationsToInclude")),
        kb_numbers_to_include=_texts(windows.get("kbNumbersToInclude")),
        kb_numbers_to_exclude=_texts(windows.get("kbNumbersToExclude")),
        max_patch_publish_date=_text(windows.get("maxPatchPublishDate")),
    )


class RequestLog:
    """The append-only log file of one sandbox; written from the sandbox's event loop only."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / REQUEST_LOG_NAME
        # Appended to, never replaced: a sandbox started again on the same state directory
        # keeps the earlier runs' requests. Not through a link planted at the path.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        descriptor = os.open(self.path, flags, 0o644)
        self._file: IO[str] | None = os.fdopen(descriptor, "a", encoding="utf-8")

    def append(self, request: LoggedRequest) -> None:
        if self._file is None:
            return
        self._file.write(request.model_dump_json(by_alias=True) + "\n")
        # Flushed per line: a reader sees every answered request, whatever happens next.
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            handle, self._file = self._file, None
            handle.close()


def read_requests(state_dir: Path | str) -> list[LoggedRequest]:
    """Every request a sandbox with this state directory logged, oldest first (none when it
    logged none). A last line cut short (the sandbox killed mid-write) is left out."""
    path = Path(state_dir) / REQUEST_LOG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    requests = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            requests.append(LoggedRequest.model_validate_json(line))
        except ValueError as error:
            if number == len(lines):  # the unfinished last line, without its newline
                break
            raise ValueError(f"{path}:{number}: not a logged request: {error}") from error
    return requests


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _texts(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        return (json.dumps(value),)
    return tuple(item if isinstance(item, str) else json.dumps(item) for item in value)


def _kb_names(values: tuple[str, ...]) -> frozenset[str]:
    names = set()
    for value in values:
        match = _KB.match(value.strip())
        names.add(f"KB{match.group(1)}" if match else value)
    return frozenset(names)
