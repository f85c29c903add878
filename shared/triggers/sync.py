"""The sync timer (fan-out) and the mail sync queue worker."""

import azure.functions as func

from shared.adapters.queues import MAIL_SYNC_QUEUE, decode_job
from shared.wiring import services

bp = func.Blueprint()

SYNC_SCHEDULE = "0 */10 * * * *"


@bp.function_name("sync_fanout")
@bp.timer_trigger(arg_name="timer", schedule=SYNC_SCHEDULE, run_on_startup=False, use_monitor=True)
def sync_fanout(timer: func.TimerRequest) -> None:
    """Timer, every 10 minutes: enqueue one mail sync job per active connection.

    A failure raises; the next slot runs the fan-out again.
    """
    services().planner.fan_out()


@bp.function_name("mail_sync_worker")
@bp.queue_trigger(arg_name="msg", queue_name=MAIL_SYNC_QUEUE, connection="AzureWebJobsStorage")
def mail_sync_worker(msg: func.QueueMessage) -> None:
    """Queue ``mail-sync``: sync one connection's mail.

    The message is ``{"kind": "mail", "tenant": ..., "user": ...}`` as base64 text. The job
    completes, re-queues itself (budget used up, or throttled), or raises so the host retries
    it and, after ``maxDequeueCount`` attempts, moves it to ``mail-sync-poison``.
    """
    services().mail_sync.run(decode_job(msg.get_body()))
