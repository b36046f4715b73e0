import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.services import api_key_create


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/audit-events/not-a-uuid",
        "/api/v1/audit-events/6F9619FF-8B86-D011-B42D-00C04FC964F",
        "/api/v1/no-such-thing",
        "/api/v1/ledger/verify/x",
        "/api/v2/audit-events",
    ],
)
def test_a_path_under_api_that_names_no_endpoint_is_a_json_404(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {"code": "not_found", "message": f"No API endpoint at {path}; see /api/docs/."}
    }


@pytest.mark.parametrize(
    ("path", "meant"),
    [
        ("/api/v1/ledger/verify/", "/api/v1/ledger/verify"),
        ("/api/v1/audit-events/", "/api/v1/audit-events"),
        ("/api/v1/audit-events/search//", "/api/v1/audit-events/search"),
        (
            "/api/v1/audit-events/6f9619ff-8b86-d011-b42d-00c04fc964ff/",
            "/api/v1/audit-events/6f9619ff-8b86-d011-b42d-00c04fc964ff",
        ),
        ("/api/v1/audit-events/not-a-uuid/", None),
        ("/api/v1/nothing/", None),
        ("/api/schema", "/api/schema/"),
        ("/api/docs", "/api/docs/"),
    ],
)
def test_a_path_off_by_its_trailing_slash_is_told_the_endpoint_meant(client, path, meant):
    response = client.get(path)

    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        f"No API endpoint at {path}; did you mean {meant}?"
        if meant
        else f"No API endpoint at {path}; see /api/docs/."
    )


def _csrf_enforcing_client(credentials, owner):
    """A client whose requests meet Django's CSRF check as a browser's do (the test client
    skips it by default): without credentials, with an API key, or signed in to the admin."""
    if credentials == "session":
        client = Client(enforce_csrf_checks=True)
        client.force_login(owner)
        return client
    client = APIClient(enforce_csrf_checks=True)
    if credentials == "api_key":
        _, key = api_key_create(tenant=owner.tenant, name="any", scopes=["ingest", "read"])
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("credentials", ["none", "api_key", "session"])
def test_every_method_gets_the_json_404_not_a_csrf_403(owner, credentials):
    client = _csrf_enforcing_client(credentials, owner)
    for path in ["/api/v1/audit-events/", "/api/v1/nonexistent", "/api/v1//audit-events"]:
        for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "GET"]:
            response = client.generic(
                method, path, b'{"action": "a"}', content_type="application/json"
            )

            assert response.status_code == 404, (method, path, response.content[:100])
            assert response["Content-Type"] == "application/json"
            if method != "HEAD":
                assert response.json()["error"]["code"] == "not_found"


def test_a_host_outside_allowed_hosts_is_a_json_400_under_api(client):
    response = client.get("/api/v1/audit-events", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "bad_request"
    assert "evil.example" not in response.content.decode()
    # Elsewhere Django's own page, as before.
    admin = client.get("/admin/", HTTP_HOST="evil.example")
    assert admin.status_code == 400
    assert admin["Content-Type"].startswith("text/html")
