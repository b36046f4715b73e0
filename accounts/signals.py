"""Signals accounts sends so that audit can record them without accounts importing audit.

``account_changed`` is sent after the transaction that changed a tenant, user or API key
commits. Keyword arguments (all plain data, never a key or a password):

- ``tenant_id``: int, the tenant whose audit trail records the change
- ``action``: str, e.g. ``tenant.create``, ``user.create``, ``api_key.create``, ``api_key.revoke``
- ``actor_id``, ``actor_type`` (``user``, ``api_key`` or ``system``), ``actor_name``: str
- ``target_id``, ``target_type``, ``target_name``: str
- ``description``: str, one human-readable sentence
- ``metadata``: dict of JSON values
"""

import logging
from dataclasses import dataclass

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

account_changed = Signal()


@dataclass(frozen=True)
class Actor:
    """Who made an account change, as recorded in the tenant's audit trail."""

    id: str
    type: str  # "user" | "api_key" | "system"
    name: str = ""


SYSTEM_ACTOR = Actor(id="manage.py", type="system", name="command line")


def account_changed_send(
    *,
    tenant_id: int,
    action: str,
    actor: Actor,
    target_id: str,
    target_type: str,
    target_name: str = "",
    description: str = "",
    metadata: dict | None = None,
) -> None:
    """Send ``account_changed`` for a change of the current transaction.

    Inside a transaction the signal is sent at once, with ``with_transaction=True``: its
    receiver (the audit app) writes the record so that it commits, or rolls back, with the
    change; a process killed between the commit and a later send left the change unrecorded
    (races QA). A receiver that fails there raises, and the change is not made without its
    record. Outside a transaction (autocommit: the change is committed already) a failing
    receiver is logged, not raised: answering 500 for a committed change would invite a
    retry that duplicates it.
    """
    in_transaction = transaction.get_connection().in_atomic_block
    kwargs = {
        "tenant_id": tenant_id,
        "action": action,
        "actor_id": actor.id,
        "actor_type": actor.type,
        "actor_name": actor.name,
        "target_id": target_id,
        "target_type": target_type,
        "target_name": target_name,
        "description": description,
        "metadata": metadata or {},
        "with_transaction": in_transaction,
    }
    if in_transaction:
        account_changed.send(sender="accounts", **kwargs)
        return
    for receiver, result in account_changed.send_robust(sender="accounts", **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "account change not recorded as an audit event",
                exc_info=result,
                extra={"action": action, "tenant_id": tenant_id, "receiver": str(receiver)},
            )
