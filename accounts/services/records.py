"""What the audit trail records of an account change: who made it (the actor) and what the
row held before."""

from datetime import datetime

from accounts.signals import Actor


def actor_for_principal(principal) -> Actor:
    """The audit-trail actor for an API caller (``accounts.principal.Principal``)."""
    if principal.kind == "api_key":
        return Actor(id=principal.api_key_id, type="api_key", name=principal.name)
    return Actor(id=str(principal.user_id), type="user", name=principal.name)


def actor_for_user(user) -> Actor:
    return Actor(id=str(user.pk), type="user", name=user.get_username())


def previous_values(*, before: dict, fields: tuple[str, ...], changed) -> dict:
    """What a row held before a change (``before``: its ``values(*fields)``, read before the
    save), for each changed audited field, keyed by field name ("tenant", not "tenant_id");
    dates as ISO 8601 text, as the event's metadata is JSON."""
    previous = {}
    for column in fields:
        name = column.removesuffix("_id")
        if name in changed:
            value = before[column]
            previous[name] = value.isoformat() if isinstance(value, datetime) else value
    return previous
