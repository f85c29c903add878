"""Calendar: consent, the sync worker, a company's events, new meetings."""

import logging

import azure.functions as func

from shared.adapters.queues import CALENDAR_SYNC_QUEUE, decode_job
from shared.sync.connections import CALENDAR
from shared.triggers._http import caller_of, handled, json_object, json_response, query_int
from shared.wiring import services

logger = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.function_name("calendar_consent_start")
@bp.route(route="me/connections/calendar", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handled
def calendar_consent_start(req: func.HttpRequest) -> func.HttpResponse:
    """Start calendar consent for the caller; answers with the URL to open in their browser."""
    caller = caller_of(req)
    url = services().consent.start(caller, CALENDAR)
    return json_response({"authorizeUrl": url}, 201)


@bp.function_name("company_events")
@bp.route(
    route="companies/{company_id}/events", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS
)
@handled
def company_events(req: func.HttpRequest) -> func.HttpResponse:
    """List a company's meetings, latest start first, paged with a continuation token."""
    caller = caller_of(req)
    size = query_int(req, "pageSize", 25, low=1, high=100)
    token = req.params.get("continuationToken") or None
    page = services().event_reader.company_events(
        caller, req.route_params["company_id"], size=size, token=token
    )
    return json_response(page)


@bp.function_name("create_meeting")
@bp.route(route="me/events", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handled
def create_meeting(req: func.HttpRequest) -> func.HttpResponse:
    """Create a meeting with customer attendees in the caller's calendar."""
    caller = caller_of(req)
    created = services().meetings.create(caller, json_object(req))
    return json_response(created, 201)


@bp.function_name("calendar_sync_worker")
@bp.queue_trigger(arg_name="msg", queue_name=CALENDAR_SYNC_QUEUE, connection="AzureWebJobsStorage")
def calendar_sync_worker(msg: func.QueueMessage) -> None:
    """Queue ``calendar-sync``: sync one connection's primary calendar.

    The message is ``{"kind": "calendar", "tenant": ..., "user": ..., "slot"?: ...}`` as base64
    text. The job completes, re-queues itself (budget used up, throttled, connection busy), or
    raises so the host retries it and, after ``maxDequeueCount`` attempts, moves it to
    ``calendar-sync-poison``, where the ``poison_sweep`` timer marks the connection.
    """
    services().calendar_sync.run(decode_job(msg.get_body()))
