"""The operator's policy: thresholds and switches the core decides with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from hotpatch.core.calendar import MonthOverride


@dataclass(frozen=True, slots=True)
class Policy:
    #: An assessment older than this is stale (platform assessment runs every 24 h).
    assessment_max_age: timedelta = timedelta(hours=72)
    #: How long after a hotpatch release a machine may lack it before it is non-compliant.
    hotpatch_grace: timedelta = timedelta(days=7)
    #: The same for baseline (restart) releases, planned or not.
    baseline_grace: timedelta = timedelta(days=14)
    #: Count preview hotpatch offers as eligible (not in Microsoft's documented list).
    allow_preview_images: bool = False
    #: The tag whose value names a machine's rollout ring.
    ring_tag: str = "hotpatch-ring"
    #: Arc machines need Windows Server 2025 build 26100.1742 or later.
    arc_min_revision: int = 1742
    #: Operator overrides of month kinds (e.g. an announced unplanned baseline).
    month_overrides: tuple[MonthOverride, ...] = field(default=())
