"""Connection state made visible: the admin listing, and the sweep of poisoned jobs (BR-14).

``GET /api/admin/connections`` lists every connection of the caller's tenant (the ``tid`` claim,
never a parameter) with its state, last round and explained last error, a page at a time.
``poison_sweep`` reads every ``<queue>-poison`` queue each minute: a mail or calendar job that
failed ``maxDequeueCount`` times moves its connection to ``error`` with ``lastError``
``job_poisoned``; a fan-out page is logged and audited; a purge or an outbox email is marked
``failed`` (see :mod:`shared.sync.poisoned` for why this is a timer, not queue triggers).
"""

import logging

import azure.functions as func

from shared.sync.explain import admin_connection_view
from shared.triggers._http import caller_of, handled, json_response, query_int
from shared.wiring import services

logger = logging.getLogger(__name__)

bp = func.Blueprint()

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
POISON_SWEEP_SCHEDULE = "15 * * * * *"


@bp.function_name("admin_connections")
@bp.route(route="admin/connections", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handled
def admin_connections(req: func.HttpRequest) -> func.HttpResponse:
    """List the tenant's connections, ``pageSize`` at a time; Admin role only."""
    caller = caller_of(req)
    caller.require_admin()
    size = query_int(req, "pageSize", DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
    token = req.params.get("continuationToken") or None
    found, following = services().connections.page_for_tenant(
        caller.tenant_id, size=size, token=token
    )
    body: dict[str, object] = {"items": [admin_connection_view(c) for c in found]}
    if following:
        body["continuationToken"] = following
    return json_response(body)


@bp.function_name("poison_sweep")
@bp.timer_trigger(
    arg_name="timer", schedule=POISON_SWEEP_SCHEDULE, run_on_startup=False, use_monitor=False
)
def poison_sweep(timer: func.TimerRequest) -> None:
    """Timer, every minute: record the jobs that landed in any ``<queue>-poison`` queue.

    Each message is read as stored (base64 as agreed, else plain JSON), recorded where its owner
    sees it when it names what it was for, logged by queue and id otherwise, and deleted. A
    message that cannot be settled now is read again by a later run; a queue that cannot be
    read fails this run only. Nothing it reads can land in a ``-poison-poison`` queue.
    """
    services().poisoned_jobs.sweep()
