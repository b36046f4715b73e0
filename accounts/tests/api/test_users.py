import uuid

import pytest
from django.db import IntegrityError

from accounts.models import Role, Tenant, User
from accounts.services import SYSTEM_TENANT_SLUG
from accounts.signals import account_changed

STRONG = "violet-Anchor-47-river"


def _body(**overrides):
    return {"username": f"u-{uuid.uuid4().hex[:10]}", "password": STRONG, "role": "auditor"} | (
        overrides
    )


@pytest.mark.django_db
def test_it_lets_a_tenant_admin_create_a_user_in_their_tenant(jwt_client, owner):
    body = _body(email="ada@example.com")
    response = jwt_client(owner).post("/api/v1/users", body, format="json")
    assert response.status_code == 201
    data = response.json()
    assert data["username"] == body["username"]
    assert data["role"] == "auditor"
    assert data["tenant"] == "acme"
    assert "password" not in data
    user = User.objects.get(username=body["username"])
    assert user.tenant == owner.tenant
    assert user.check_password(STRONG)
    assert STRONG not in user.password
    assert not user.is_staff and not user.is_superuser


@pytest.mark.django_db
def test_it_accepts_the_admins_own_tenant_slug(jwt_client, owner):
    response = jwt_client(owner).post("/api/v1/users", _body(tenant="acme"), format="json")
    assert response.status_code == 201


@pytest.mark.django_db
def test_it_rejects_another_tenant_from_a_tenant_admin(jwt_client, owner, other_tenant):
    for slug in ("globex", "no-such-tenant"):
        response = jwt_client(owner).post("/api/v1/users", _body(tenant=slug), format="json")
        assert response.status_code == 400
        assert "tenant" in response.json()["error"]["fields"]
    assert not User.objects.filter(tenant=other_tenant).exists()


@pytest.mark.django_db
def test_it_refuses_a_user_in_the_system_tenant_naming_the_tenant(jwt_client, superuser):
    Tenant.objects.create(slug=SYSTEM_TENANT_SLUG, name="System")
    response = jwt_client(superuser).post(
        "/api/v1/users", _body(tenant=SYSTEM_TENANT_SLUG, role="ingest"), format="json"
    )
    assert response.status_code == 400
    assert "tenant" in response.json()["error"]["fields"]
    assert not User.objects.filter(tenant__slug=SYSTEM_TENANT_SLUG).exists()


