"""Writes for tenants, users and API keys. The only place that changes these rows.

Every change is announced with ``accounts.signals.account_changed`` in its transaction, so
the audit app records it in the tenant's own trail, committed with the change. Keys and
passwords never leave this module except the plain key returned once by ``api_key_create``.
"""

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from accounts import keycache
from accounts.models import SYSTEM_TENANT_SLUG, ApiKey, Role, Scope, Tenant, User
from accounts.signals import SYSTEM_ACTOR, Actor, account_changed_send

logger = logging.getLogger(__name__)

VALID_SCOPES = frozenset(Scope.values)
TENANT_SLUG_MAX_LENGTH = Tenant._meta.get_field("slug").max_length
_TENANT_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")
TENANT_NAME_MAX_LENGTH = Tenant._meta.get_field("name").max_length
SYSTEM_TENANT_NAME = "System"
# How often last_used_at may be written per key: a date to the minute is enough for
# spotting unused keys, and the hot ingest path must not write to PostgreSQL per request.
LAST_USED_RESOLUTION_SECONDS = 60


def actor_for_principal(principal) -> Actor:
    """The audit-trail actor for an API caller (``accounts.principal.Principal``)."""
    if principal.kind == "api_key":
        return Actor(id=principal.api_key_id, type="api_key", name=principal.name)
    return Actor(id=str(principal.user_id), type="user", name=principal.name)


def actor_for_user(user) -> Actor:
    return Actor(id=str(user.pk), type="user", name=user.get_username())


# --- tenants -------------------------------------------------------------------------------
def tenant_slug_validate(*, slug: str, reserved_ok: bool = False) -> None:
    """Raises ``ValidationError({"slug": ...})`` unless ``slug`` is a usable tenant slug.

    The system tenant's slug is refused unless ``reserved_ok``: only TraceLedger creates it.
    """
    if not slug or len(slug) > TENANT_SLUG_MAX_LENGTH:
        raise ValidationError(
            {"slug": [f"A tenant slug has 1 to {TENANT_SLUG_MAX_LENGTH} characters."]}
        )
    if not _TENANT_SLUG.fullmatch(slug):
        # Lower case only: "Acme" and "acme" would be two tenants (and "SYSTEM" the reserved
        # one); a leading "-" reads as an option to every command that takes --tenant.
        raise ValidationError(
            {
                "slug": [
                    "A tenant slug is lower-case letters, digits, '-' and '_', starting with a "
                    "letter or a digit."
                ]
            }
        )
    if slug == SYSTEM_TENANT_SLUG and not reserved_ok:
        raise ValidationError(
            {
                "slug": [
                    f"{SYSTEM_TENANT_SLUG!r} is reserved: it is TraceLedger's own tenant, "
                    "created by TraceLedger itself when it first records an operator action."
                ]
            }
        )


def tenant_name_validate(*, name: str) -> None:
    """Raises ``ValidationError({"name": ...})`` for a blank name (empty or only whitespace)
    or one the column cannot hold. The services strip a name before storing it."""
    if not name.strip():
        raise ValidationError({"name": ["A tenant name cannot be empty or only whitespace."]})
    if len(name) > TENANT_NAME_MAX_LENGTH:
        raise ValidationError(
            {
                "name": [
                    f"A tenant name has at most {TENANT_NAME_MAX_LENGTH} characters "
                    f"(this one has {len(name)})."
                ]
            }
        )


def tenant_get_or_create(
    *, slug: str, name: str | None = None, actor: Actor = SYSTEM_ACTOR
) -> tuple[Tenant, bool]:
    """Idempotent: an existing tenant is returned as it is. Raises ``ValidationError`` keyed
    by field (``slug``, ``name``). ``name`` is stripped; None (not given) means the slug,
    while a blank one is refused rather than silently replaced.

    The reserved system slug is accepted here, because this is how TraceLedger creates its
    own tenant (``audit.services.submission.system_tenant_id``), always with its own name.
    People go through ``tenant_provision`` (``manage.py create_tenant``) or ``tenant_save``
    (the admin), which refuse it.
    """
    tenant_slug_validate(slug=slug, reserved_ok=True)
    if slug == SYSTEM_TENANT_SLUG:
        name = SYSTEM_TENANT_NAME
    name = slug if name is None else name.strip()
    tenant_name_validate(name=name)
    with transaction.atomic():
        tenant, created = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
        if created:
            _record_tenant_change(tenant=tenant, action="tenant.create", actor=actor)
    return tenant, created


