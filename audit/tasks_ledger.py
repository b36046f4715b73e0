"""Periodic ledger job: sign checkpoints (queue ``maintenance``, scheduled in settings)."""

from celery import shared_task
from django.db import InterfaceError, OperationalError


@shared_task(
    name="audit.ledger.sign_checkpoints",
    queue="maintenance",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=3,
)
def sign_checkpoints() -> int:
    """Signs one checkpoint per tenant whose chain head moved; safe to run twice."""
    from audit.ledger.services import checkpoints_sign

    return len(checkpoints_sign())
