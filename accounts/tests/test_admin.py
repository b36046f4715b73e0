"""The accounts admin: tenant staff see only their tenant; keys shown once; revoke action."""

import json
import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts import services
from accounts.models import ApiKey, Role, Tenant, User
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
    client.get(other_user.url)
    other_key = client.get(reverse("admin:accounts_apikey_change", args=[theirs.pk]))
    # The key's id holds its stored hash: Django's "… with ID “<id>” doesn't exist" repeated
    # it (admin QA). The public prefix only.
    said = client.get(other_key.url).content.decode()
    assert other_user.status_code == 302 and other_key.status_code == 302  # "does not exist"
    assert f"No API key {theirs.prefix}… among the keys you can see." in said
    assert theirs.hashed_key not in said and theirs.pk not in said
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
def test_renaming_a_user_to_a_case_variant_of_another_is_refused_on_the_form(
    admin_client_for, superuser, teammate, owner
):
    url = reverse("admin:accounts_user_change", args=[teammate.pk])
    response = admin_client_for(superuser).post(
        url,
        {
            "username": owner.username.upper(),
            "role": teammate.role,
            "tenant": teammate.tenant_id,
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 200
    assert "A user with that username already exists." in response.content.decode()
    teammate.refresh_from_db()
    assert teammate.username == "teammate"


@pytest.mark.django_db
def test_it_shows_a_new_key_once_and_stores_its_hash(admin_client_for, superuser, tenant):
    client = admin_client_for(superuser)
    response = client.post(
        reverse("admin:accounts_apikey_add"),
        {"name": "from-admin", "tenant": tenant.pk, "scopes": ["ingest", "read"]},
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


@pytest.mark.django_db(transaction=True)
def test_revoking_several_keys_is_one_transaction_whose_records_are_one_message_in_order(
    admin_client_for, tenant_staff, tenant, monkeypatch
):
    """One transaction per key made one message per record, which the two worker processes
    could store in any order: a key revoked before it was created, in the chain (QA)."""
    from audit.models import OutboxMessage
    from audit.services import outbox

    monkeypatch.setattr(outbox, "_relay_one", lambda pk: None)  # the rows stay to be read
    keys = [api_key_create(tenant=tenant, name=f"k{i}", scopes=["read"])[0] for i in range(3)]
    client = admin_client_for(tenant_staff)

    response = client.post(
        reverse("admin:accounts_apikey_changelist"),
        {
            "action": "revoke_selected",
            "_selected_action": [key.pk for key in keys],
            "select_across": "0",
            "post": "yes",
        },
        follow=True,
    )

    assert "3 API key(s) revoked" in response.content.decode()
    [row] = [
        row
        for row in OutboxMessage.objects.all()
        if any(e["action"] == "api_key.revoke" for e in row.payload["events"])
    ]
    assert [e["action"] for e in row.payload["events"]] == ["api_key.revoke"] * 3
    assert sorted(e["target_name"] for e in row.payload["events"]) == ["k0", "k1", "k2"]


@pytest.mark.django_db
def test_it_revokes_keys_with_the_admin_action_after_asking(
    admin_client_for, tenant_staff, tenant, django_capture_on_commit_callbacks
):
    api_key, key = api_key_create(tenant=tenant, name="old", scopes=["read"])
    kept, _ = api_key_create(tenant=tenant, name="kept", scopes=["read"])
    client = admin_client_for(tenant_staff)
    changelist = reverse("admin:accounts_apikey_changelist")
    go = {"action": "revoke_selected", "_selected_action": [api_key.pk], "index": "0"}

    question = client.post(changelist, go)

    # "Go" only asks: the page names the key and posts the same selection back.
    assert question.status_code == 200
    assert question.templates[0].name == "admin/action_confirmation.html"
    body = question.content.decode()
    assert "Are you sure?" in body and "Revoke these API keys?" in body
    assert ">old</a>" in body and "kept" not in body
    assert f'name="_selected_action" value="{api_key.pk}"' in body
    assert 'name="action" value="revoke_selected"' in body
    assert 'name="post" value="yes"' in body
    assert f'href="{changelist}"' in body  # "No, take me back"
    api_key.refresh_from_db()
    assert not api_key.revoked

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            changelist,
            {
                "action": "revoke_selected",
                "_selected_action": [api_key.pk],
                "select_across": "0",
                "post": "yes",
            },
            follow=True,
        )
    assert "1 API key(s) revoked" in response.content.decode()
    api_key.refresh_from_db()
    kept.refresh_from_db()
    assert api_key.revoked and not kept.revoked
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


@pytest.fixture
def announced():
    """account_changed sends (run the code under django_capture_on_commit_callbacks)."""
    from accounts.signals import account_changed

    seen: list[dict] = []
    account_changed.connect(
        lambda sender, **kw: seen.append(kw), dispatch_uid="test-admin-announced", weak=False
    )
    yield seen
    account_changed.disconnect(dispatch_uid="test-admin-announced")


@pytest.mark.django_db
def test_it_records_a_tenant_created_and_renamed_in_the_admin(
    admin_client_for, superuser, announced, django_capture_on_commit_callbacks
):
    client = admin_client_for(superuser)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:accounts_tenant_add"), {"slug": "initech", "name": "Initech"}
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant = Tenant.objects.get(slug="initech")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:accounts_tenant_change", args=[tenant.pk]),
            {"slug": "renamed-slug", "name": "Initech Ltd"},
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant.refresh_from_db()
    assert (tenant.slug, tenant.name) == ("initech", "Initech Ltd")  # the slug is read-only

    events = [e for e in announced if e["target_type"] == "tenant"]
    assert [(e["action"], e["tenant_id"]) for e in events] == [
        ("tenant.create", tenant.pk),
        ("tenant.update", tenant.pk),
    ]
    for event in events:
        assert (event["actor_type"], event["actor_id"]) == ("user", str(superuser.pk))
    assert events[1]["metadata"]["previous_name"] == "Initech"


@pytest.mark.django_db
def test_it_refuses_the_reserved_system_slug_and_an_overlong_name_in_the_admin(
    admin_client_for, superuser
):
    client = admin_client_for(superuser)
    reserved = client.post(reverse("admin:accounts_tenant_add"), {"slug": "system", "name": "S"})
    assert reserved.status_code == 200
    assert "reserved" in str(reserved.context["adminform"].form.errors["slug"])
    overlong = client.post(reverse("admin:accounts_tenant_add"), {"slug": "x", "name": "n" * 201})
    assert "name" in overlong.context["adminform"].form.errors
    assert not Tenant.objects.filter(slug__in=["system", "x"]).exists()


@pytest.mark.django_db
def test_it_refuses_users_and_keys_of_the_system_tenant_in_the_admin(admin_client_for, superuser):
    system = Tenant.objects.create(slug="system", name="System")
    client = admin_client_for(superuser)
    key = client.post(
        reverse("admin:accounts_apikey_add"),
        {"name": "backdoor", "tenant": system.pk, "scopes": "ingest"},
    )
    user = client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "mallory",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "usable_password": "true",
            "tenant": system.pk,
            "role": "ingest",
        },
    )
    for response in (key, user):
        assert response.status_code == 200
        assert "no users and no API keys" in str(response.context["adminform"].form.errors)
    # One reason, not a second one telling them to choose the tenant they chose.
    assert user.context["adminform"].form.errors["tenant"] == [
        "The 'system' tenant holds TraceLedger's own records: it has no users and no API keys."
    ]
    assert not ApiKey.objects.filter(tenant=system).exists()
    assert not User.objects.filter(username="mallory").exists()


