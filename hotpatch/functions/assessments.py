"""On-demand assessments through the Function App: `POST /api/assessments` queues the request
(`QueuedAssessments`, the API's starter) on `hotpatch-assessments`; the `assess_request`
function turns it into batches of assessments on `hotpatch-batches`, which the queue worker
journals, starts and follows like any other batch."""

from __future__ import annotations

import logging

import azure.functions as func

from hotpatch import scheduled
from hotpatch.api import AssessmentAccepted, AssessmentRequest
from hotpatch.bootstrap import scope_of
from hotpatch.errors import ConfigurationError
from hotpatch.functions.host import FunctionHost, current
from hotpatch.functions.timers import BATCH_QUEUE, CONNECTION
from hotpatch.ports.store import new_run_id

#: Where `POST /api/assessments` leaves a request for `assess_request`.
ASSESSMENT_QUEUE = "hotpatch-assessments"

_log = logging.getLogger(__name__)

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]


class QueuedAssessments:
    """The API's assessment starter in the Function App: one message on `hotpatch-assessments`
    (through the app's storage connection, as the bindings reach it); refused in report mode."""

    def __init__(self, host: FunctionHost) -> None:
        self._host = host

    def __call__(self, request: AssessmentRequest) -> AssessmentAccepted:
        from hotpatch.azure.queues import send

        if scheduled.report_mode(self._host.policy()):
            raise ConfigurationError(
                "report mode (no HOTPATCH_REMEDIATION_POLICY, or mode: report): nothing starts"
            )
        now = self._host.clock()
        order = scheduled.AssessmentOrder(
            id=new_run_id(now),
            subscriptions=request.subscriptions,
            machines=tuple(machine.id for machine in request.machines),
            requested_by=request.requested_by,
            asked_at=now,
        )
        send(self._host.environ, ASSESSMENT_QUEUE, order.model_dump_json())
        return AssessmentAccepted(
            order.id,
            f"queued on {ASSESSMENT_QUEUE}; GET /api/runs/{order.id} once it is taken up",
        )


@blueprint.function_name("assess_request")
@blueprint.queue_trigger(arg_name="message", queue_name=ASSESSMENT_QUEUE, connection=CONNECTION)
@blueprint.queue_output(arg_name="batches", queue_name=BATCH_QUEUE, connection=CONNECTION)
def assess_request(message: func.QueueMessage, batches: func.Out[list[str]]) -> None:
    """An assessment request -> batches of assessments for the worker, and its run record."""
    try:
        order = scheduled.AssessmentOrder.model_validate_json(message.get_body())
    except ValueError as error:
        _log.error("queue message %s is not an assessment request: %s", message.id, error)
        return
    host = current()
    world = host.world()
    queued = scheduled.queue_assessments(
        order, host.store(), world.rules.calendar, scope_of(world.settings), clock=host.clock
    )
    if queued.batches:
        batches.set([batch.to_json() for batch in queued.batches])
    _log.info("assessment request %s: %d batch(es) queued", order.id, len(queued.batches))