@dataclass(frozen=True)
class TenantProvisioned:
    tenant: Tenant
    created: bool
    previous_name: str | None  # the name it had, when this call renamed it; else None


def tenant_provision(
    *, slug: str, name: str | None = None, actor: Actor = SYSTEM_ACTOR
) -> TenantProvisioned:
    """Creates the tenant, or brings an existing one to ``name`` (``manage.py create_tenant``).

    Idempotent: a repeat changes nothing. A different ``name`` (stripped) renames an existing
    tenant through ``tenant_save``, so the rename is recorded in its trail exactly as the
    admin records one; ``name=None`` leaves an existing tenant's name alone. Refuses the
    reserved system slug, whether or not that tenant exists yet, and a blank name.
    """
    tenant_slug_validate(slug=slug)
    if name is not None:
        name = name.strip()
        tenant_name_validate(name=name)  # before get_or_create: a blank rename creates nothing
    with transaction.atomic():
        tenant, created = tenant_get_or_create(slug=slug, name=name, actor=actor)
        if created or name is None:
            return TenantProvisioned(tenant=tenant, created=created, previous_name=None)
        # Locked before comparing, so two concurrent renames each report the name they
        # replaced (tenant_save re-reads it under the same lock to record the change).
        current = (
            Tenant.objects.select_for_update().values_list("name", flat=True).get(pk=tenant.pk)
        )
        tenant.name = name
        if current == name:
            return TenantProvisioned(tenant=tenant, created=False, previous_name=None)
        tenant_save(tenant=tenant, created=False, changed_fields=["name"], actor=actor)
    return TenantProvisioned(tenant=tenant, created=False, previous_name=current)


def tenant_save(
    *, tenant: Tenant, created: bool, changed_fields: list[str], actor: Actor = SYSTEM_ACTOR
) -> Tenant:
    """Saves a tenant edited elsewhere (the admin form; a rename by ``tenant_provision``) and
    records ``tenant.create`` or, when its name changed, ``tenant.update`` in the tenant's own
    trail. The name is stored stripped; a blank one is refused (``ValidationError`` on
    ``name``).

    A new tenant may not take the reserved system slug. A slug never changes afterwards
    (API callers, scripts and JWT claims name tenants by it): the admin shows it read-only.
    """
    if created:
        tenant_slug_validate(slug=tenant.slug)
    tenant.name = (tenant.name or "").strip()
    tenant_name_validate(name=tenant.name)
    with transaction.atomic():
        if created:
            tenant.save()
            _record_tenant_change(tenant=tenant, action="tenant.create", actor=actor)
            return tenant
        previous = Tenant.objects.select_for_update().values("slug", "name").get(pk=tenant.pk)
        if previous["slug"] != tenant.slug:
            raise ValidationError({"slug": ["A tenant's slug cannot be changed."]})
        tenant.save()
        if "name" in changed_fields and previous["name"] != tenant.name:
            _record_tenant_change(
                tenant=tenant,
                action="tenant.update",
                actor=actor,
                description=f"Tenant {tenant.slug} renamed.",
                metadata={
                    "changed": ["name"],
                    "name": tenant.name,
                    "previous_name": previous["name"],
                },
            )
    return tenant


def _record_tenant_change(
    *,
    tenant: Tenant,
    action: str,
    actor: Actor,
    description: str = "",
    metadata: dict | None = None,
) -> None:
    account_changed_send(
        tenant_id=tenant.pk,
        action=action,
        actor=actor,
        target_id=str(tenant.pk),
        target_type="tenant",
        target_name=tenant.slug,
        description=description or f"Tenant {tenant.slug} created.",
        metadata=metadata if metadata is not None else {"name": tenant.name},
    )


def tenant_members_validate(*, tenant: Tenant | None) -> None:
    """Raises ``ValidationError({"tenant": ...})`` for the system tenant, which no user and
    no API key may belong to (users, keys: command line, admin and API alike)."""
    if tenant is not None and tenant.slug == SYSTEM_TENANT_SLUG:
        raise ValidationError(
            {
                "tenant": [
                    f"The {SYSTEM_TENANT_SLUG!r} tenant holds TraceLedger's own records: "
                    "it has no users and no API keys."
                ]
            }
        )


