"""Writes for API keys: create (the plain key is returned once), change, revoke, last use.

Only the key's hash is stored; the plain key never leaves ``api_key_create``.
"""

import logging
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from accounts import keycache
from accounts.models import ApiKey, Scope, Tenant
from accounts.services.records import previous_values
from accounts.services.tenants import tenant_members_validate
from accounts.signals import SYSTEM_ACTOR, Actor, account_changed_send

VALID_SCOPES = frozenset(Scope.values)
# How often last_used_at may be written per key: a date to the minute is enough for
# spotting unused keys, and the hot ingest path must not write to PostgreSQL per request.
LAST_USED_RESOLUTION_SECONDS = 60


def api_key_scopes_validate(*, scopes: list[str]) -> list[str]:
    unknown = set(scopes) - VALID_SCOPES
    if not scopes or unknown:
        raise ValidationError(
            {
                "scopes": [
                    f"Scopes must be a non-empty subset of {', '.join(sorted(VALID_SCOPES))}; "
                    f"unknown: {', '.join(sorted(unknown)) or 'none given'}."
                ]
            }
        )
    return sorted(set(scopes))


def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    scopes: list[str],
    expiry_date: datetime | None = None,
    actor: Actor = SYSTEM_ACTOR,
) -> tuple[ApiKey, str]:
    """Returns the key row and the plain key. Only the key's hash is stored."""
    tenant_members_validate(tenant=tenant)
    scopes = api_key_scopes_validate(scopes=scopes)
    if not name or len(name) > ApiKey._meta.get_field("name").max_length:
        raise ValidationError({"name": ["A key name has 1 to 50 characters."]})
    if expiry_date is not None and expiry_date <= timezone.now():
        raise ValidationError({"expiry_date": ["The expiry date must be in the future."]})
    with transaction.atomic():
        api_key, key = ApiKey.objects.create_key(
            name=name, tenant=tenant, scopes=scopes, expiry_date=expiry_date
        )
        _record_key_change(api_key=api_key, action="api_key.create", actor=actor)
    return api_key, key


# A key's fields whose change an update records with the value it replaced (all of them
# hold one value; the hash, prefix and tenant never change after creation).
_KEY_AUDITED_FIELDS = ("name", "scopes", "expiry_date", "revoked")


def api_key_save(
    *, api_key: ApiKey, created: bool, actor: Actor = SYSTEM_ACTOR
) -> tuple[ApiKey, str | None]:
    """Saves a key edited elsewhere (the admin form); returns the plain key when created.

    An update records which audited fields changed and, as for users, their previous values
    (compared with the stored row, read under lock before the save).
    """
    if created:
        tenant_members_validate(tenant=api_key.tenant)
    api_key.scopes = api_key_scopes_validate(scopes=list(api_key.scopes or []))
    key = None
    with transaction.atomic():
        before = (
            None
            if created
            else ApiKey.objects.select_for_update()
            .filter(pk=api_key.pk)
            .values(*_KEY_AUDITED_FIELDS)
            .first()
        )
        if created:
            key = ApiKey.objects.assign_key(api_key)
        api_key.save()
        if not created:
            # Scopes, expiry or revocation may have changed: stop serving the cached copy.
            transaction.on_commit(lambda: keycache.forget(prefix=api_key.prefix))
        action = "api_key.create" if created else "api_key.update"
        if not created and api_key.revoked and not api_key._initial_revoked:
            action = "api_key.revoke"
        changes = None
        if before is not None:
            changed = [f for f in _KEY_AUDITED_FIELDS if before[f] != getattr(api_key, f)]
            changes = {
                "changed": changed,
                "previous": previous_values(
                    before=before, fields=_KEY_AUDITED_FIELDS, changed=changed
                ),
            }
        _record_key_change(api_key=api_key, action=action, actor=actor, changes=changes)
    return api_key, key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: Actor = SYSTEM_ACTOR) -> bool:
    """Revokes a key (irreversible). Returns False when it was revoked already.

    The cached look-up is dropped after commit, so the key stops working at once in every
    process; should that cache delete fail (Redis unreachable), the cached entry still
    expires within ``TRACELEDGER_API_KEY_CACHE_SECONDS``.
    """
    updated = ApiKey.objects.filter(pk=api_key.pk, revoked=False).update(revoked=True)
    api_key.revoked = True
    transaction.on_commit(lambda: keycache.forget(prefix=api_key.prefix))
    if updated:
        _record_key_change(api_key=api_key, action="api_key.revoke", actor=actor)
    return bool(updated)


def api_key_touch(*, prefix: str) -> None:
    """Updates ``last_used_at``, at most once per minute per key, never failing the caller.

    ``cache.add`` is the gate: only the first request of a minute writes. With Redis down
    ``add`` answers None and nothing is written (the hot path stays free of DB writes).
    Skipped, without using up the minute, while PostgreSQL failed moments ago
    (``keycache.database_skipped``): the write would only wait out the connect timeout.
    """
    if keycache.database_skipped():
        return
    if not keycache.claim_touch(prefix=prefix, seconds=LAST_USED_RESOLUTION_SECONDS):
        return
    try:
        ApiKey.objects.filter(prefix=prefix).update(last_used_at=timezone.now())
    except DatabaseError:
        keycache.database_failed()
        # Its own logger, which LOGGING throttles to one line per 30 s during an outage.
        logging.getLogger("accounts.services.last_use").warning(
            "could not record API key last use", extra={"api_key_prefix": prefix}
        )


def _record_key_change(
    *, api_key: ApiKey, action: str, actor: Actor, changes: dict | None = None
) -> None:
    """``changes``: an update's ``changed`` and ``previous``, added to the metadata."""
    verb = {"api_key.create": "created", "api_key.revoke": "revoked"}.get(action, "changed")
    account_changed_send(
        tenant_id=api_key.tenant_id,
        action=action,
        actor=actor,
        target_id=api_key.prefix,
        target_type="api_key",
        target_name=api_key.name,
        description=f"API key {api_key.name} ({api_key.prefix}) {verb}.",
        metadata={
            "prefix": api_key.prefix,
            "scopes": list(api_key.scopes),
            "expiry_date": api_key.expiry_date.isoformat() if api_key.expiry_date else None,
            "revoked": api_key.revoked,
            **(changes or {}),
        },
    )
