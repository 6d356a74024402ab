"""The served OpenAPI document is valid, describes exactly the app's routes, and the server keeps
to it: schemathesis generates requests from it and checks every answer against it."""

from __future__ import annotations

import re

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import positive_data_acceptance
from starlette.routing import Route

from hotpatch.api import create_app
from hotpatch.api.openapi import document
from hotpatch.store.memory import MemoryStore
from tests.api.conftest import KEY, world


def test_the_document_is_valid_openapi_3_1(api_url: str) -> None:
    served = httpx.get(f"{api_url}/api/openapi.json").json()
    assert served["openapi"] == "3.1.0"
    validate(served)
    assert served == document()


def test_the_document_describes_exactly_the_routes_and_methods_the_app_serves() -> None:
    app = create_app(MemoryStore(), world())
    served = {
        (re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path), method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {
        (path, method) for path, operations in document()["paths"].items() for method in operations
    }
    assert described == served


#: The document as served (the first test proves the server serves exactly this one). It is
#: loaded at collection: schemathesis's lazy fixture loader reads a pytest attribute that
#: pytest 9 no longer has.
schema = schemathesis.openapi.from_dict(document())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_5xx_or_an_answer_its_schema_does_not_allow(
    case: schemathesis.Case, api_url: str
) -> None:
    if case.path_parameters and case.path_parameters.get("machine") == "summary":
        # The concrete path wins over the template (as OpenAPI says): that is the summary.
        return
    case.call_and_validate(
        base_url=api_url,
        headers={"x-functions-key": KEY},
        # A schema cannot say which opaque tokens this API gave, nor that a calendar must end
        # before 9991: such well-formed requests are refused with a 400 problem, as documented.
        excluded_checks=[positive_data_acceptance],
    )


def test_the_readme_names_every_endpoint_of_the_document() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    for path, operations in document()["paths"].items():
        for method in operations:
            if path != "/api/openapi.json":
                assert f"`{method.upper()} {path}" in section, (method, path)
