"""``audit.relay_outbox``: the periodic relay of the outbox (beat, every 10 s).

While PostgreSQL or RabbitMQ is away the relay cannot do its work, and the next beat tick
tries again anyway: so a transient error is one line (at most one per 30 s per dependency,
without a traceback) and the run ends normally, instead of Celery's ERROR with a traceback
every 10 s. Anything else is a bug and raises.
"""

import contextlib
import logging

from celery import shared_task
from django.conf import settings
from kombu.exceptions import OperationalError as BrokerError

from audit.tasks import TRANSIENT_ERRORS
from traceledger.log_throttle import skipped_run

# Only the relay's outage lines, throttled per dependency in LOGGING (README, "When a
# dependency fails").
logger = logging.getLogger(__name__)

# Bounded per run so one run stays short; the next beat tick continues.
MAX_CHUNKS_PER_RUN = 40
TOPOLOGY_TIMEOUT = 2.0


@shared_task(name="audit.relay_outbox", queue="maintenance", ignore_result=True)
def relay_outbox() -> dict:
    from audit.services.outbox import outbox_relay
    from audit.topology import topology_ensure

    # A queue deleted under the running stack (the DLQ above all) is back within a run. With
    # the broker away this fails too: the relay's own attempt below reports it.
    with contextlib.suppress(BrokerError):
        topology_ensure(settings.CELERY_BROKER_URL, timeout=TOPOLOGY_TIMEOUT)
    try:
        result = outbox_relay(max_chunks=MAX_CHUNKS_PER_RUN)
    except TRANSIENT_ERRORS as exc:
        dependency = "broker" if isinstance(exc, BrokerError) else "database"
        skipped_run(logger, "outbox relay skipped", dependency, exc)
        return {"skipped": dependency}
    if result.failed:
        logger.warning(
            "outbox relay stopped: broker unavailable (%s); %d batch(es) stay in the outbox, "
            "retrying on the next run",
            result.error,
            result.remaining,
            extra={"dependency": "broker", "failed": result.failed, "remaining": result.remaining},
        )
    return {"relayed": result.relayed, "failed": result.failed, "remaining": result.remaining}
