"""Connection state made visible: the admin listing, and poisoned mail jobs marked (BR-14).

``GET /api/admin/connections`` lists every connection of the caller's tenant (the ``tid`` claim,
never a parameter) with its state, last round and explained last error, a page at a time.
``mail_sync_poison`` consumes ``mail-sync-poison``: each job that failed ``maxDequeueCount``
times moves its connection to ``error`` with ``lastError`` ``job_poisoned``.
"""

import logging

import azure.functions as func

from shared.adapters.queues import MAIL_SYNC_POISON_QUEUE, decode_job
from shared.errors import InvalidJobError
from shared.sync.explain import admin_connection_view
from shared.sync.mail import MailJob
from shared.triggers._http import caller_of, handled, json_response, query_int
from shared.wiring import services

logger = logging.getLogger(__name__)

bp = func.Blueprint()

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


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


@bp.function_name("mail_sync_poison")
@bp.queue_trigger(
    arg_name="msg", queue_name=MAIL_SYNC_POISON_QUEUE, connection="AzureWebJobsStorage"
)
def mail_sync_poison(msg: func.QueueMessage) -> None:
    """Queue ``mail-sync-poison``: mark the connection of a job that kept failing.

    The message is a mail job as it was on ``mail-sync``. A message that is not one is logged by
    its id and completed, never retried. A storage failure raises, so the host retries it.
    """
    ids = {"message_id": msg.id, "dequeue_count": msg.dequeue_count}
    try:
        job = MailJob.parse(decode_job(msg.get_body()))
    except InvalidJobError:
        logger.warning("poisoned message is not a mail job; dropped", extra=ids)
        return
    marked = services().connections.record_poisoned(job.tenant_id, job.user_id)
    logger.warning(
        "poisoned mail job recorded",
        extra={**ids, "tenant": job.tenant_id, "user": job.user_id, "marked": marked},
    )
