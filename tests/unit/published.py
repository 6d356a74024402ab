"""Microsoft's published hotpatch calendar, transcribed by hand from DOMAIN.md §1.

An independent copy: it is never read from `hotpatch/data`, so the tests can check the shipped
catalog against it, and `test_calendar` checks it against DOMAIN.md itself.
"""

from __future__ import annotations

from datetime import date
from typing import NamedTuple


class Published(NamedTuple):
    """One row of the release tables: kind is B (baseline), H (hotpatch), U (unplanned)."""

    os: str
    date: date
    kind: str
    build: str
    kb: str

    @property
    def id(self) -> str:
        return f"{self.os}-{self.date.isoformat()}-{self.kind}"


def _rows(os: str, table: str) -> tuple[Published, ...]:
    rows = []
    for line in table.strip().splitlines():
        day, kind, build, kb = line.split()
        rows.append(Published(os, date.fromisoformat(day), kind, build, kb))
    return tuple(rows)


_WS2022 = """
2024-01-09 B 20348.2227 KB5034129
2024-02-13 H 20348.2277 KB5034860
2024-03-12 H 20348.2333 KB5035959
2024-04-09 B 20348.2402 KB5036909
2024-05-14 H 20348.2458 KB5037848
2024-06-11 H 20348.2522 KB5039330
2024-07-09 B 20348.2582 KB5040437
2024-08-13 U 20348.2655 KB5041160
2024-09-10 H 20348.2695 KB5042880
2024-10-08 B 20348.2762 KB5044281
2024-11-12 H 20348.2819 KB5046698
2024-12-10 H 20348.2908 KB5048800
2025-01-14 B 20348.3091 KB5049983
2025-02-11 H 20348.3148 KB5052106
2025-03-11 H 20348.3270 KB5053638
2025-04-08 B 20348.3453 KB5055526
2025-05-13 H 20348.3630 KB5058500
2025-06-10 H 20348.3745 KB5060525
2025-07-08 B 20348.3932 KB5062572
2025-08-12 H 20348.3989 KB5063812
2025-09-09 H 20348.4106 KB5065306
2025-10-14 B 20348.4294 KB5066782
2025-11-11 H 20348.4346 KB5068840
2025-12-09 H 20348.4467 KB5071413
2026-01-13 B 20348.4648 KB5073457
2026-02-10 H 20348.4711 KB5075943
2026-03-10 H 20348.4830 KB5078737
2026-04-14 B 20348.5020 KB5082142
2026-05-12 H 20348.5074 KB5087424
"""

_WS2025 = """
2024-11-12 H 26100.2240 KB5046696
2024-12-10 H 26100.2528 KB5048794
2025-01-14 B 26100.2894 KB5050009
2025-02-11 H 26100.3107 KB5052105
2025-03-11 H 26100.3403 KB5053636
2025-04-08 B 26100.3775 KB5055523
2025-05-13 H 26100.3981 KB5058497
2025-06-10 H 26100.4270 KB5060841
2025-07-08 B 26100.4652 KB5062553
2025-08-12 H 26100.4851 KB5064010
2025-09-09 H 26100.6508 KB5065474
2025-10-14 B 26100.6899 KB5066835
2025-11-11 H 26100.7092 KB5068966
2025-12-09 H 26100.7392 KB5072014
2026-01-13 B 26100.32230 KB5073379
2026-02-10 H 26100.32313 KB5075942
2026-03-10 H 26100.32463 KB5078736
2026-04-14 B 26100.32690 KB5082063
2026-05-12 H 26100.32772 KB5087423
"""

#: Every row of both tables in DOMAIN.md §1 (Patch Tuesday releases only).
PUBLISHED: tuple[Published, ...] = _rows("ws2022", _WS2022) + _rows("ws2025", _WS2025)

#: The out-of-band release DOMAIN.md §1 names (not in the tables: it sets no month's kind).
OUT_OF_BAND = Published("ws2022", date(2026, 1, 24), "H", "20348.4655", "KB5078238")

#: The letters of the tables, as the catalog's kind values.
KIND_LETTERS = {"B": "baseline", "H": "hotpatch", "U": "unplanned_baseline"}