# --- users ---------------------------------------------------------------------------------
def user_create(
    *,
    tenant: Tenant,
    username: str,
    password: str,
    role: str,
    email: str = "",
    is_staff: bool = False,
    actor: Actor = SYSTEM_ACTOR,
) -> User:
    """Creates a tenant user with a role (``is_staff``: may also log in to the admin, where an
    auditor or admin browses the tenant's trail). Raises ``ValidationError`` keyed by field."""
    tenant_members_validate(tenant=tenant)
    problems = user_fields_problems(username=username, password=password, email=email, role=role)
    if problems:
        raise ValidationError(problems)
    username = User.normalize_username(username)  # NFKC, as Django stores it (fullwidth too)
    user = User(username=username, email=email, tenant=tenant, role=role, is_staff=is_staff)
    user.set_password(password)
    try:
        with transaction.atomic():
            try:
                user.full_clean(exclude=["password"])
            except ValidationError as exc:
                # The same race, seen by the case-insensitive unique constraint's check,
                # which Django reports for the whole form ("__all__"): it is the username's.
                if USERNAME_TAKEN in exc.messages:
                    raise ValidationError({"username": [USERNAME_TAKEN]}) from None
                raise
            user.save()
            _record_user_change(
                user=user,
                action="user.create",
                actor=actor,
                description=f"User {user.username} created with role {role}.",
                metadata={"role": role, "is_staff": is_staff},
            )
    except IntegrityError:
        # Another request took the name between the checks above and this insert.
        raise ValidationError({"username": [USERNAME_TAKEN]}) from None
    return user


USERNAME_TAKEN = "A user with that username already exists."


def user_fields_problems(
    *,
    username: str | None,
    password: str | None,
    email: str = "",
    role: str | None = None,
) -> dict[str, list[str]]:
    """Every reason ``user_create`` refuses these values, under each field's name, all at
    once: a client fixing a taken username should not learn of its weak password only on the
    next try. A field given as None (missing, or already refused) is not checked."""
    problems: dict[str, list[str]] = {}
    if role is not None and role not in Role.values:
        problems["role"] = [f"Must be one of {', '.join(Role.values)}."]
    if username is not None:
        username = User.normalize_username(username)  # NFKC, as Django stores it
        if _username_taken(username):
            problems["username"] = [USERNAME_TAKEN]
    if password is not None:
        try:
            # The similarity check compares with the username and email given.
            validate_password(password, user=User(username=username or "", email=email))
        except ValidationError as exc:
            problems["password"] = exc.messages
    return problems


def superuser_create(
    *, username: str, password: str, email: str = "", actor: Actor = SYSTEM_ACTOR
) -> User:
    """Creates a superuser (no tenant) and records ``user.create`` in the system tenant's
    trail: who can read every tenant's events is itself an account change worth a record."""
    with transaction.atomic():
        user = User.objects.create_superuser(username=username, email=email, password=password)
        _record_user_change(
            user=user,
            action="user.create",
            actor=actor,
            description=f"Superuser {user.username} created.",
            metadata={"role": user.role, "is_superuser": True, "is_staff": True},
        )
    return user


def _username_taken(username: str) -> bool:
    return User.objects.filter(username__iexact=username).exists()


# Fields whose change is worth an audit event (the password itself is never recorded).
USER_AUDITED_FIELDS = (
    "username",
    "email",
    "role",
    "tenant",
    "is_active",
    "is_staff",
    "is_superuser",
    "password",
    "groups",
    "user_permissions",
)


# The audited fields that hold one value, read before a change to record as "previous"
# (column names: "tenant_id"; never the password; groups and permissions are relations).
_USER_BEFORE_FIELDS = tuple(
    "tenant_id" if name == "tenant" else name
    for name in USER_AUDITED_FIELDS
    if name not in ("password", "groups", "user_permissions")
)


def _previous_values(*, before: dict, fields: tuple[str, ...], changed) -> dict:
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


