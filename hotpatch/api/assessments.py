"""On-demand assessments: what `POST /api/assessments` accepts and hands to whoever starts them.

The API does not start operations itself: the entrypoint that builds the app gives it an
`AssessmentStarter` (the Function App queues the request for its worker, which journals and
follows each operation). Without one the endpoint answers 503.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hotpatch.api.params import GUID
from hotpatch.api.problems import bad_body
from hotpatch.ports.patch_operations import MachineRef

#: Items a request may name in each list: a larger scope is a subscription.
MAX_ITEMS = 1000


@dataclass(frozen=True, slots=True)
class AssessmentRequest:
    """Assess the machines of these subscriptions (within the configured scope) and these
    machines; at least one of the two is given."""

    subscriptions: tuple[str, ...] = ()
    machines: tuple[MachineRef, ...] = ()
    #: Who asked: the App Service principal's name, when roles are required.
    requested_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "subscriptions": list(self.subscriptions),
            "machines": [machine.id for machine in self.machines],
            "requested_by": self.requested_by,
        }


@dataclass(frozen=True, slots=True)
class AssessmentAccepted:
    """What the starter took on: an id to find it by (a run, a queue message) and a sentence."""

    id: str
    detail: str = ""


#: Takes a request on (queues it, or starts it) and says so; called in a worker thread.
#: Raises HotpatchError when it cannot (the API answers 503 with its message).
AssessmentStarter = Callable[[AssessmentRequest], AssessmentAccepted]


def assessment_request(body: object, requested_by: str | None) -> AssessmentRequest:
    """The request a JSON body asks for; a 400 Problem names the field that is wrong."""
    if not isinstance(body, dict):
        raise bad_body("(body)", "expected an object with subscriptions and/or machines")
    unknown = sorted(set(body) - {"subscriptions", "machines"})
    if unknown:
        raise bad_body(unknown[0], "not a field of an assessment request (subscriptions, machines)")
    subscriptions = _strings(body, "subscriptions")
    for number, subscription in enumerate(subscriptions):
        if not GUID.match(subscription):
            raise bad_body(f"subscriptions[{number}]", f"{subscription!r} is not a subscription id")
    machines: list[MachineRef] = []
    for number, text in enumerate(_strings(body, "machines")):
        try:
            machines.append(MachineRef.parse(text))
        except ValueError as error:
            raise bad_body(f"machines[{number}]", str(error)) from None
    if not subscriptions and not machines:
        raise bad_body("(body)", "name at least one subscription or machine")
    return AssessmentRequest(
        tuple(dict.fromkeys(s.lower() for s in subscriptions)),
        tuple({machine.key: machine for machine in machines}.values()),
        requested_by,
    )


def _strings(body: dict[str, object], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_body(name, "expected an array of strings")
    if len(value) > MAX_ITEMS:
        raise bad_body(name, f"at most {MAX_ITEMS} items")
    return [str(item) for item in value]
