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
