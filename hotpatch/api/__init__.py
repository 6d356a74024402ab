"""The HTTP compliance API: `create_app(store, world)` builds the ASGI app that `hotpatch serve`
runs with uvicorn and the Function App serves through `func.AsgiFunctionApp`.

Importing it reads nothing and opens nothing (and loads no Azure SDK): the store is first read
by the first request that needs it.
"""

from __future__ import annotations

from hotpatch.api.app import create_app
from hotpatch.api.assessments import AssessmentAccepted, AssessmentRequest, AssessmentStarter

__all__ = ["AssessmentAccepted", "AssessmentRequest", "AssessmentStarter", "create_app"]
