"""Tenant scoping of reads: audit.selectors.event_queryset / read_tenant_id."""

import pytest
from django.core.exceptions import PermissionDenied
from rest_framework.exceptions import ValidationError

from accounts.principal import Principal, principal_for_user
from audit.selectors import event_queryset, read_tenant_id
from audit.tests.factories import BASE_TIME, events_create


def key_principal(tenant) -> Principal:
    return Principal(
        kind="api_key", name="svc", tenant_id=tenant.pk, scopes=frozenset({"read"}), api_key_id="k"
    )


@pytest.mark.django_db
def test_it_scopes_a_tenant_principal_to_its_own_events(tenant, other_tenant):
    mine = events_create(tenant_id=tenant.pk, count=2)
    events_create(tenant_id=other_tenant.pk, count=3)
    ids = set(event_queryset(principal=key_principal(tenant)).values_list("pk", flat=True))
    assert ids == {e.pk for e in mine}


@pytest.mark.django_db
def test_it_refuses_another_tenants_slug_to_a_tenant_principal(tenant, other_tenant):
    with pytest.raises(PermissionDenied):
        event_queryset(principal=key_principal(tenant), tenant_slug="globex")
    with pytest.raises(PermissionDenied):  # unknown slugs look the same: no tenant probing
        event_queryset(principal=key_principal(tenant), tenant_slug="nope")


@pytest.mark.django_db
def test_it_accepts_a_tenant_principals_own_slug(tenant):
    assert read_tenant_id(principal=key_principal(tenant), tenant_slug="acme") == tenant.pk


@pytest.mark.django_db
def test_it_lets_a_superuser_read_every_tenant_or_one_by_slug(superuser, tenant, other_tenant):
    events_create(tenant_id=tenant.pk, count=2)
    theirs = events_create(tenant_id=other_tenant.pk, count=1)
    principal = principal_for_user(superuser)
    assert event_queryset(principal=principal).count() == 3
    by_slug = event_queryset(principal=principal, tenant_slug="globex")
    assert list(by_slug.values_list("pk", flat=True)) == [theirs[0].pk]


@pytest.mark.django_db
def test_it_requires_a_superuser_to_name_a_known_tenant_when_asked_to(superuser):
    principal = principal_for_user(superuser)
    with pytest.raises(ValidationError) as missing:
        read_tenant_id(principal=principal, required=True)
    assert "tenant" in missing.value.detail
    with pytest.raises(ValidationError) as unknown:
        read_tenant_id(principal=principal, tenant_slug="nope")
    assert "tenant" in unknown.value.detail


@pytest.mark.django_db
def test_it_orders_newest_first_with_the_id_breaking_ties(tenant):
    events = events_create(tenant_id=tenant.pk, count=4, occurred_at=BASE_TIME)
    ids = list(event_queryset(principal=key_principal(tenant)).values_list("pk", flat=True))
    assert ids == sorted((e.pk for e in events), reverse=True)


@pytest.mark.django_db
def test_it_scopes_a_tenant_user_like_a_key(teammate, tenant, other_tenant):
    events_create(tenant_id=other_tenant.pk, count=2)
    assert event_queryset(principal=principal_for_user(teammate)).count() == 0
