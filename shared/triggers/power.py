"""HTTP and queue triggers of the power tools: delete an email or event, revoke, purge.

``me/...`` routes act on the caller's own data; ``admin/users/{user_id}/...`` routes act on
another user of the tenant and need the ``powerToolsOnOthers`` workflow (admins always have it).
Every call is written to the audit log with its outcome, and a purge's end is too.
"""

import logging

import azure.functions as func

from shared.access.auth import Caller
from shared.adapters.queues import PURGE_QUEUE, decode_job
from shared.audit.log import Action, Outcome
from shared.power.purge import PurgeJob
from shared.sync.connections import CALENDAR, MAIL
from shared.sync.explain import connection_view
from shared.triggers._http import caller_of, handled, json_object, json_response
from shared.wiring import services

bp = func.Blueprint()
logger = logging.getLogger(__name__)

_ANONYMOUS = func.AuthLevel.ANONYMOUS


@bp.function_name("email_delete")
@bp.route(route="emails/{email_id}", methods=["DELETE"], auth_level=_ANONYMOUS)
@handled
def email_delete(req: func.HttpRequest) -> func.HttpResponse:
    """Delete one synced email for the whole tenant; answers 204."""
    caller = caller_of(req)
    email_id = req.route_params["email_id"]
    with services().audit.audited(caller, Action.EMAIL_DELETE, target_id=email_id) as note:
        note.counts = {"holders": services().power.delete_email(caller, email_id)}
    return func.HttpResponse(status_code=204)


@bp.function_name("event_delete")
@bp.route(route="events/{event_id}", methods=["DELETE"], auth_level=_ANONYMOUS)
@handled
def event_delete(req: func.HttpRequest) -> func.HttpResponse:
    """Delete one synced calendar event for the whole tenant; answers 204."""
    caller = caller_of(req)
    event_id = req.route_params["event_id"]
    with services().audit.audited(caller, Action.EVENT_DELETE, target_id=event_id) as note:
        note.counts = {"holders": services().power.delete_event(caller, event_id)}
    return func.HttpResponse(status_code=204)


def _named(caller: Caller, user_id: str | None) -> str:
    """Whom a call names, as the audit records it until the action has resolved the user."""
    return (user_id or caller.user_id).strip().lower()


def _revoke(req: func.HttpRequest, user_id: str | None) -> func.HttpResponse:
    caller = caller_of(req)
    kind = req.route_params["kind"]
    named = _named(caller, user_id)
    with services().audit.audited(
        caller, Action.CONNECTION_REVOKE, target_user_id=named, target_id=kind
    ) as note:
        connection = services().power.revoke(caller, kind, user_id)
        note.target_user_id = connection.user_id
    return json_response(connection_view(connection))


@bp.function_name("my_connection_revoke")
@bp.route(route="me/connections/{kind}/revoke", methods=["POST"], auth_level=_ANONYMOUS)
@handled
def my_connection_revoke(req: func.HttpRequest) -> func.HttpResponse:
    """Revoke the caller's mail or calendar connection; answers the connection, revoked."""
    return _revoke(req, None)


@bp.function_name("user_connection_revoke")
@bp.route(
    route="admin/users/{user_id}/connections/{kind}/revoke",
    methods=["POST"],
    auth_level=_ANONYMOUS,
)
@handled
def user_connection_revoke(req: func.HttpRequest) -> func.HttpResponse:
    """Revoke another user's connection (``powerToolsOnOthers``)."""
    return _revoke(req, req.route_params["user_id"])


def _purge_answer(job: PurgeJob, base: str, status: int) -> func.HttpResponse:
    location = f"/api/{base}/{job.job_id}"
    return json_response({**job.as_json(), "statusUrl": location}, status, {"Location": location})


_PURGE_ACTIONS = {MAIL: Action.EMAILS_PURGE, CALENDAR: Action.EVENTS_PURGE}


def _start_purge(req: func.HttpRequest, user_id: str | None) -> func.HttpResponse:
    caller = caller_of(req)
    named = _named(caller, user_id)
    with services().audit.audited(caller, Action.PURGE_START, target_user_id=named) as note:
        body = json_object(req)
        kind = body.get("kind", MAIL)
        note.action = _PURGE_ACTIONS.get(kind) if isinstance(kind, str) else None
        job = services().power.start_purge(caller, str(kind), user_id)
        note.target_user_id, note.target_id = job.user_id, job.job_id
        note.outcome = Outcome.ACCEPTED
    base = "me/purges" if user_id is None else f"admin/users/{job.user_id}/purges"
    return _purge_answer(job, base, 202)


@bp.function_name("my_purge_start")
@bp.route(route="me/purges", methods=["POST"], auth_level=_ANONYMOUS)
@handled
def my_purge_start(req: func.HttpRequest) -> func.HttpResponse:
    """Remove everything synced from the caller's mailbox (``{"kind": "mail"}``) or calendar.

    Answers 202 with the job's status and its URL; starting again while it runs answers the
    same job.
    """
    return _start_purge(req, None)


@bp.function_name("my_purge_status")
@bp.route(route="me/purges/{job_id}", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def my_purge_status(req: func.HttpRequest) -> func.HttpResponse:
    """Return the status of one of the caller's purges."""
    caller = caller_of(req)
    job = services().power.purge_status(caller, req.route_params["job_id"])
    return _purge_answer(job, "me/purges", 200)


@bp.function_name("user_purge_start")
@bp.route(route="admin/users/{user_id}/purges", methods=["POST"], auth_level=_ANONYMOUS)
@handled
def user_purge_start(req: func.HttpRequest) -> func.HttpResponse:
    """Remove everything synced from another user's mailbox or calendar."""
    return _start_purge(req, req.route_params["user_id"])


@bp.function_name("user_purge_status")
@bp.route(route="admin/users/{user_id}/purges/{job_id}", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def user_purge_status(req: func.HttpRequest) -> func.HttpResponse:
    """Return the status of another user's purge."""
    caller = caller_of(req)
    user_id = req.route_params["user_id"]
    job = services().power.purge_status(caller, req.route_params["job_id"], user_id)
    return _purge_answer(job, f"admin/users/{job.user_id}/purges", 200)


@bp.function_name("purge_worker")
@bp.queue_trigger(arg_name="msg", queue_name=PURGE_QUEUE, connection="AzureWebJobsStorage")
def purge_worker(msg: func.QueueMessage) -> None:
    """Queue ``purge``: work through some batches of one purge job, then finish or re-queue."""
    services().purges.run(decode_job(msg.get_body()))
