"""The sync timer (fan-out stage 1), the fan-out worker (stage 2) and mail sync.

``SYNC_SCHEDULE`` is checked at import: a schedule that fires more than once per 10-minute slot
(for example ``* */10 * * * *``, every second) stops the app from starting (BR-15).
"""

import logging

import azure.functions as func

from shared.adapters.queues import FANOUT_QUEUE, MAIL_SYNC_QUEUE, decode_job
from shared.sync.schedule import SYNC_PERIOD, require_at_most_once_per
from shared.wiring import services

logger = logging.getLogger(__name__)

bp = func.Blueprint()

SYNC_SCHEDULE = "0 */10 * * * *"
require_at_most_once_per(SYNC_SCHEDULE, SYNC_PERIOD, name="SYNC_SCHEDULE")


@bp.function_name("sync_fanout")
@bp.timer_trigger(arg_name="timer", schedule=SYNC_SCHEDULE, run_on_startup=False, use_monitor=True)
def sync_fanout(timer: func.TimerRequest) -> None:
    """Timer, every 10 minutes: send one ``sync-fanout`` job per span of tenants for the slot.

    A failure raises; spans whose job was not sent wait for the next slot. Running twice for
    one slot is harmless: stage 2 claims each connection's slot once.
    """
    services().planner.fan_out()


@bp.function_name("sync_fanout_worker")
@bp.queue_trigger(arg_name="msg", queue_name=FANOUT_QUEUE, connection="AzureWebJobsStorage")
def sync_fanout_worker(msg: func.QueueMessage) -> None:
    """Queue ``sync-fanout``: enqueue the sync jobs of one page of a span of tenants.

    The message is ``{"kind": "fanout", "tenant": ..., "lastTenant"?: ..., "slot": ...,
    "page"?: ...}`` as base64 text. A page with more after it then enqueues its successor.
    Sync jobs that could not be sent make it raise, so the host retries the message (already
    claimed connections are skipped) and, after ``maxDequeueCount`` attempts, moves it to
    ``sync-fanout-poison``, where the ``poison_sweep`` timer records it.
    """
    services().planner.fan_out_page(decode_job(msg.get_body()))


@bp.function_name("mail_sync_worker")
@bp.queue_trigger(arg_name="msg", queue_name=MAIL_SYNC_QUEUE, connection="AzureWebJobsStorage")
def mail_sync_worker(msg: func.QueueMessage) -> None:
    """Queue ``mail-sync``: sync one connection's mail.

    The message is ``{"kind": "mail", "tenant": ..., "user": ..., "slot"?: ...}`` as base64
    text. The job completes, re-queues itself (budget used up, or throttled), or raises so the
    host retries it and, after ``maxDequeueCount`` attempts, moves it to ``mail-sync-poison``,
    where the ``poison_sweep`` timer marks the connection.
    """
    services().mail_sync.run(decode_job(msg.get_body()))
