"""The image catalog: which marketplace images can take hotpatches, and why the others cannot."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from hotpatch.core.models import OsFamily, Reason
from hotpatch.core.reasons import ReasonCode


class ImageEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    publisher: str = Field(min_length=1)
    offer: str = Field(min_length=1)
    #: None on a preview entry matches every SKU of the offer.
    sku: str | None = Field(default=None, min_length=1)
    os: OsFamily | None = None
    #: For not-hotpatchable entries: the reason code and the sentence to show.
    code: ReasonCode | None = None
    reason: str | None = None


class ImageCatalogFile(BaseModel):
    """The shape of `images.json`."""

    model_config = ConfigDict(extra="ignore")

    hotpatchable: list[ImageEntry] = Field(min_length=1)
    not_hotpatchable: list[ImageEntry] = []
    preview: list[ImageEntry] = []


@dataclass(frozen=True, slots=True)
class ImageMatch:
    """What the catalog says of one image: its OS (when known) and why it cannot be used."""

    os: OsFamily | None
    reason: Reason | None
    preview: bool = False


def _key(publisher: str, offer: str, sku: str | None) -> tuple[str, str, str | None]:
    return publisher.casefold(), offer.casefold(), sku.casefold() if sku is not None else None


class ImageCatalog:
    """Case-insensitive lookups: Microsoft writes publisher, offer and SKU in mixed case."""

    def __init__(self, document: ImageCatalogFile) -> None:
        self.document = document
        self._hotpatchable = {_key(e.publisher, e.offer, e.sku): e for e in document.hotpatchable}
        self._not_hotpatchable = {
            _key(e.publisher, e.offer, e.sku): e for e in document.not_hotpatchable
        }
        self._preview = {_key(e.publisher, e.offer, e.sku): e for e in document.preview}

    def match(self, publisher: str, offer: str, sku: str) -> ImageMatch:
        key = _key(publisher, offer, sku)
        if (entry := self._hotpatchable.get(key)) is not None:
            return ImageMatch(entry.os, None)
        if (entry := self._not_hotpatchable.get(key)) is not None:
            code = entry.code or ReasonCode.SKU_NOT_HOTPATCHABLE
            text = entry.reason or f"SKU {sku} cannot be hotpatched"
            return ImageMatch(entry.os, Reason(code, text))
        preview = self._preview.get(key) or self._preview.get((key[0], key[1], None))
        if preview is not None:
            os = preview.os or _os_from_sku(sku)
            return ImageMatch(
                os,
                Reason(
                    ReasonCode.PREVIEW_OFFER,
                    f"{offer}/{sku} is a preview offer, not in Microsoft's supported hotpatch "
                    "list; counted only when the allow-preview-images policy is on",
                ),
                preview=True,
            )
        os = _os_from_sku(sku) if key[:2] == ("microsoftwindowsserver", "windowsserver") else None
        return ImageMatch(
            os,
            Reason(
                ReasonCode.SKU_NOT_HOTPATCHABLE,
                f"{publisher}/{offer}/{sku} is not a hotpatch image; supported: the Windows "
                "Server 2022/2025 Datacenter: Azure Edition hotpatch SKUs",
            ),
        )


def _os_from_sku(sku: str) -> OsFamily | None:
    text = sku.casefold()
    if "2022" in text:
        return OsFamily.WS2022
    if "2025" in text:
        return OsFamily.WS2025
    return None
