"""HTTP and queue triggers of sending: the caller's outbox and its worker.

``POST me/outbox`` answers 202 with the item's status and URL; ``GET me/outbox/{id}`` answers
the status; ``DELETE me/outbox/{id}`` cancels a queued automatic email. Each call is audited.
"""

import logging

import azure.functions as func

from shared.adapters.queues import OUTBOX_QUEUE, decode_job
from shared.audit.log import Action, Outcome
from shared.triggers._http import caller_of, handled, json_object, json_response
from shared.wiring import services

bp = func.Blueprint()
logger = logging.getLogger(__name__)

_ANONYMOUS = func.AuthLevel.ANONYMOUS
_BASE = "/api/me/outbox"


def _answer(item: dict[str, object], status: int) -> func.HttpResponse:
    location = f"{_BASE}/{item['id']}"
    return json_response({**item, "statusUrl": location}, status, {"Location": location})


@bp.function_name("outbox_submit")
@bp.route(route="me/outbox", methods=["POST"], auth_level=_ANONYMOUS)
@handled
def outbox_submit(req: func.HttpRequest) -> func.HttpResponse:
    """Queue an email to send from the caller's mailbox; answers 202 with its status URL."""
    caller = caller_of(req)
    body = json_object(req)
    with services().audit.audited(caller, Action.EMAIL_SEND) as note:
        item = services().outbox.submit(caller, body)
        note.target_id, note.outcome = str(item["id"]), Outcome.ACCEPTED
    return _answer(item, 202)


@bp.function_name("outbox_status")
@bp.route(route="me/outbox/{item_id}", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def outbox_status(req: func.HttpRequest) -> func.HttpResponse:
    """Return where one of the caller's outbox items stands."""
    caller = caller_of(req)
    return _answer(services().outbox.get(caller, req.route_params["item_id"]), 200)


@bp.function_name("outbox_cancel")
@bp.route(route="me/outbox/{item_id}", methods=["DELETE"], auth_level=_ANONYMOUS)
@handled
def outbox_cancel(req: func.HttpRequest) -> func.HttpResponse:
    """Cancel a queued automatic email; 409 once its sending has begun, or for a manual one."""
    caller = caller_of(req)
    item_id = req.route_params["item_id"]
    with services().audit.audited(caller, Action.EMAIL_SEND_CANCEL, target_id=item_id):
        item = services().outbox.cancel(caller, item_id)
    return _answer(item, 200)


@bp.function_name("outbox_worker")
@bp.queue_trigger(arg_name="msg", queue_name=OUTBOX_QUEUE, connection="AzureWebJobsStorage")
def outbox_worker(msg: func.QueueMessage) -> None:
    """Queue ``outbox``: take one email a step further, from the state its row records.

    Throttling re-queues the job with a delay; other failures are retried by the host and end
    in ``outbox-poison``.
    """
    services().outbox_worker.run(decode_job(msg.get_body()))
