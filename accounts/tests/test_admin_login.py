"""The admin's login counts in the API login's buckets: per client IP and per username."""

import uuid

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User

PASSWORD = "violet-Anchor-47-river"
LOGIN = reverse("admin:login")


def _try(client: Client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"})


@pytest.fixture
def staff(db):
    return User.objects.create_superuser(username=f"root-{uuid.uuid4().hex[:8]}", password=PASSWORD)


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_LOGIN="3/m")
def test_guessing_an_admin_password_is_limited_then_refused_even_when_right(staff):
    client = Client(REMOTE_ADDR=f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}")

    statuses = [_try(client, staff.username, f"wrong-{n}").status_code for n in range(3)]
    right = _try(client, staff.username, PASSWORD)

    assert statuses == [200, 200, 200]  # the form again, "Please enter the correct…"
    assert right.status_code == 429
    assert 1 <= int(right["Retry-After"]) <= 60
    assert "Too many login attempts. Try again in" in right.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_LOGIN="3/m")
def test_admin_and_api_attempts_add_up_per_username_across_addresses(staff):
    from rest_framework.test import APIClient

    for n in range(2):
        _try(Client(REMOTE_ADDR=f"10.8.{n}.1"), staff.username, "wrong")
    api = APIClient(REMOTE_ADDR="10.8.9.1").post(
        "/api/v1/auth/login", {"username": staff.username, "password": "wrong"}, format="json"
    )
    last = _try(Client(REMOTE_ADDR="10.8.10.1"), staff.username.upper(), PASSWORD)

    assert api.status_code == 401
    assert last.status_code == 429


@pytest.mark.django_db
def test_a_normal_admin_login_still_works(staff):
    client = Client()
    response = _try(client, staff.username, PASSWORD)
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(staff.pk)