@pytest.mark.django_db
def test_it_records_users_deleted_in_the_admin(
    admin_client_for, superuser, owner, teammate, announced, django_capture_on_commit_callbacks
):
    other_root = User.objects.create_superuser(username="root2", password=PASSWORD)
    gone = User.objects.create_user(username="gone", password=PASSWORD, tenant=owner.tenant)
    client = admin_client_for(superuser)
    with django_capture_on_commit_callbacks(execute=True):
        one = client.post(
            reverse("admin:accounts_user_delete", args=[teammate.pk]), {"post": "yes"}
        )
        bulk = client.post(
            reverse("admin:accounts_user_changelist"),
            {
                "action": "delete_selected",
                "_selected_action": [gone.pk, other_root.pk],
                "post": "yes",
            },
        )
    assert one.status_code == 302 and bulk.status_code == 302
    assert not User.objects.filter(username__in=["teammate", "gone", "root2"]).exists()
    deleted = sorted(
        (e["target_name"], e["tenant_id"], e["actor_id"])
        for e in announced
        if e["action"] == "user.delete"
    )
    assert deleted == [
        ("gone", owner.tenant_id, str(superuser.pk)),
        ("root2", None, str(superuser.pk)),  # no tenant: the system tenant's trail
        ("teammate", owner.tenant_id, str(superuser.pk)),
    ]


