"""Shipped data (image and release catalogs), validated with errors an operator can act on."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from hotpatch.core.calendar import YearMonth
from hotpatch.core.images import ImageCatalog, ImageCatalogFile
from hotpatch.core.releases import Release, ReleaseCatalog, ReleaseCatalogFile
from hotpatch.errors import DataFileError

_Model = TypeVar("_Model", bound=BaseModel)

IMAGES_FILE = "images.json"
RELEASES_FILE = "releases.json"


def _read(path: Path | None, shipped: str) -> tuple[str, Any]:
    label = str(path) if path is not None else f"hotpatch/data/{shipped}"
    try:
        if path is None:
            text = resources.files(__name__).joinpath(shipped).read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataFileError(f"{label}: cannot read: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise DataFileError(
            f"{label}: not UTF-8 text (byte {error.start}: {error.reason})"
        ) from error
    try:
        return label, json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFileError(
            f"{label}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from error


def _describe_entry(document: Any, location: tuple[int | str, ...]) -> str:
    """`releases[3] (ws2022 2024-04-09)`: the entry an error sits in, as an operator finds it."""
    if len(location) < 2 or not isinstance(location[1], int):
        return ".".join(str(part) for part in location) or "(top level)"
    section, index = location[0], location[1]
    entry = document.get(section, [])[index] if isinstance(document, dict) else None
    hint = ""
    if isinstance(entry, dict):
        words = [str(entry[key]) for key in ("os", "date", "sku", "kb") if entry.get(key)]
        hint = f" ({' '.join(words)})" if words else ""
    return f"{section}[{index}]{hint}"


def _validate(model: type[_Model], label: str, document: Any) -> _Model:
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            location = tuple(item["loc"])
            field = ".".join(str(part) for part in location[2:]) or "(entry)"
            problems.append(f"{_describe_entry(document, location)}: {field}: {item['msg']}")
        raise DataFileError(f"{label}: " + "; ".join(problems)) from error


def load_image_catalog(path: Path | None = None) -> ImageCatalog:
    """The shipped image catalog, or the operator's replacement at `path`."""
    label, document = _read(path, IMAGES_FILE)
    return ImageCatalog(_validate(ImageCatalogFile, label, document))


def load_release_catalog(path: Path | None = None) -> ReleaseCatalog:
    """The shipped release catalog, or the operator's replacement at `path`."""
    label, document = _read(path, RELEASES_FILE)
    return release_catalog_of(label, document)


def release_catalog_of(label: str, document: Any) -> ReleaseCatalog:
    """A release catalog document (as read from a file, or kept in the store) validated;
    DataFileError names `label` and the entry at fault."""
    parsed = _validate(ReleaseCatalogFile, label, document)
    first_of_month: dict[tuple[str, str], int] = {}
    for index, release in enumerate(parsed.releases):
        if release.out_of_band or not release.on_track:
            continue
        key = (release.os.value, release.month)
        if key in first_of_month:
            entry = _describe_entry(document, ("releases", index))
            raise DataFileError(
                f"{label}: {entry}: date: a second {release.os.value} release in {release.month} "
                f"(the first is releases[{first_of_month[key]}]); mark extra releases out_of_band"
            )
        first_of_month[key] = index
    horizon = YearMonth.parse(parsed.covers_through) if parsed.covers_through else None
    return ReleaseCatalog(parsed.releases, covers_through=horizon, programs=parsed.programs)


@cache
def shipped_release_catalog() -> ReleaseCatalog:
    return load_release_catalog()


@cache
def shipped_image_catalog() -> ImageCatalog:
    return load_image_catalog()


__all__ = [
    "Release",
    "load_image_catalog",
    "load_release_catalog",
    "release_catalog_of",
    "shipped_image_catalog",
    "shipped_release_catalog",
]
