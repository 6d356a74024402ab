"""The Function App's blueprints: timers (sweep, catalog, remediate), the queue worker and its
poison queue, on-demand assessment requests; `http` holds the seam the HTTP compliance API is
mounted through. `function_app.py` registers `BLUEPRINTS`."""

from __future__ import annotations

import azure.functions as func

from hotpatch.functions.assessments import blueprint as assessments
from hotpatch.functions.batches import blueprint as batches
from hotpatch.functions.timers import blueprint as timers

BLUEPRINTS: tuple[func.Blueprint, ...] = (timers, batches, assessments)

__all__ = ["BLUEPRINTS"]
