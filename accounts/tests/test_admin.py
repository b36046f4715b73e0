"""The accounts admin: tenant staff see only their tenant; keys shown once; revoke action."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.models import ApiKey, Role, User
from accounts.services import api_key_create

PASSWORD = "violet-Anchor-47-river"


@pytest.fixture
def tenant_staff(owner):
    owner.is_staff = True
    owner.save()
    owner.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="accounts",
            codename__in=[
                "view_user",
                "change_user",
                "add_user",
                "view_apikey",
                "change_apikey",
                "add_apikey",
            ],
        )
    )
    return owner


@pytest.fixture
def admin_client_for(client):
    def make(user):
        client.force_login(user)
        return client

    return make


@pytest.mark.django_db
def test_it_shows_tenant_staff_only_their_tenants_users_and_keys(
    admin_client_for, tenant_staff, teammate, outsider, tenant, other_tenant
):
    api_key_create(tenant=tenant, name="mine-key", scopes=["read"])
    theirs, _ = api_key_create(tenant=other_tenant, name="their-key", scopes=["read"])
    client = admin_client_for(tenant_staff)

    users = client.get(reverse("admin:accounts_user_changelist")).content.decode()
    assert "teammate" in users and "outsider" not in users
    keys = client.get(reverse("admin:accounts_apikey_changelist")).content.decode()
    assert "mine-key" in keys and "their-key" not in keys

    other_user = client.get(reverse("admin:accounts_user_change", args=[outsider.pk]))
    other_key = client.get(reverse("admin:accounts_apikey_change", args=[theirs.pk]))
    assert other_user.status_code == 302 and other_key.status_code == 302  # "does not exist"
    assert client.get(reverse("admin:accounts_tenant_changelist")).status_code == 403


@pytest.mark.django_db
def test_it_shows_superusers_every_tenant(admin_client_for, superuser, teammate, outsider):
    users = admin_client_for(superuser).get(reverse("admin:accounts_user_changelist"))
    assert "teammate" in users.content.decode() and "outsider" in users.content.decode()


@pytest.mark.django_db
def test_it_keeps_tenant_staff_from_granting_superuser_or_moving_users(
    admin_client_for, tenant_staff, teammate, other_tenant
):
    client = admin_client_for(tenant_staff)
    url = reverse("admin:accounts_user_change", args=[teammate.pk])
    response = client.post(
        url,
        {
            "username": "teammate",
            "role": "admin",
            "tenant": other_tenant.pk,
            "is_superuser": "on",
            "is_staff": "on",
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    teammate.refresh_from_db()
    assert teammate.role == Role.ADMIN  # the role may change ...
    assert teammate.tenant_id == tenant_staff.tenant_id  # ... but not the tenant
    assert not teammate.is_superuser and not teammate.is_staff


@pytest.mark.django_db
def test_it_shows_a_new_key_once_and_stores_its_hash(admin_client_for, superuser, tenant):
    client = admin_client_for(superuser)
    response = client.post(
        reverse("admin:accounts_apikey_add"),
        {"name": "from-admin", "tenant": tenant.pk, "scopes": "ingest,read"},
        follow=True,
    )
    assert response.status_code == 200
    match = re.search(r"The API key for from-admin is: (\S+)", response.content.decode())
    assert match, response.content.decode()[:3000]
    key = match.group(1)
    api_key = ApiKey.objects.get(name="from-admin")
    assert key.startswith(api_key.prefix + ".")
    assert api_key.scopes == ["ingest", "read"]
    assert key.partition(".")[2] not in api_key.hashed_key
    # Listing it again never shows the key.
    listing = client.get(reverse("admin:accounts_apikey_changelist")).content.decode()
    assert key not in listing


@pytest.mark.django_db
def test_it_refuses_a_key_that_would_be_expired_already(admin_client_for, superuser, tenant):
    client = admin_client_for(superuser)
    response = client.post(
        reverse("admin:accounts_apikey_add"),
        {
            "name": "stillborn",
            "tenant": tenant.pk,
            "scopes": "read",
            "expiry_date_0": "2020-01-01",
            "expiry_date_1": "10:00:00",
        },
    )
    assert response.status_code == 200  # the form again, with the error on the field
    assert "The expiry date must be in the future" in response.content.decode()
    assert "The API key for" not in response.content.decode()
    assert not ApiKey.objects.filter(name="stillborn").exists()


@pytest.mark.django_db
def test_it_revokes_keys_with_the_admin_action(
    admin_client_for, tenant_staff, tenant, django_capture_on_commit_callbacks
):
    api_key, key = api_key_create(tenant=tenant, name="old", scopes=["read"])
    client = admin_client_for(tenant_staff)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:accounts_apikey_changelist"),
            {"action": "revoke_selected", "_selected_action": [api_key.pk]},
            follow=True,
        )
    assert "1 API key(s) revoked" in response.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert api.get("/api/v1/audit-events").status_code == 401


@pytest.mark.django_db
def test_it_lets_tenant_staff_add_users_only_to_their_tenant(
    admin_client_for, tenant_staff, other_tenant
):
    client = admin_client_for(tenant_staff)
    response = client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "newbie",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "usable_password": "true",
            "tenant": other_tenant.pk,
            "role": "auditor",
        },
    )
    # The other tenant is not a valid choice for tenant staff.
    assert not User.objects.filter(username="newbie", tenant=other_tenant).exists()
    assert response.status_code == 200


@pytest.mark.django_db
def test_it_records_a_password_change_made_in_the_admin(
    admin_client_for, tenant_staff, teammate, django_capture_on_commit_callbacks
):
    from accounts.signals import account_changed

    seen = []
    account_changed.connect(lambda sender, **kw: seen.append(kw), dispatch_uid="pw", weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client_for(tenant_staff).post(
                reverse("admin:auth_user_password_change", args=[teammate.pk]),
                {"password1": PASSWORD, "password2": PASSWORD, "usable_password": "true"},
            )
    finally:
        account_changed.disconnect(dispatch_uid="pw")
    assert response.status_code == 302, response.content.decode()[:2000]
    teammate.refresh_from_db()
    assert teammate.check_password(PASSWORD)
    [event] = seen
    assert event["action"] == "user.update"
    assert event["metadata"]["changed"] == ["password"]
    assert PASSWORD not in repr(event)
