"""The Azure Function App (Python v2 programming model): the HTTP compliance API as an ASGI app
(`func.AsgiFunctionApp`, function `api`, auth level FUNCTION) and the blueprints of
`hotpatch.functions` registered on it. Nothing here reads a setting, opens a store or builds an
SDK client: the first invocation does (hotpatch/functions/host.py), and a test proves it."""

from __future__ import annotations

from hotpatch.functions import BLUEPRINTS
from hotpatch.functions.http import api_function_app

app = api_function_app()
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
