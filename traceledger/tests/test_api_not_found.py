import pytest


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/audit-events/not-a-uuid",
        "/api/v1/audit-events/6F9619FF-8B86-D011-B42D-00C04FC964F",
        "/api/v1/no-such-thing",
        "/api/v1/ledger/verify/",
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