def user_save(
    *, user: User, created: bool, changed_fields: list[str], actor: Actor = SYSTEM_ACTOR
) -> User:
    """Saves a user edited elsewhere (the admin form) and records what changed.

    Raises ``ValidationError({"tenant": ...})`` when a user would join the system tenant
    (the admin's forms check the same with ``tenant_members_validate`` first, to show it on
    the field). A user already there can still be edited, e.g. deactivated.
    """
    if user.tenant_id is not None and (created or "tenant" in changed_fields):
        tenant_members_validate(tenant=user.tenant)
    with transaction.atomic():
        before = (
            None
            if created
            else User.objects.filter(pk=user.pk).values(*_USER_BEFORE_FIELDS).first()
        )
        user.save()
        audited = sorted(set(changed_fields) & set(USER_AUDITED_FIELDS))
        if not (created or audited):
            return user
        action = "user.create" if created else "user.update"
        if not created and "role" in audited:
            action = "user.role_change"
        metadata = {
            "role": user.role,
            "changed": audited,
            "is_active": user.is_active,
            "is_staff": user.is_staff,
            "is_superuser": user.is_superuser,
        }
        if before is not None:
            # What it was, for each audited field that holds a value (not the password).
            metadata["previous"] = _previous_values(
                before=before, fields=_USER_BEFORE_FIELDS, changed=audited
            )
        # A superuser without a tenant: the system tenant's trail (tenant_id None).
        _record_user_change(
            user=user,
            action=action,
            actor=actor,
            description=f"User {user.username} {'created' if created else 'changed'}.",
            metadata=metadata,
        )
        previous_tenant = before["tenant_id"] if before is not None else None
        if previous_tenant is not None and previous_tenant != user.tenant_id:
            # Moved: the tenant it left records the departure too.
            _record_user_change(
                user=user,
                tenant_id=previous_tenant,
                action="user.update",
                actor=actor,
                description=f"User {user.username} moved to another tenant.",
                metadata={"changed": ["tenant"], "previous": {"tenant": previous_tenant}},
            )
    return user


def user_password_changed(*, user: User, actor: Actor = SYSTEM_ACTOR) -> None:
    """Records a password change made by Django's own password forms (the admin's, and a
    person's own); a superuser without a tenant in the system tenant's trail."""
    _record_user_change(
        user=user,
        action="user.update",
        actor=actor,
        description=f"Password of user {user.username} changed.",
        metadata={"role": user.role, "changed": ["password"]},
    )


def user_password_set(*, user: User, password: str, actor: Actor = SYSTEM_ACTOR) -> None:
    """Sets and saves a new password (a command's: Django's forms save their own) and
    records it as ``user_password_changed`` does."""
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        user_password_changed(user=user, actor=actor)


def user_delete(*, user: User, actor: Actor = SYSTEM_ACTOR) -> None:
    """Deletes a user and records ``user.delete`` in the user's tenant trail (a superuser
    without a tenant: the system tenant's)."""
    users_delete(users=[user], actor=actor)


@transaction.atomic
def users_delete(*, users: Iterable[User], actor: Actor = SYSTEM_ACTOR) -> int:
    """Deletes each user (the admin's bulk delete), recording ``user.delete`` for each one
    after commit. Returns how many were deleted."""
    deleted = 0
    for user in users:
        # Recorded before delete() clears the pk; sent only once the deletion commits. A
        # superuser without a tenant (tenant None) lands in the system tenant's trail.
        _record_user_change(
            user=user,
            action="user.delete",
            actor=actor,
            description=f"User {user.username} deleted.",
            metadata={
                "role": user.role,
                "is_staff": user.is_staff,
                "is_superuser": user.is_superuser,
            },
        )
        user.delete()
        deleted += 1
    return deleted


def _record_user_change(
    *,
    user: User,
    action: str,
    actor: Actor,
    description: str,
    metadata: dict,
    tenant_id: int | None = None,
) -> None:
    """In the user's tenant's trail (``tenant_id``: another's), the system tenant's when
    the user has none (a superuser)."""
    account_changed_send(
        tenant_id=tenant_id if tenant_id is not None else user.tenant_id,
        action=action,
        actor=actor,
        target_id=str(user.pk),
        target_type="user",
        target_name=user.username,
        description=description,
        metadata=metadata,
    )


# --- API keys ------------------------------------------------------------------------------
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
                "previous": _previous_values(
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
        logging.getLogger(f"{__name__}.last_use").warning(
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
