"""``audit.relay_outbox``: the periodic relay of the outbox (beat, every 10 s)."""

from celery import shared_task

# Bounded per run so one run stays short; the next beat tick continues.
MAX_CHUNKS_PER_RUN = 40


@shared_task(name="audit.relay_outbox", queue="maintenance", ignore_result=True)
def relay_outbox() -> dict:
    from audit.services.outbox import outbox_relay

    result = outbox_relay(max_chunks=MAX_CHUNKS_PER_RUN)
    return {"relayed": result.relayed, "failed": result.failed, "remaining": result.remaining}
