"""Periodic ledger job: sign checkpoints (queue ``maintenance``, scheduled in settings).

While PostgreSQL is away nothing can be signed, and the next tick signs everything that moved
meanwhile: a transient error is one line (at most one per 30 s, without a traceback) and the
run ends normally, instead of Celery's retries and an ERROR with a traceback. Anything else
is a bug and raises.
"""

import logging

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError

from audit.tasks import TRANSIENT_ERRORS
from traceledger.log_throttle import skipped_run

# Only the job's outage lines, throttled per dependency in LOGGING (README, "When a
# dependency fails").
logger = logging.getLogger(__name__)


@shared_task(name="audit.ledger.sign_checkpoints", queue="maintenance")
def sign_checkpoints() -> int:
    """Signs one checkpoint per tenant whose chain head moved; safe to run twice."""
    from audit.ledger.services import checkpoints_sign

    try:
        return len(checkpoints_sign())
    except TRANSIENT_ERRORS as exc:
        dependency = "broker" if isinstance(exc, BrokerError) else "database"
        skipped_run(logger, "ledger checkpoints not signed", dependency, exc)
        return 0
