"""Writes for tenants: create, provision, rename, and the checks on slugs and names."""

import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import SYSTEM_TENANT_SLUG, Tenant
from accounts.signals import SYSTEM_ACTOR, Actor, account_changed_send

TENANT_SLUG_MAX_LENGTH = Tenant._meta.get_field("slug").max_length
_TENANT_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")
TENANT_NAME_MAX_LENGTH = Tenant._meta.get_field("name").max_length
SYSTEM_TENANT_NAME = "System"


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
