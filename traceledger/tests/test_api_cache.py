"""API answers are never kept by browsers or proxies; the admin's login never lands on a 404."""

import uuid

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from accounts.models import User
from traceledger.api_cache import ApiNoStoreMiddleware


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/v1/audit-events", "/api/v1/ledger/verify", "/api/v1/no-such-thing"]
)
def test_every_api_answer_says_no_store(client, path):
    response = client.get(path)  # 401 or 404: error bodies too

    assert response["Cache-Control"] == "no-store"


def test_an_answer_with_its_own_cache_control_keeps_it(rf):
    def view(request):
        response = HttpResponse("public key")
        response["Cache-Control"] = "max-age=60"
        return response

    response = ApiNoStoreMiddleware(view)(rf.get("/api/v1/ledger/public-key"))

    assert response["Cache-Control"] == "max-age=60"


@pytest.mark.django_db
@pytest.mark.parametrize("unsafe", ["https://evil.example/", "//evil.example/", "javascript:x"])
def test_an_unsafe_next_after_admin_login_goes_to_the_admin_index(unsafe):
    password = "violet-Anchor-47-river"
    user = User.objects.create_superuser(username=f"root-{uuid.uuid4().hex[:8]}", password=password)
    client = Client(REMOTE_ADDR=f"10.8.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}")

    response = client.post(
        reverse("admin:login"), {"username": user.username, "password": password, "next": unsafe}
    )

    assert response.status_code == 302 and response.url == reverse("admin:index")
