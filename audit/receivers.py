"""Receivers of other apps' signals (e.g. accounts changes recorded as audit events)."""

from django.dispatch import receiver

from accounts.signals import account_changed


@receiver(account_changed, dispatch_uid="audit.record_account_change")
def record_account_change(
    sender,
    *,
    tenant_id,
    action,
    actor_id,
    actor_type,
    actor_name,
    target_id,
    target_type,
    target_name,
    description,
    metadata,
    with_transaction=False,
    **kwargs,
):
    """Every change to a tenant's users, roles and API keys lands in that tenant's trail."""
    # Imported here: the submission service pulls in the publisher, which apps load lazily.
    from audit.services.submission import record_system_event

    record_system_event(
        tenant_id=tenant_id,
        action=action,
        actor_id=actor_id,
        actor_type=actor_type,
        actor_name=actor_name,
        target_id=target_id,
        target_type=target_type,
        target_name=target_name,
        description=description,
        metadata=metadata,
        outcome="success",
        severity="notice",
        with_transaction=with_transaction,
    )
