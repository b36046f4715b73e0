import pytest

pytestmark = pytest.mark.django_db

READ_PATHS = [
    "/api/v1/audit-events",
    "/api/v1/audit-events/search",
    "/api/v1/audit-events/export",
    "/api/v1/audit-events/4df361b1-ad8d-4aa5-8d28-2cd95526f596",
    "/api/v1/ledger/verify",
    "/api/v1/ledger/checkpoints",
]


@pytest.mark.parametrize("path", READ_PATHS)
def test_it_refuses_a_nul_in_a_query_parameter_with_a_400_naming_it(key_client, path):
    response = key_client(scopes=("read",)).get(f"{path}?tenant=a%00b")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"tenant": ["Must not contain NUL."]}


def test_it_answers_a_time_filter_with_an_offset_postgresql_cannot_parse(key_client):
    # RFC 3339 allows -20:43; PostgreSQL refuses offsets beyond ±15:59 unless sent as UTC.
    response = key_client(scopes=("read",)).get(
        "/api/v1/audit-events", {"occurred_after": "4855-03-07T22:26:34-20:43"}
    )
    assert response.status_code == 200
    response = key_client(scopes=("read",)).get(
        "/api/v1/audit-events/search", {"q": "x", "occurred_before": "2026-01-01T00:00:00+23:59"}
    )
    assert response.status_code == 200


def test_a_view_not_marked_as_handling_nul_is_still_refused_by_the_guard(client, superuser):
    """Only views marked ``nul_query_handled`` (the audit admin's lists and export) get the
    request; the accounts admin's user search would hand the NUL to PostgreSQL (a 500)."""
    client.force_login(superuser)

    response = client.get("/admin/accounts/user/?q=a%00b")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"q": ["Must not contain NUL."]}