@pytest.mark.django_db
def test_it_lets_a_superuser_create_a_user_in_any_tenant(jwt_client, superuser, other_tenant):
    response = jwt_client(superuser).post(
        "/api/v1/users", _body(tenant="globex", role="ingest"), format="json"
    )
    assert response.status_code == 201
    assert response.json()["tenant"] == "globex"
    assert response.json()["role"] == "ingest"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant": None}, "tenant"),
        ({"tenant": "nope"}, "tenant"),
    ],
)
def test_it_makes_a_superuser_name_an_existing_tenant(jwt_client, superuser, tenant, body, field):
    payload = {k: v for k, v in (_body() | body).items() if v is not None}
    response = jwt_client(superuser).post("/api/v1/users", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"password": "123"}, "password"),
        ({"password": "password"}, "password"),
        ({"role": "god"}, "role"),
        ({"role": None}, "role"),
        ({"username": None}, "username"),
        ({"username": "bad name!"}, "username"),
        ({"email": "not-an-email"}, "email"),
    ],
)
def test_it_answers_400_naming_the_bad_field(jwt_client, owner, overrides, field):
    payload = {k: v for k, v in (_body() | overrides).items() if v is not None}
    response = jwt_client(owner).post("/api/v1/users", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_one_400_names_every_bad_field_the_service_checks_included(jwt_client, owner, teammate):
    body = _body(username="teammate", password="password", role="god", colour="blue")
    response = jwt_client(owner).post("/api/v1/users", body, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"username", "password", "role", "colour"}
    assert fields["username"] == ["A user with that username already exists."]
    assert fields["password"] == ["This password is too common."]


@pytest.mark.django_db
def test_a_superuser_without_a_tenant_is_also_told_of_a_weak_password(jwt_client, superuser):
    body = _body(password="password", email="not-an-email")
    response = jwt_client(superuser).post("/api/v1/users", body, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"tenant", "password", "email"}
    assert not User.objects.filter(username=body["username"]).exists()


@pytest.mark.django_db
def test_it_rejects_a_password_like_the_username(jwt_client, owner):
    body = _body(username="margaret-hamilton", password="margaret-hamilton")
    response = jwt_client(owner).post("/api/v1/users", body, format="json")
    assert response.status_code == 400
    assert "password" in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_it_rejects_a_taken_username(jwt_client, owner, teammate):
    response = jwt_client(owner).post("/api/v1/users", _body(username="teammate"), format="json")
    assert response.status_code == 400
    assert "username" in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_it_rejects_a_username_differing_only_in_case(jwt_client, owner, teammate):
    """Two accounts "teammate" and "TeamMate" would read as one person in the trail."""
    response = jwt_client(owner).post("/api/v1/users", _body(username="TeamMate"), format="json")
    assert response.status_code == 400
    assert "username" in response.json()["error"]["fields"]
    assert User.objects.filter(username__iexact="teammate").count() == 1


@pytest.mark.django_db
def test_a_fullwidth_spelling_of_a_taken_name_is_refused_on_username(jwt_client, owner, teammate):
    fullwidth = "".join(chr(ord(c) - 0x20 + 0xFF00) for c in "TEAMMATE")  # U+FF34 ...
    response = jwt_client(owner).post("/api/v1/users", _body(username=fullwidth), format="json")
    assert response.status_code == 400
    assert "username" in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_the_database_refuses_a_username_differing_only_in_case(teammate):
    with pytest.raises(IntegrityError):
        User.objects.create(username="TEAMMATE", tenant=teammate.tenant, role=Role.AUDITOR)


@pytest.mark.django_db
def test_a_name_taken_by_a_concurrent_request_is_a_400_not_a_500(
    jwt_client, owner, teammate, monkeypatch
):
    """Both requests pass the checks before either inserts: the unique index decides."""
    monkeypatch.setattr("accounts.services.users.User.full_clean", lambda self, **kwargs: None)
    monkeypatch.setattr(
        "accounts.services.users.User.objects.filter",
        lambda **kwargs: User.objects.none(),  # the check saw no such user yet
    )
    response = jwt_client(owner).post("/api/v1/users", _body(username="teammate"), format="json")
    assert response.status_code == 400
    assert "username" in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_it_does_not_allow_open_sign_up(anon_client):
    assert anon_client.post("/api/v1/users", _body(), format="json").status_code == 401
    assert not User.objects.exists()


@pytest.mark.django_db
def test_it_forbids_auditors_ingest_users_and_api_keys(jwt_client, key_client, teammate, tenant):
    ingester = User.objects.create_user(
        username="ingester", password=STRONG, tenant=tenant, role=Role.INGEST
    )
    for client in (jwt_client(teammate), jwt_client(ingester), key_client(("ingest", "read"))):
        response = client.post("/api/v1/users", _body(), format="json")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
    assert User.objects.count() == 2


@pytest.mark.django_db
def test_it_announces_the_new_user_without_the_password(
    jwt_client, owner, django_capture_on_commit_callbacks
):
    seen = []

    def listen(sender, **kwargs):
        seen.append(kwargs)

    account_changed.connect(listen, dispatch_uid="test-listen")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            body = _body(role="admin")
            response = jwt_client(owner).post("/api/v1/users", body, format="json")
    finally:
        account_changed.disconnect(dispatch_uid="test-listen")
    assert response.status_code == 201
    [event] = [e for e in seen if e["action"] == "user.create"]
    assert event["tenant_id"] == owner.tenant_id
    assert event["actor_id"] == str(owner.pk)
    assert event["actor_type"] == "user"
    assert event["target_name"] == body["username"]
    assert event["metadata"] == {"role": "admin", "is_staff": False}
    assert STRONG not in repr(event)


@pytest.mark.django_db
def test_it_refuses_unknown_fields_naming_them(jwt_client, owner):
    body = _body(is_superuser=True, emial="ada@example.com")
    response = jwt_client(owner).post("/api/v1/users", body, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"is_superuser", "emial"}
    assert not User.objects.filter(username=body["username"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["?tenant=globex", "?tenant=globex&foo=1"])
def test_a_query_parameter_is_named_not_ignored(jwt_client, owner, other_tenant, query):
    """``?tenant=globex`` by a tenant admin created the user in their own tenant, without a
    word: as on the read endpoints, a parameter nothing reads is a 400 naming it."""
    body = _body()
    response = jwt_client(owner).post(f"/api/v1/users{query}", body, format="json")

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {name.split("=")[0] for name in query[1:].split("&")}
    assert 'names the tenant as "tenant"' in fields["tenant"][0]
    assert not User.objects.filter(username=body["username"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/auth/login?next=/", "/api/v1/auth/refresh?x=1"])
def test_login_and_refresh_name_a_query_parameter_too(api_client, path):
    response = api_client.post(path, {"username": "u", "password": "p"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [path.split("?")[1].split("=")[0]]