def _user_form(user, **overrides) -> dict:
    data = {
        "username": user.username,
        "role": user.role,
        "tenant": user.tenant_id or "",
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.django_db
def test_a_change_to_a_superuser_without_a_tenant_is_recorded_in_the_system_trail(
    admin_client_for, superuser, announced, django_capture_on_commit_callbacks
):
    root2 = User.objects.create_superuser(username="root2", password=PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_for(superuser).post(
            reverse("admin:accounts_user_change", args=[root2.pk]),
            _user_form(root2, username="root3", is_staff="on", is_superuser="on", is_active=None),
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    [event] = [e for e in announced if e["target_type"] == "user"]
    assert (event["tenant_id"], event["action"]) == (None, "user.update")
    assert event["metadata"]["previous"]["username"] == "root2"
    assert event["metadata"]["previous"]["is_active"] is True


@pytest.mark.django_db
def test_a_user_moved_to_another_tenant_is_recorded_in_both(
    admin_client_for,
    superuser,
    teammate,
    other_tenant,
    announced,
    django_capture_on_commit_callbacks,
):
    old_tenant = teammate.tenant_id
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_for(superuser).post(
            reverse("admin:accounts_user_change", args=[teammate.pk]),
            _user_form(teammate, tenant=other_tenant.pk),
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    events = {e["tenant_id"]: e for e in announced if e["target_type"] == "user"}
    assert sorted(events) == sorted([old_tenant, other_tenant.pk])
    # The tenant left knows where it was; the new one is not told the other's id (tenant
    # isolation QA: its trail read "previous": {"tenant": 3}).
    assert events[old_tenant]["metadata"]["previous"]["tenant"] == old_tenant
    arrival = events[other_tenant.pk]
    assert "tenant" not in arrival["metadata"]["previous"]
    assert "tenant" in arrival["metadata"]["changed"]
    assert str(old_tenant) not in json.dumps(arrival["metadata"]["previous"])
    assert "moved here from another tenant" in arrival["description"]


@pytest.mark.django_db
def test_a_persons_own_password_change_is_recorded(
    admin_client_for, tenant_staff, announced, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_for(tenant_staff).post(
            reverse("admin:password_change"),
            {
                "old_password": "correct-horse-battery",
                "new_password1": "violet-Anchor-47-river-2",
                "new_password2": "violet-Anchor-47-river-2",
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    [event] = announced
    assert (event["action"], event["target_id"]) == ("user.update", str(tenant_staff.pk))
    assert event["metadata"]["changed"] == ["password"]


@pytest.mark.django_db
def test_adding_a_user_without_a_tenant_is_a_form_error_not_a_500(admin_client_for, superuser):
    response = admin_client_for(superuser).post(
        reverse("admin:accounts_user_add"),
        {
            "username": "eve",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "usable_password": "true",
            "role": "auditor",
            "tenant": "",
            "_continue": "1",
        },
    )
    assert response.status_code == 200
    assert "belongs to a tenant" in str(response.context["adminform"].form.errors["tenant"])
    assert not User.objects.filter(username="eve").exists()


@pytest.mark.django_db
def test_the_key_form_cannot_revoke_without_the_confirmed_action(
    admin_client_for, superuser, tenant
):
    api_key, _ = ApiKey.objects.create_key(name="svc", tenant=tenant, scopes=["read"])
    response = admin_client_for(superuser).post(
        reverse("admin:accounts_apikey_change", args=[api_key.pk]),
        {"name": "svc", "scopes": ["read"], "revoked": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    api_key.refresh_from_db()
    assert not api_key.revoked


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "lookup"),
    [("user", "username__regex"), ("apikey", "name__iregex"), ("tenant", "slug__regex")],
)
def test_a_pattern_lookup_in_a_hand_edited_url_is_a_400_not_a_500(
    admin_client_for, superuser, model, lookup
):
    response = admin_client_for(superuser).get(
        reverse(f"admin:accounts_{model}_changelist"), {lookup: "("}
    )
    assert response.status_code == 400


@pytest.mark.django_db
def test_a_tenant_admin_with_admin_access_manages_users_and_keys_without_extra_grants(
    client, owner, teammate, outsider
):
    owner.is_staff = True
    owner.save()
    client.force_login(owner)
    users = client.get(reverse("admin:accounts_user_changelist"))
    keys = client.get(reverse("admin:accounts_apikey_changelist"))
    assert (users.status_code, keys.status_code) == (200, 200)
    assert "teammate" in users.content.decode() and "outsider" not in users.content.decode()

    teammate.is_staff = True
    teammate.save()
    client.force_login(teammate)  # an auditor: reads the trail, manages nobody
    assert client.get(reverse("admin:accounts_user_changelist")).status_code == 403


@pytest.mark.django_db
def test_a_key_changed_in_the_admin_is_recorded_with_its_previous_values(
    admin_client_for, tenant_staff, tenant, announced, django_capture_on_commit_callbacks
):
    expiry = datetime(2099, 1, 1, 12, tzinfo=UTC)
    api_key, _ = api_key_create(tenant=tenant, name="svc", scopes=["read"], expiry_date=expiry)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_for(tenant_staff).post(
            reverse("admin:accounts_apikey_change", args=[api_key.pk]),
            {
                "name": "svc-renamed",
                "scopes": ["ingest", "read"],
                "expiry_date_0": "2099-06-01",
                "expiry_date_1": "00:00:00",
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    [event] = [e for e in announced if e["action"] == "api_key.update"]
    assert event["tenant_id"] == tenant.pk
    assert event["metadata"]["changed"] == ["name", "scopes", "expiry_date"]
    assert event["metadata"]["previous"] == {
        "name": "svc",
        "scopes": ["read"],
        "expiry_date": expiry.isoformat(),
    }
    assert event["metadata"]["scopes"] == ["ingest", "read"]  # the values it has now


@pytest.mark.django_db
def test_a_revoked_key_is_shown_read_only_with_its_status_once(admin_client_for, superuser, tenant):
    api_key, _ = api_key_create(tenant=tenant, name="old", scopes=["read"])
    services.api_key_revoke(api_key=api_key, actor=services.actor_for_user(superuser))
    client = admin_client_for(superuser)
    url = reverse("admin:accounts_apikey_change", args=[api_key.pk])

    page = client.get(url)
    edit = client.post(url, {"name": "renamed", "scopes": ["ingest", "read"]})

    body = page.content.decode()
    assert page.status_code == 200
    assert 'name="_save"' not in body
    assert body.count("<label>Revoked:</label>") == 1
    assert edit.status_code == 403
    api_key.refresh_from_db()
    assert (api_key.name, api_key.scopes) == ("old", ["read"])


@pytest.mark.django_db
def test_the_key_form_offers_the_scopes_as_boxes_and_refuses_others(
    admin_client_for, superuser, tenant
):
    client = admin_client_for(superuser)
    add = reverse("admin:accounts_apikey_add")

    page = client.get(add).content.decode()
    refused = client.post(add, {"name": "x", "tenant": tenant.pk, "scopes": ["admin"]})

    assert 'type="checkbox" name="scopes" value="ingest"' in page
    assert 'type="checkbox" name="scopes" value="read"' in page
    assert "admin is not one of the available choices" in str(
        refused.context["adminform"].form.errors["scopes"]
    )
    assert not ApiKey.objects.filter(name="x").exists()


@pytest.mark.django_db
def test_a_tenant_admin_cannot_see_or_take_over_a_superuser_of_their_tenant(
    admin_client_for, owner, tenant
):
    """A superuser may carry a tenant; its admin could set that superuser's password."""
    owner.is_staff = True
    owner.save()
    boss = User.objects.create_superuser(username="boss", password=PASSWORD, tenant=tenant)
    client = admin_client_for(owner)

    listed = client.get(reverse("admin:accounts_user_changelist")).content.decode()
    page = client.get(reverse("admin:accounts_user_change", args=[boss.pk]))
    takeover = client.post(
        reverse("admin:auth_user_password_change", args=[boss.pk]),
        {"password1": "Takeover-Pw-123!", "password2": "Takeover-Pw-123!"},
    )

    assert "boss" not in listed
    assert page.status_code == 302  # "doesn't exist", as another tenant's user
    assert takeover.status_code == 404
    boss.refresh_from_db()
    assert boss.check_password(PASSWORD)


@pytest.fixture
def operator_teammate(teammate):
    """An auditor a superuser let into the admin's dead letters: rights the tenant's staff
    lack."""
    teammate.is_staff = True
    teammate.save()
    teammate.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="audit", codename__in=["view_deadletter", "change_deadletter"]
        )
    )
    return teammate


@pytest.mark.django_db
@pytest.mark.parametrize("staff", [True, False], ids=["staff", "not-staff"])
def test_tenant_staff_cannot_take_over_a_user_with_rights_they_lack(
    admin_client_for, tenant_staff, operator_teammate, staff
):
    """Setting that user's password was logging in as them, with the operator's pages."""
    operator_teammate.is_staff = staff
    operator_teammate.save()
    client = admin_client_for(tenant_staff)
    password_url = reverse("admin:auth_user_password_change", args=[operator_teammate.pk])
    form = {"password1": PASSWORD, "password2": PASSWORD, "usable_password": "true"}

    assert client.post(password_url, form).status_code == 403
    change = client.post(
        reverse("admin:accounts_user_change", args=[operator_teammate.pk]),
        _user_form(operator_teammate, email="taken@example.com"),
    )
    assert change.status_code in (200, 403)  # the read-only view, or refused
    deleted = client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "delete_selected", "_selected_action": [operator_teammate.pk], "post": "yes"},
    )
    assert deleted.status_code in (302, 403)

    assert User.objects.filter(pk=operator_teammate.pk).exists()
    operator_teammate.refresh_from_db()
    assert not operator_teammate.check_password(PASSWORD)
    assert operator_teammate.email != "taken@example.com"
    # Still visible to them, and a superuser still manages the account.
    view = client.get(reverse("admin:accounts_user_change", args=[operator_teammate.pk]))
    assert view.status_code == 200


@pytest.mark.django_db
def test_a_superuser_still_resets_the_password_of_a_user_with_extra_rights(
    admin_client_for, superuser, operator_teammate
):
    response = admin_client_for(superuser).post(
        reverse("admin:auth_user_password_change", args=[operator_teammate.pk]),
        {"password1": PASSWORD, "password2": PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302
    operator_teammate.refresh_from_db()
    assert operator_teammate.check_password(PASSWORD)


@pytest.mark.django_db
def test_no_admin_page_shows_refresh_tokens(admin_client_for, superuser, tenant_staff):
    """simplejwt's token admins listed every user's stored refresh token in full: a staff
    user with their view permission took a superuser's token from the page and refreshed
    it (a security review)."""
    from rest_framework_simplejwt.tokens import RefreshToken

    token = str(RefreshToken.for_user(superuser))
    tenant_staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="token_blacklist")
    )
    for user in (tenant_staff, superuser):
        client = admin_client_for(user)
        index = client.get(reverse("admin:index")).content.decode()
        assert "token_blacklist" not in index
        for path in ("outstandingtoken", "blacklistedtoken"):
            response = client.get(f"/admin/token_blacklist/{path}/")
            assert response.status_code == 404
            assert token not in response.content.decode()


@pytest.mark.django_db
def test_only_superusers_manage_groups(admin_client_for, superuser, tenant_staff):
    """Groups are global: tenant staff with group permissions could add permissions to a
    group they are in."""
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="auditors-everywhere")
    tenant_staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="auth"))
    tenant_staff.groups.add(group)
    staff = admin_client_for(tenant_staff)
    assert staff.get(reverse("admin:auth_group_changelist")).status_code == 403
    change = reverse("admin:auth_group_change", args=[group.pk])
    assert staff.get(change).status_code == 403
    everything = list(Permission.objects.values_list("pk", flat=True))
    staff.post(change, {"name": group.name, "permissions": everything})
    assert group.permissions.count() == 0

    assert admin_client_for(superuser).get(change).status_code == 200


@pytest.mark.django_db
def test_tenant_staff_see_their_tenant_as_text_not_a_link_they_cannot_open(
    admin_client_for, tenant_staff, superuser, teammate, tenant
):
    """The read-only tenant linked to /admin/accounts/tenant/<id>/change/: a bare 403 for
    anyone but a superuser."""
    api_key, _ = api_key_create(tenant=tenant, name="svc", scopes=["read"])
    tenant_link = reverse("admin:accounts_tenant_change", args=[tenant.pk])
    pages = [
        reverse("admin:accounts_user_change", args=[teammate.pk]),
        reverse("admin:accounts_apikey_change", args=[api_key.pk]),
    ]

    for page in pages:
        staff = admin_client_for(tenant_staff).get(page)
        assert staff.status_code == 200
        assert tenant_link not in staff.content.decode()
        assert f'<div class="readonly">{tenant.slug}</div>' in staff.content.decode()
        assert admin_client_for(tenant_staff).get(tenant_link).status_code == 403

    # A key's tenant is read-only for a superuser too, and their link opens.
    root = admin_client_for(superuser).get(pages[1])
    assert tenant_link in root.content.decode()
    assert admin_client_for(superuser).get(tenant_link).status_code == 200
